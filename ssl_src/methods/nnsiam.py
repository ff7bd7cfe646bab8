"""NNSiam: SimSiam whose targets are the nearest neighbours of the projections in a FIFO queue."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import Option, gather, register
from .simsiam import SimSiam


@register("nnsiam")
class NNSiam(SimSiam):
    # neighbours from the queue never carry gradient: no `stop_grad` option
    options = {k: v for k, v in SimSiam.options.items() if k != "stop_grad"} | {
        "queue_size": Option(0, "queue length (0 = 25,600 scaled by the data-set size, at least 2 batches)",
                             lambda v: v >= 0, ">= 0")}

    @classmethod
    def resolve_config(cls, cfg, train_size: int):
        if cfg.queue_size == 0:  # the authors' 25,600 entries at ImageNet's 1,281,167 images
            cfg = replace(cfg, queue_size=max(2 * cfg.batch_size, round(25_600 * train_size / 1_281_167)))
        if cfg.queue_size < cfg.batch_size:
            raise UserError(f"queue size {cfg.queue_size} must be at least the batch size {cfg.batch_size}")
        return cfg

    def __init__(self, backbone, cfg):
        super().__init__(backbone, cfg)
        dim = self.projector[-2].out_features
        # Initialised random, as the authors' queue; 25,600 entries at ImageNet scale.
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """The queue entry nearest to each row of z in squared L2 distance."""
        return self.queue[torch.cdist(z.float(), self.queue).argmin(dim=1)]

    def targets(self, z1, z2):
        return self.nearest(z2.detach()), self.nearest(z1.detach())

    @torch.no_grad()
    def after_optimizer_step(self, progress: float, out: dict) -> None:
        z = gather(out["projections"].chunk(2)[0].float())  # only view 1 is enqueued; len(z) <= queue size
        idx = (self.queue_ptr + torch.arange(len(z), device=z.device)) % len(self.queue)
        self.queue[idx] = z
        self.queue_ptr.copy_((self.queue_ptr + len(z)) % len(self.queue))
