"""Data orderings of the collapse paper (section 3 of ALGORITHMS.md): every ordering takes exactly the
same number of SGD steps, and an epoch is always len(full set) // batch steps, whatever data it uses.

A fixed permutation of the training pool is cut into equal chunks, each with its share of the steps, in
order, never revisited: the paper's 100 chunks of 1 % in 100 epochs give each chunk one epoch of steps; at
CPU scale the chunk count is a setting of its own (`chunks`), so a short run can still stream through many
small chunks (0 = one chunk per epoch, trained in that epoch's steps).
- iid (multiple pass) and subset: shuffled epochs over the whole pool (`subset` is iid on `--subset`);
- single (continual): chunk c's share of the steps trains on chunk c only (cycled through it);
- cumulative: chunk c's share trains on chunks 0..c;
- hybrid: single for the first `switch` fraction of the steps (to the step), then iid epochs over the pool
  (optimizer and schedule continue).
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
        if self.ordering in ("single", "cumulative", "hybrid") and 0 < self.steps < self.num_chunks:
            raise UserError(f"{self.ordering}: {self.steps} steps cannot give each of {self.num_chunks} chunks a "
                            "step; use fewer --chunks or more --steps")

    def chunk_starts(self) -> list[int]:
        """The first step of each chunk's share, and the budget at the end: one chunk per epoch for chunks = 0,
        else equal shares of the steps (Python's round: a share's boundary at half a step goes to the even step)."""
        if not self.num_chunks:
            return [min(e * self.steps_per_epoch, self.steps) for e in range(self.epochs)] + [self.steps]
        return [round(c * self.steps / self.num_chunks) for c in range(self.num_chunks + 1)]

    def stretches(self):
        """(steps, images) of each stretch of training, in order; a stretch's batches are shuffled passes over
        its images. A generator: a cumulative stretch's growing prefix exists only while it is trained."""
        pool_epochs = lambda first: ((min(self.steps_per_epoch, self.steps - s), self.pool)
                                     for s in range(first, self.steps, self.steps_per_epoch))
        if self.ordering in ("iid", "subset"):
            yield from pool_epochs(0)
            return
        starts, parts = self.chunk_starts(), self.parts
        end = round(self.switch * self.steps) if self.ordering == "hybrid" else self.steps
        for c, (first, last) in enumerate(zip(starts, starts[1:])):
            if min(last, end) > first:
                yield min(last, end) - first, np.concatenate(parts[: c + 1]) if self.ordering == "cumulative" else parts[c]
        if self.ordering == "hybrid":
            yield from pool_epochs(end)

    def batches(self, seed: int, start_step: int = 0):
        """Index batches for steps start_step..steps-1: shuffled passes over each stretch's images, cycled."""
        rng = np.random.default_rng(seed)
        step = 0
        for n_steps, data in self.stretches():
            passes = math.ceil(n_steps * self.batch_size / len(data))
            stream = np.concatenate([rng.permutation(data) for _ in range(passes)])
            for b in range(n_steps):
                if step >= start_step:
                    yield stream[b * self.batch_size : (b + 1) * self.batch_size]
                step += 1
