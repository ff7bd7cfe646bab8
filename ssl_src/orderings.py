"""Data orderings of the collapse paper (section 3 of ALGORITHMS.md): every ordering takes exactly the
same number of SGD steps, and an epoch is always len(full set) // batch steps, whatever data it uses.

A fixed permutation of the training pool is cut into equal chunks (at CPU scale, chunks = epochs):
- iid (multiple pass) and subset: shuffled epochs over the whole pool (`subset` is iid on `--subset`);
- single (continual): epoch e trains only on chunk e, cycled to fill the epoch;
- cumulative: epoch e trains on chunks 0..e;
- hybrid: single for the first `switch` fraction of the steps, then iid (optimizer and schedule continue).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import chunks
from .errors import UserError

ORDERINGS = ("iid", "subset", "single", "cumulative", "hybrid")


@dataclass(frozen=True)
class Schedule:
    pool: np.ndarray  # the training images available (a subset of the permutation)
    full_size: int  # size of the whole training set: fixes the epoch length
    batch_size: int
    steps: int
    ordering: str = "iid"
    num_chunks: int = 0  # 0 = one chunk per epoch
    switch: float = 0.4

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.full_size // self.batch_size)

    @property
    def epochs(self) -> int:
        return max(1, math.ceil(self.steps / self.steps_per_epoch))

    @property
    def parts(self) -> list[np.ndarray]:
        return chunks(self.pool, self.num_chunks or self.epochs)

    def validate(self) -> None:
        if self.ordering not in ORDERINGS:
            raise UserError(f"unknown ordering {self.ordering!r}; valid: {', '.join(ORDERINGS)}")
        if not 0 <= self.switch <= 1:
            raise UserError(f"switch must be in [0, 1], got {self.switch}")
        if self.batch_size > len(self.pool):
            raise UserError(f"batch size {self.batch_size} is larger than the subset ({len(self.pool)} images); "
                            "use a larger --subset or a smaller --batch-size")
        if self.ordering in ("single", "cumulative", "hybrid") and len(self.parts[0]) < self.batch_size:
            raise UserError(f"{self.ordering}: a chunk holds {len(self.parts[0])} images, fewer than the batch "
                            f"size {self.batch_size}; use fewer --chunks or a smaller --batch-size")

    def epoch_data(self, epoch: int) -> np.ndarray:
        """The images epoch `epoch` draws its batches from."""
        parts = self.parts
        chunk = epoch % len(parts)
        if self.ordering in ("iid", "subset"):
            return self.pool
        if self.ordering == "single":
            return parts[chunk]
        if self.ordering == "cumulative":
            return np.concatenate(parts[: min(epoch, len(parts) - 1) + 1])
        single_phase = epoch * self.steps_per_epoch < self.switch * self.steps  # hybrid
        return parts[chunk] if single_phase else self.pool

    def batches(self, seed: int, start_step: int = 0):
        """Index batches for steps start_step..steps-1: shuffled passes over each epoch's data, cycled."""
        rng = np.random.default_rng(seed)
        step = 0
        for epoch in range(self.epochs):
            n_steps = min(self.steps_per_epoch, self.steps - step)
            if n_steps <= 0:  # a 0-step run (the random-init baseline)
                return
            data = self.epoch_data(epoch)
            passes = math.ceil(n_steps * self.batch_size / len(data))
            stream = np.concatenate([rng.permutation(data) for _ in range(passes)])
            for b in range(n_steps):
                if step >= start_step:
                    yield stream[b * self.batch_size : (b + 1) * self.batch_size]
                step += 1
