"""Distillation (collapse paper, supplement section 2): a student backbone + linear head regresses the
per-dimension standardised output of a frozen teacher backbone from a stored run; MSE."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import Method, Option, register


def teacher_backbone(run_id: str) -> nn.Module:
    """The backbone of a finished run in the run store or a published set, read through the store."""
    import pickle

    from ..models import trained_backbone
    from ..store import find_run

    try:
        run = find_run(run_id)
        backbone = trained_backbone(run.stored_config(), run.weights())
    except (UserError, OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:
        raise UserError(f"teacher run {run_id!r} not found or unreadable ({exc})") from None
    return backbone


@register("distill")
class Distill(Method):
    options = {"teacher": Option("", "run id of a stored run whose backbone is the teacher")}

    @classmethod
    def check_config(cls, cfg) -> None:
        if not cfg.teacher:
            raise UserError("distill needs a teacher: --teacher RUN_ID of a stored run (python -m ssl_src train ...)")
        if cfg.bn_views == "per_view":
            raise UserError("--bn-views per_view applies to two-view methods; distill trains on one view")

    def __init__(self, backbone: nn.Module, cfg, teacher: nn.Module | None = None):
        """`teacher` (tests) stands in for the backbone of the stored run `cfg.teacher`."""
        super().__init__(backbone, cfg)
        teacher = teacher_backbone(cfg.teacher) if teacher is None else teacher
        self.teacher = teacher.eval().requires_grad_(False)
        t_dim = teacher.num_features
        self.head = nn.Linear(backbone.num_features, t_dim)
        self.register_buffer("target_mean", torch.zeros(t_dim))
        self.register_buffer("target_var", torch.ones(t_dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.stat_momentum = 0.05

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher's BN statistics stay frozen
        return self

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict:
        with torch.no_grad():
            t = self.teacher(x1).float()
            if not self.initialised:
                self.target_mean.copy_(t.mean(0))
                self.target_var.copy_(t.var(0))
                self.initialised.fill_(True)
            target = (t - self.target_mean) / (self.target_var + 1e-6).sqrt()
            # running statistics are updated AFTER use, with weight 0.05 on the new batch
            self.target_mean.lerp_(t.mean(0), self.stat_momentum)
            self.target_var.lerp_(t.var(0), self.stat_momentum)
        pred = self.head(self.backbone(x1)).float()
        return {"loss": F.mse_loss(pred, target)}
