"""NNSiam: SimSiam whose targets are the nearest neighbours of the projections in a FIFO queue."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import gather, register
from .simsiam import SimSiam


@register("nnsiam")
class NNSiam(SimSiam):
    supports_no_stop_grad = False  # neighbours from the queue never carry gradient

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
        nn1, nn2 = self.nearest(z1.detach()), self.nearest(z2.detach())
        self._to_enqueue = z1.detach().float()  # only view 1 is enqueued
        return nn2, nn1

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        z = gather(self._to_enqueue)  # the config check keeps len(z) <= queue size
        idx = (self.queue_ptr + torch.arange(len(z), device=z.device)) % len(self.queue)
        self.queue[idx] = z
        self.queue_ptr.copy_((self.queue_ptr + len(z)) % len(self.queue))
