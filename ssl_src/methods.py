"""Self-supervised methods: each is its heads, its loss and (optionally) hooks; the loop lives in train.py.

Methods register by name so a config string picks one, as in solo-learn.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError
from .models import mlp

METHODS: dict[str, type["Method"]] = {}


def register(name: str):
    def wrap(cls):
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def method_names() -> list[str]:
    return sorted(METHODS)


class Method(nn.Module):
    """A backbone with method-specific heads; `forward(x1, x2)` returns a dict with the scalar `loss`."""

    name = "base"

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def parameter_groups(self, fix_pred_lr: bool) -> list[dict]:
        """Optimizer groups; a group with `fixed_lr=True` keeps its initial lr through the schedule."""
        return [{"params": list(self.parameters()), "fixed_lr": False}]

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Hook for target-network updates, queues or predictor rewrites (none for SimSiam)."""


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """-cos(p, z) averaged over the batch; z is the target (the caller detaches it)."""
    return -F.cosine_similarity(p.float(), z.float(), dim=-1).mean()


@register("simsiam")
class SimSiam(Method):
    """Chen & He (2021): projector + predictor, symmetric negative cosine with stop-gradient."""

    def __init__(self, backbone: nn.Module, proj_dim: int = 2048, pred_dim: int = 512, proj_layers: int = 3):
        super().__init__(backbone)
        d = backbone.num_features
        # Linear(d,d)-BN-ReLU x (proj_layers-1), then Linear(d, proj_dim)-BN(affine=False).
        self.projector = mlp([d] * proj_layers + [proj_dim], last_bn_affine=False)
        # Linear(proj_dim, pred_dim)-BN-ReLU-Linear(pred_dim, proj_dim) with bias: the bottleneck predictor.
        self.predictor = mlp([proj_dim, pred_dim, proj_dim], last_bn=False, last_bias=True)

    def parameter_groups(self, fix_pred_lr: bool) -> list[dict]:
        encoder = list(self.backbone.parameters()) + list(self.projector.parameters())
        return [
            {"params": encoder, "fixed_lr": False},
            {"params": list(self.predictor.parameters()), "fixed_lr": fix_pred_lr},
        ]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict:
        # Both views in one forward pass: the backbone's BN sees both views' statistics together.
        z = self.projector(self.backbone(torch.cat([x1, x2])))
        p = self.predictor(z)
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        loss = (negative_cosine(p1, z2.detach()) + negative_cosine(p2, z1.detach())) / 2
        return {"loss": loss, "z1": z1.detach()}


def build_method(name: str, backbone: nn.Module, **head_sizes) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; valid: {', '.join(method_names())}")
    return METHODS[name](backbone, **head_sizes)
