"""MoCo-v3 (Chen, Xie & He, 2021): query = predictor(projector(x)), key = momentum encoder, InfoNCE."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..models import VITS, mlp
from .base import TARGET_MOMENTUM, Option, gather, register
from .byol import BYOL


def info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """Contrastive loss of queries against all (gathered) keys; the positive of query i is key i of this rank.

    Scaled by 2T as in the MoCo-v3 code."""
    q, k = F.normalize(q.float(), dim=1), F.normalize(gather(k.float()), dim=1)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    labels = torch.arange(len(q), device=q.device) + rank * len(q)
    return F.cross_entropy(q @ k.T / temperature, labels) * 2 * temperature


@register("mocov3")
class MoCoV3(BYOL):
    """BYOL's online/target structure with MoCo-v3's heads and the InfoNCE loss."""

    projector_last_bn = True  # BN without affine at the projector's output
    options = {"ema": TARGET_MOMENTUM,  # its predictor is its own: no `predictor` option
               "temperature": Option(1.0, "InfoNCE temperature (1.0 for ResNets in the MoCo-v3 code)",
                                     lambda v: v > 0, "> 0")}

    def __init__(self, backbone: nn.Module, cfg):
        super().__init__(backbone, cfg)
        self.temperature = cfg.temperature

    def default_heads(self, cfg, d: int, w: int) -> dict:
        # 4096 hidden, 256 out at w=64; ResNets get a 2-layer projector, ViTs a 3-layer one.
        return dict(proj_hidden_dim=64 * w, proj_dim=4 * w, pred_dim=64 * w, proj_layers=3 if cfg.arch in VITS else 2)

    def build_predictor(self, cfg, h: dict) -> nn.Module:
        # As the official builder: the ResNet predictor has no final BN, the ViT predictor ends in one.
        return mlp([h["proj_dim"], h["pred_dim"], h["proj_dim"]], last_bn=cfg.arch in VITS, last_bn_affine=False)

    def symmetric_loss(self, p1, p2, t1, t2) -> torch.Tensor:
        return info_nce(p1, t2, self.temperature) + info_nce(p2, t1, self.temperature)
