import math

import pytest
import torch

from ssl_src.errors import UserError
from ssl_src.methods import build_method, negative_cosine
from ssl_src.methods.base import MomentumTarget
from ssl_src.methods.mocov3 import info_nce
from ssl_src.models import build_backbone
from ssl_src.config import TrainConfig

CFG = TrainConfig(width=4, proj_layers=2)


def method(name, cfg=CFG, **extra):
    torch.manual_seed(0)
    return build_method(name, build_backbone("resnet18", cfg.width, 1), cfg, **extra)


def views(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randn(n, 1, 16, 16, generator=g)


def test_negative_cosine_hand_values():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    assert negative_cosine(p, z).item() == pytest.approx(-(1 + 1 / math.sqrt(2)) / 2)  # cosines 1 and 1/sqrt 2


def test_simsiam_heads_follow_the_recipe():
    model = method("simsiam", TrainConfig(width=4))  # default: 3-layer projector, 32w out, 8w bottleneck
    assert [m.out_features for m in model.projector if isinstance(m, torch.nn.Linear)] == [32, 32, 128]
    assert not model.projector[-1].affine and model.predictor[0].out_features == 32
    assert model.predictor[-1].bias is not None
    assert [g["fixed_lr"] for g in model.parameter_groups()] == [False, True]


def _encoder_grads(model):
    return [p.grad for m in (model.backbone, model.projector) for p in m.parameters()]


def test_stop_gradient_blocks_the_target_branch_and_removing_it_does_not():
    """With the predictor's output zeroed, p is constant: any encoder gradient must come through z."""
    for stop_grad, expect_grad in [(True, False), (False, True)]:
        model = method("simsiam", TrainConfig(width=4, proj_layers=2, stop_grad=stop_grad))
        torch.nn.init.zeros_(model.predictor[-1].weight)
        model(*views())["loss"].backward()
        has_grad = any(g is not None and g.abs().max() > 0 for g in _encoder_grads(model))
        assert has_grad == expect_grad


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_without_a_predictor_each_view_regresses_the_others_projection_itself(name):
    """predictor none (the collapse demonstration): the identity, no parameters, an optimizer that still builds."""
    from ssl_src.optim import build_optimizer

    model = method(name, TrainConfig(width=4, proj_layers=2, predictor="none"))
    assert isinstance(model.predictor, torch.nn.Identity) and not list(model.predictor.parameters())
    x1, x2 = views()
    model.train()
    z = model.projector(model.backbone(torch.cat([x1, x2])))
    assert torch.equal(model.predictor(z), z)
    model(x1, x2)["loss"].backward()
    build_optimizer(model, TrainConfig(width=4, proj_layers=2, predictor="none")).step()


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_per_view_bn_normalises_each_view_with_its_own_statistics(name):
    from dataclasses import replace

    x1, x2 = views()
    x2 = 3 * x2 + 1  # views with different statistics, so pooled and per-view BN differ
    joint, per_view = method(name), method(name, replace(CFG, bn_views="per_view"))
    with torch.no_grad():
        encode = lambda x: per_view.projector(per_view.backbone(x))
        z1, z2 = encode(x1), encode(x2)
        p1, p2 = per_view.predictor(z1), per_view.predictor(z2)
        if name == "simsiam":
            expected = (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
        else:
            t1, t2 = per_view.target(x1), per_view.target(x2)
            expected = per_view.symmetric_loss(p1, p2, t1, t2)
        assert torch.allclose(per_view(x1, x2)["loss"], expected, atol=1e-5)
        assert not torch.allclose(joint(x1, x2)["loss"], expected, atol=1e-3)


def test_per_view_bn_is_refused_for_the_one_view_distillation():
    from dataclasses import replace

    with pytest.raises(UserError, match="--bn-views per_view applies to two-view methods"):
        replace(CFG, method="distill", teacher="x", bn_views="per_view").validate()


def test_an_option_of_another_method_is_refused_where_it_means_nothing():
    with pytest.raises(UserError, match="--no-stop-grad applies to simsiam only, not byol"):
        TrainConfig(width=4, method="byol", stop_grad=False).validate()
    with pytest.raises(UserError, match="--no-stop-grad applies to simsiam only, not nnsiam"):
        TrainConfig(width=4, method="nnsiam", stop_grad=False).validate()
    with pytest.raises(UserError, match="--temperature applies to mocov3 only, not simsiam"):
        TrainConfig(width=4, temperature=0.2).validate()
    TrainConfig(width=4, method="mocov3", temperature=0.2).validate()  # its own option
    TrainConfig(width=4, method="directcopy", dp_eps=0.1).validate()  # declared by its parent, DirectPred


def test_options_are_declared_by_their_methods_and_become_config_fields():
    from dataclasses import fields

    from ssl_src.methods import method_options

    options = method_options()
    assert options["ema"].methods == ("byol", "directcopy", "directpred", "mocov3")
    assert options["queue_size"].methods == ("nnsiam",) and options["predictor"].methods == ("byol", "nnsiam", "simsiam")
    by_name = {f.name: f for f in fields(TrainConfig)}
    assert set(options) <= set(by_name)
    assert by_name["temperature"].default == 1.0 and "InfoNCE" in by_name["temperature"].metadata["help"]
    with pytest.raises(UserError, match="dp_rho must be in \\[0, 1\\), got 1.0"):
        TrainConfig(method="directpred", dp_rho=1.0).validate()


def test_momentum_target_schedule_and_update():
    online = torch.nn.Linear(2, 2)
    target = MomentumTarget([online], base_momentum=0.9)
    assert target.momentum(0.0) == pytest.approx(0.9) and target.momentum(1.0) == pytest.approx(1.0)
    assert target.momentum(0.5) == pytest.approx(0.95)
    with torch.no_grad():
        online.weight.fill_(1.0)
        target.nets[0].weight.fill_(0.0)
    target.update(0.0)
    assert torch.allclose(target.nets[0].weight, torch.full((2, 2), 0.1))  # 0.9 * 0 + 0.1 * 1
    assert not any(p.requires_grad for p in target.parameters())


def test_byol_loss_is_two_minus_two_cos_and_target_gets_no_gradient():
    model = method("byol")
    out = model(*views())
    assert 0 <= out["loss"].item() <= 4
    out["loss"].backward()
    assert all(p.grad is None for p in model.target.parameters())
    assert model.projector[-1].out_features == 16 and model.predictor[0].out_features == 256  # 4w, 64w


def test_info_nce_hand_value():
    q = torch.eye(3)
    k = torch.eye(3)
    # logits: 1/T on the diagonal, 0 elsewhere: CE = log(1 + 2 exp(-1/T)); the code scales by 2T
    t = 0.5
    expected = math.log(1 + 2 * math.exp(-1 / t)) * 2 * t
    assert info_nce(q, k, t).item() == pytest.approx(expected, rel=1e-5)


def test_mocov3_runs_one_step():
    model = method("mocov3")
    out = model(*views())
    out["loss"].backward()
    model.after_optimizer_step(0.1, out)
    assert math.isfinite(out["loss"].item())


def test_nnsiam_targets_are_queue_neighbours_and_only_view_one_is_enqueued():
    model = method("nnsiam", TrainConfig(width=4, proj_layers=2, queue_size=16))
    queue = model.queue.clone()
    z = queue[[3, 7]] + 1e-3
    assert torch.equal(model.nearest(z), queue[[3, 7]])
    out = model(*views(n=8))
    view1 = out["projections"][:8].clone()  # the projections of view 1, then of view 2
    model.after_optimizer_step(0.1, out)
    assert torch.equal(model.queue[:8], view1) and torch.equal(model.queue[8:], queue[8:])
    assert model.queue_ptr.item() == 8


def test_directpred_sets_the_predictor_from_the_correlation_eigenbasis():
    model = method("directpred", TrainConfig(width=4, dp_eps=0.01))
    u, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    s = torch.tensor([4.0, 1.0, 0.25, 0.09, 0.04, 0.04, 0.01, -1.0], dtype=torch.float64)  # negative clipped to 0
    corr = (u @ torch.diag(s) @ u.T).float()
    w = model.predictor_from_correlation(corr).double()
    p = torch.sqrt(s.clamp(min=0) / 4) + 0.01
    assert torch.allclose(w, u @ torch.diag(p) @ u.T, atol=1e-4)
    copy = method("directcopy", TrainConfig(width=4, dp_eps=0.01))
    assert torch.allclose(copy.predictor_from_correlation(corr), corr + 0.01 * torch.eye(8))


def test_directpred_correlation_is_an_ema_weighted_on_the_old_estimate():
    model = method("directpred", TrainConfig(width=4, dp_rho=0.3))
    assert not model.predictor.weight.requires_grad
    f1, f2 = torch.randn(6, 8), torch.randn(6, 8)
    for f in (f1, f2):
        model.after_optimizer_step(0.1, {"projections": f})
    expected = 0.3 * (f1.T @ f1 / 6) + 0.7 * (f2.T @ f2 / 6)
    assert torch.allclose(model.corr, expected, atol=1e-6)
    assert torch.allclose(model.predictor.weight, model.predictor_from_correlation(expected), atol=1e-5)


def test_distill_standardises_the_teacher_with_statistics_updated_after_use():
    teacher = build_backbone("resnet18", 8, 1)
    model = method("distill", TrainConfig(width=4, method="distill", teacher="x"), teacher=teacher)
    x1, x2 = views()
    with torch.no_grad():
        t = teacher.eval()(x1)
    model(x1, x2)  # first batch initialises the statistics with itself
    assert torch.allclose(model.target_mean, t.mean(0), atol=1e-5)
    x1b, _ = views(seed=1)
    with torch.no_grad():
        tb = teacher(x1b)
    out = model(x1b, x2)
    assert torch.allclose(model.target_mean, 0.95 * t.mean(0) + 0.05 * tb.mean(0), atol=1e-5)
    out["loss"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    model.train()
    assert not model.teacher.training


def test_unknown_method_lists_valid_ones():
    with pytest.raises(UserError, match="valid: byol, directcopy"):
        method("simclr")
