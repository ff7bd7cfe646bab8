"""SimSiam (Chen & He, 2021): projector + predictor, symmetric negative cosine with stop-gradient."""
from __future__ import annotations

import torch
from torch import nn

from ..models import mlp
from .base import PREDICTOR, Method, Option, head_sizes, negative_cosine, predictor_head, register


@register("simsiam")
class SimSiam(Method):
    options = {
        "predictor": PREDICTOR,
        "stop_grad": Option(True, "remove the stop-gradient (the collapse demonstration)", flag="--no-stop-grad"),
        "fix_pred_lr": Option(True, "decay the predictor's lr too (default: fixed, as the SimSiam paper)",
                              flag="--decay-pred-lr"),
    }

    def __init__(self, backbone: nn.Module, cfg):
        super().__init__(backbone, cfg)
        d, w = backbone.num_features, cfg.width
        # The paper's ImageNet heads, scaled with the width: 2048-d projector, 512-d predictor bottleneck at w=64.
        h = head_sizes(cfg, dict(proj_hidden_dim=d, proj_dim=32 * w, pred_dim=8 * w, proj_layers=3))
        # Linear(d,d)-BN-ReLU x (layers-1), then Linear(d, proj_dim)-BN(affine=False).
        self.projector = mlp([d] + [h["proj_hidden_dim"]] * (h["proj_layers"] - 1) + [h["proj_dim"]], last_bn_affine=False)
        self.predictor = predictor_head(cfg.predictor, h["proj_dim"], h["pred_dim"])
        self.stop_grad = cfg.stop_grad
        self.fix_pred_lr = cfg.fix_pred_lr

    def parameter_groups(self) -> list[dict]:
        encoder = list(self.backbone.parameters()) + list(self.projector.parameters())
        return [
            {"params": encoder, "fixed_lr": False},
            {"params": list(self.predictor.parameters()), "fixed_lr": self.fix_pred_lr},
        ]

    def targets(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What p1 and p2 regress onto: the other view's projection, behind the stop-gradient."""
        return (z2.detach(), z1.detach()) if self.stop_grad else (z2, z1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict:
        z = self.per_views(lambda x: self.projector(self.backbone(x)), torch.cat([x1, x2]))
        p = self.per_views(self.predictor, z)
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        t1, t2 = self.targets(z1, z2)
        loss = (negative_cosine(p1, t1) + negative_cosine(p2, t2)) / 2
        return {"loss": loss, "projections": z.detach()}
