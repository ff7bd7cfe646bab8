"""Streaming an ImageFolder (ImageNet) for training: DataLoader workers decode each file and cut its two random
resized crops (and flips) from the full image, as the paper's recipe does; the rest of the augmentation runs
batched on the device (`augment(..., cropped=True)`). Memory is bounded by the batches in flight.

The batches are the run's `Schedule` over file indices, so subsets and orderings mean what they mean in memory.
Every view is seeded by (run seed, step, position in the global batch): the same crops whatever the number of
workers or processes' order, and again after a resume.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .augment import AugmentConfig


def random_resized_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                            rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a random crop: torchvision's RandomResizedCrop.get_params (area fraction in `scale`,
    log-uniform aspect ratio in `ratio`, 10 tries, then the central crop of the ratio nearest the image's), drawn
    from `rng` instead of torch's global generator."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


class CropViews(Dataset):
    """Item (step, slot, file index): the file's two views, uint8 (2, 3, size, size), each a random resized crop
    of the full image, resized to `size` and flipped with probability `flip_p`."""

    def __init__(self, paths: list[Path], size: int, cfg: AugmentConfig, seed: int):
        self.paths, self.size, self.cfg, self.seed = paths, size, cfg, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int, int]) -> torch.Tensor:
        from PIL import Image

        step, slot, index = key
        rng = np.random.default_rng([self.seed, step, slot])
        with Image.open(self.paths[index]) as img:
            img = img.convert("RGB")
            return torch.stack([self._view(img, rng) for _ in range(2)])

    def _view(self, img, rng: np.random.Generator) -> torch.Tensor:
        from PIL import Image

        left, top, w, h = random_resized_crop_box(img.width, img.height, self.cfg.crop_scale, self.cfg.crop_ratio, rng)
        view = img.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + w, top + h))
        if rng.random() < self.cfg.flip_p:
            view = view.transpose(Image.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.asarray(view).transpose(2, 0, 1).copy())


def step_keys(batches: Iterable[np.ndarray], start_step: int, local: slice) -> Iterator[list[tuple[int, int, int]]]:
    """This process's items of each step: (step, slot in the global batch, file index)."""
    for step, batch in enumerate(batches, start_step):
        slots = range(len(batch))[local]
        yield [(step, slot, int(batch[slot])) for slot in slots]


def loader_workers() -> int:
    """Decoding processes per training process: $SSL_LOADER_WORKERS, else the cores less one (at most 8). The
    views do not depend on it."""
    return int(os.environ.get("SSL_LOADER_WORKERS", min(8, max(1, (os.cpu_count() or 2) - 1))))


def crop_loader(paths: list[Path], size: int, cfg: AugmentConfig, seed: int, batches: Iterable[np.ndarray],
                start_step: int, local: slice, pin_memory: bool, workers: int | None = None) -> DataLoader:
    """Batches of views, uint8 (B, 2, 3, size, size), one per step from `start_step`, decoded ahead by workers."""
    workers = loader_workers() if workers is None else workers
    return DataLoader(CropViews(paths, size, cfg, seed), batch_sampler=step_keys(batches, start_step, local),
                      num_workers=workers, pin_memory=pin_memory, prefetch_factor=2 if workers else None)
