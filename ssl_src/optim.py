"""The optimizer and the learning-rate schedule."""
from __future__ import annotations

import math

import torch


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to 0 at `total` (per step)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Scale every group's lr by the schedule, except groups flagged `fixed_lr` (SimSiam's predictor)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] if group["fixed_lr"] else group["initial_lr"] * factor


def build_optimizer(model, cfg) -> torch.optim.Optimizer:
    """SGD (weight decay on everything, as SimSiam), or LARS / AdamW with biases and norms excluded from
    weight decay (and so, in timm's LARS, from the trust-ratio adaptation), as MoCo-v3 and BYOL."""
    groups = []
    for group in model.parameter_groups():
        params = [p for p in group["params"] if p.requires_grad]
        if cfg.optimizer == "sgd":
            split = [(params, cfg.weight_decay)]
        else:
            split = [([p for p in params if p.ndim > 1], cfg.weight_decay), ([p for p in params if p.ndim <= 1], 0.0)]
        groups += [dict(params=ps, weight_decay=wd, fixed_lr=group["fixed_lr"], lr=cfg.lr, initial_lr=cfg.lr)
                   for ps, wd in split if ps]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "lars":
        import timm.optim  # imported here: timm takes seconds to import

        return timm.optim.Lars(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)
