"""MoCo-v3 (Chen, Xie & He, 2021): query = predictor(projector(x)), key = momentum encoder, InfoNCE."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..models import VITS, mlp
from .base import Method, MomentumTarget, gather, head_sizes, register


def info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """Contrastive loss of queries against all (gathered) keys; the positive of query i is key i of this rank.

    Scaled by 2T as in the MoCo-v3 code."""
    q, k = F.normalize(q.float(), dim=1), F.normalize(gather(k.float()), dim=1)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    labels = torch.arange(len(q), device=q.device) + rank * len(q)
    return F.cross_entropy(q @ k.T / temperature, labels) * 2 * temperature


@register("mocov3")
class MoCoV3(Method):
    def __init__(self, backbone: nn.Module, cfg):
        super().__init__(backbone, cfg)
        d, w = backbone.num_features, cfg.width
        # MoCo-v3's heads scaled with the width (4096 hidden, 256 out at w=64): ResNets get a 2-layer projector
        # and a predictor without a final BN; ViTs a 3-layer projector and a predictor ending in BN.
        vit = cfg.arch in VITS
        h = head_sizes(cfg, dict(proj_hidden_dim=64 * w, proj_dim=4 * w, pred_dim=64 * w, proj_layers=3 if vit else 2))
        self.projector = mlp([d] + [h["proj_hidden_dim"]] * (h["proj_layers"] - 1) + [h["proj_dim"]], last_bn_affine=False)
        self.predictor = mlp([h["proj_dim"], h["pred_dim"], h["proj_dim"]], last_bn=vit, last_bn_affine=False)
        self.target = MomentumTarget([self.backbone, self.projector], cfg.ema)
        self.temperature = cfg.temperature

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict:
        x = torch.cat([x1, x2])
        z = self.projector(self.backbone(x))
        q1, q2 = self.predictor(z).chunk(2)
        with torch.no_grad():
            k1, k2 = self.target(x).chunk(2)
        loss = info_nce(q1, k2, self.temperature) + info_nce(q2, k1, self.temperature)
        return {"loss": loss}

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        self.target.update(progress)
