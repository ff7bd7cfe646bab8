"""BYOL (Grill et al., 2020): online net + predictor regress an EMA target net; loss 2 - 2 cos."""
from __future__ import annotations

import torch
from torch import nn

from ..models import mlp
from .base import PREDICTOR, TARGET_MOMENTUM, Method, MomentumTarget, head_sizes, negative_cosine, predictor_head, register


@register("byol")
class BYOL(Method):
    options = {"predictor": PREDICTOR, "ema": TARGET_MOMENTUM}

    def __init__(self, backbone: nn.Module, cfg):
        super().__init__(backbone, cfg)
        d, w = backbone.num_features, cfg.width
        # BYOL's ImageNet heads scaled with the width: 4096 hidden, 256 out at w=64.
        h = head_sizes(cfg, self.default_heads(cfg, d, w))
        self.projector = mlp([d] + [h["proj_hidden_dim"]] * (h["proj_layers"] - 1) + [h["proj_dim"]],
                             last_bn=self.projector_last_bn, last_bn_affine=False, last_bias=not self.projector_last_bn)
        self.predictor = self.build_predictor(cfg, h)
        self.target = MomentumTarget([self.backbone, self.projector], cfg.ema)

    projector_last_bn = False

    def default_heads(self, cfg, d: int, w: int) -> dict:
        return dict(proj_hidden_dim=64 * w, proj_dim=4 * w, pred_dim=64 * w, proj_layers=2)

    def build_predictor(self, cfg, h: dict) -> nn.Module:
        return predictor_head(cfg.predictor, h["proj_dim"], h["pred_dim"])

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict:
        x = torch.cat([x1, x2])
        z = self.per_views(lambda v: self.projector(self.backbone(v)), x)
        p1, p2 = self.per_views(self.predictor, z).chunk(2)
        with torch.no_grad():
            t1, t2 = self.per_views(self.target, x).chunk(2)
        # Symmetrised: each view's prediction regresses the other view's target projection.
        return {"loss": self.symmetric_loss(p1, p2, t1, t2), "projections": z.detach()}

    def symmetric_loss(self, p1, p2, t1, t2) -> torch.Tensor:
        """2 - 2 cos, averaged over the two directions."""
        return ((2 + 2 * negative_cosine(p1, t2)) + (2 + 2 * negative_cosine(p2, t1))) / 2

    @torch.no_grad()
    def after_optimizer_step(self, progress: float, out: dict) -> None:
        self.target.update(progress)
