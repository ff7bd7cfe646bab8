"""DirectPred and DirectCopy (Tian, Chen & Ganguli, 2021): BYOL whose linear predictor is not trained
but set, after every optimizer step, from the EMA correlation matrix F of the projector outputs."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .base import TARGET_MOMENTUM, Option, register
from .byol import BYOL


@register("directpred")
class DirectPred(BYOL):
    options = {"ema": TARGET_MOMENTUM,  # the predictor is always one linear map, written
               "dp_rho": Option(0.3, "weight of the OLD correlation estimate", lambda v: 0 <= v < 1, "in [0, 1)"),
               "dp_eps": Option(0.01, "added to the predictor's eigenvalues (DirectPred) or diagonal (DirectCopy)"),
               "dp_freq": Option(1, "rewrite the predictor every N steps", lambda v: v >= 1, "a positive integer")}

    def default_heads(self, cfg, d: int, w: int) -> dict:
        # Their STL-10/CIFAR-10 projector: 512-512-128 at width 64.
        return dict(proj_hidden_dim=d, proj_dim=2 * w, pred_dim=2 * w, proj_layers=2)

    def build_predictor(self, cfg, h: dict) -> nn.Module:
        k = h["proj_dim"]
        self.rho, self.eps, self.freq = cfg.dp_rho, cfg.dp_eps, cfg.dp_freq
        self.register_buffer("corr", torch.zeros(k, k))  # F, uncentred, detached
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        predictor = nn.Linear(k, k, bias=False)
        predictor.requires_grad_(False)  # written, never trained
        return predictor

    @torch.no_grad()
    def after_optimizer_step(self, progress: float, out: dict) -> None:
        super().after_optimizer_step(progress, out)
        f = out["projections"].float()
        batch_corr = f.T @ f / len(f)  # mean over both views of f f^T
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_corr)
            batch_corr /= dist.get_world_size()
        if self.steps_seen == 0:
            self.corr.copy_(batch_corr)  # the first batch initialises F
        else:
            self.corr.mul_(self.rho).add_(batch_corr, alpha=1 - self.rho)  # rho weighs the OLD estimate
        if self.steps_seen % self.freq == 0:
            self.predictor.weight.copy_(self.predictor_from_correlation(self.corr))
        self.steps_seen += 1

    def predictor_from_correlation(self, corr: torch.Tensor) -> torch.Tensor:
        """W_p = U diag(sqrt(s / max s) + eps) U^T from F = U diag(s) U^T."""
        s, u = torch.linalg.eigh(corr.double())
        s = s.clamp(min=0)
        p = torch.sqrt(s / s.max().clamp(min=1e-12)) + self.eps
        return (u @ torch.diag(p) @ u.T).float()


@register("directcopy")
class DirectCopy(DirectPred):
    def predictor_from_correlation(self, corr: torch.Tensor) -> torch.Tensor:
        """W_p = F + eps I."""
        return corr + self.eps * torch.eye(len(corr), device=corr.device)
