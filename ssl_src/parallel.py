"""Data parallelism as an object: one process (every method a no-op) or torchrun's processes (DDP: gloo on
CPU, NCCL on CUDA). Every rank draws the same global batch indices and trains on its slice; rank 0 alone
writes the run store and evaluates."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


class SingleProcess:
    """The whole batch in this process: nothing to agree on, gather or broadcast."""

    rank, world = 0, 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local(self, batch_size: int) -> slice:
        """This process's part of a global batch."""
        return slice(self.rank * batch_size // self.world, (self.rank + 1) * batch_size // self.world)

    def agree(self, flags: list[float]) -> list[float]:
        """Stop requests and non-finite losses, maxed over ranks so every rank stops at the same step."""
        return flags

    def gather(self, obj) -> list:
        """Every rank's `obj` (its generator state, its losses), for rank 0 to write into a checkpoint."""
        return [obj]

    def from_main(self, value):
        """Rank 0's `value` on every rank (rank 0 alone holds the run's lock and decides)."""
        return value

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a tensor every rank holds."""
        return tensor

    def wrap(self, model: torch.nn.Module, sync_bn: bool) -> torch.nn.Module:
        """The module the loop calls (the method itself, or its DDP wrapper)."""
        return model


class Distributed(SingleProcess):
    """torchrun's processes: joins the process group on creation."""

    def __init__(self, device: torch.device):
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            if device.type == "cuda":
                torch.cuda.set_device(device)
        self.rank, self.world, self.device = dist.get_rank(), dist.get_world_size(), device

    def agree(self, flags):
        t = torch.tensor(flags, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def gather(self, obj):
        objs = [None] * self.world
        dist.all_gather_object(objs, obj)
        return objs

    def from_main(self, value):
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, tensor):
        dist.all_reduce(tensor)
        return tensor / self.world

    def wrap(self, model, sync_bn):
        if sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: the method is converted
        cuda = self.device.type == "cuda"
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if cuda else None)


def data_parallel(device: torch.device) -> SingleProcess:
    """The processes this run trains in: torchrun's (WORLD_SIZE > 1) or this one."""
    return Distributed(device) if int(os.environ.get("WORLD_SIZE", 1)) > 1 else SingleProcess()
