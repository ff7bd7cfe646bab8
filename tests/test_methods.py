import math

import pytest
import torch

from ssl_src.methods import SimSiam, build_method, negative_cosine
from ssl_src.errors import UserError
from ssl_src.models import build_backbone


def test_negative_cosine_hand_values():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    # cosines 1 and 1/sqrt(2)
    assert negative_cosine(p, z).item() == pytest.approx(-(1 + 1 / math.sqrt(2)) / 2)


def simsiam(width=4):
    torch.manual_seed(0)
    return build_method("simsiam", build_backbone("resnet18", width, 1), proj_dim=32, pred_dim=8, proj_layers=2)


def test_simsiam_heads_follow_the_recipe():
    model = simsiam()
    assert isinstance(model, SimSiam)
    assert not model.projector[-1].affine  # last projector BN without affine
    assert model.predictor[-1].bias is not None  # predictor output layer has a bias


def test_stop_gradient_targets_carry_no_gradient():
    """With the predictor's last layer zeroed, p is constant: any gradient must come through z, which sg blocks."""
    model = simsiam()
    torch.nn.init.zeros_(model.predictor[-1].weight)
    x1, x2 = torch.randn(8, 1, 16, 16), torch.randn(8, 1, 16, 16)
    model(x1, x2)["loss"].backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.backbone.parameters())
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.projector.parameters())


def test_predictor_group_flagged_for_fixed_lr():
    groups = simsiam().parameter_groups(fix_pred_lr=True)
    assert [g["fixed_lr"] for g in groups] == [False, True]


def test_unknown_method_lists_valid_ones():
    with pytest.raises(UserError, match="valid: simsiam"):
        build_method("simclr", build_backbone("resnet18", 4, 1))
