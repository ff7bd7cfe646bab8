"""What every method shares: the registry, the base class, the losses and the head builders."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models import mlp

METHODS: dict[str, type["Method"]] = {}


def register(name: str):
    def wrap(cls):
        METHODS[name] = cls
        return cls

    return wrap


def method_names() -> list[str]:
    return sorted(METHODS)


@dataclass(frozen=True)
class Option:
    """A method's own hyper-parameter, a TrainConfig field: its default, help, valid range and flag."""

    default: bool | int | float | str
    help: str
    valid: Callable[[Any], bool] = lambda value: True
    requirement: str = ""  # what `valid` demands, for the error message
    choices: tuple[str, ...] = ()
    flag: str = ""  # the CLI flag where it is not --the-name (a bool that defaults to True: --no-...)
    methods: tuple[str, ...] = ()  # filled by method_options(): the methods that declare it

    def check(self, name: str, value) -> None:
        if not self.valid(value):
            raise UserError(f"{name} must be {self.requirement}, got {value!r}")


def method_options() -> dict[str, Option]:
    """Every registered method's options by name (an option several methods declare appears once, with the
    names of those methods); two declarations of one name must agree."""
    merged: dict[str, Option] = {}
    for name in method_names():
        for key, option in METHODS[name].options.items():
            known = merged.get(key)
            if known is not None and replace(known, methods=()) != option:
                raise TypeError(f"option {key!r} is declared differently by {name} and {', '.join(known.methods)}")
            merged[key] = replace(option, methods=(known.methods if known else ()) + (name,))
    return merged


class Method(nn.Module):
    """A backbone with method-specific heads; `forward(x1, x2)` returns a dict with the scalar `loss`, and
    `after_optimizer_step(progress, out)` gets that dict back (targets, queues, predictor rewrites).

    `cfg` is the run's TrainConfig (read-only): a method reads the fields it needs, its own declared in
    `options` (a subclass extends its parent's).
    """

    options: dict[str, Option] = {}

    def __init__(self, backbone: nn.Module, cfg):
        super().__init__()
        self.backbone = backbone
        self.per_view_bn = cfg.bn_views == "per_view"

    @classmethod
    def check_config(cls, cfg) -> None:
        """Checks of a whole config that only this method knows (options of other methods are ignored)."""

    @classmethod
    def resolve_config(cls, cfg, train_size: int):
        """The config with this method's data-dependent defaults filled, so the stored config says what ran."""
        return cfg

    def per_views(self, net, x: torch.Tensor) -> torch.Tensor:
        """`net` over both stacked views: in one pass (BN statistics pooled over the two views, faster on
        CPU) or, with bn_views=per_view, view by view as in the authors' code (BN statistics per view)."""
        if self.per_view_bn:
            return torch.cat([net(view) for view in x.chunk(2)])
        return net(x)

    def parameter_groups(self) -> list[dict]:
        """Optimizer groups; a group with `fixed_lr=True` keeps its initial lr through the schedule."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "fixed_lr": False}]

    @torch.no_grad()
    def after_optimizer_step(self, progress: float, out: dict) -> None:
        """Hook for target updates, queues or predictor rewrites; progress = finished fraction of training,
        `out` = what `forward` returned for the step."""


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """-cos(p, z) averaged over the batch; the caller decides whether z carries gradient."""
    return -F.cosine_similarity(p.float(), z.float(), dim=-1).mean()


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor over data-parallel ranks (no gradient), or return it unchanged."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


PREDICTOR = Option("mlp", "predictor head: the 2-layer MLP, one linear map (DirectPred's baseline) or none (the "
                   "identity: SimSiam's and BYOL's collapse demonstration)", choices=("mlp", "linear", "none"))
TARGET_MOMENTUM = Option(0.99, "base momentum of the target network (rises to 1 on a cosine)",
                         lambda v: 0 <= v <= 1, "in [0, 1]")


def predictor_head(kind: str, dim: int, hidden: int) -> nn.Module:
    """The predictor variants: 2-layer BN MLP, one linear map (the DirectPred chapter's), or none at all."""
    if kind == "mlp":
        return mlp([dim, hidden, dim], last_bn=False, last_bias=True)
    if kind == "linear":
        return nn.Linear(dim, dim, bias=False)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"unknown predictor {kind!r}; valid: mlp, linear, none")


class MomentumTarget(nn.Module):
    """EMA copies of online modules; momentum rises from `base` to 1 on a cosine (BYOL, MoCo-v3)."""

    def __init__(self, online: list[nn.Module], base_momentum: float):
        super().__init__()
        self.online = online  # a plain list keeps the online nets out of this module's parameters
        self.nets = nn.ModuleList(copy.deepcopy(m) for m in online)
        self.nets.requires_grad_(False)
        self.base_momentum = base_momentum

    def momentum(self, progress: float) -> float:
        return 1 - (1 - self.base_momentum) * (math.cos(math.pi * progress) + 1) / 2

    @torch.no_grad()
    def update(self, progress: float) -> None:
        m = self.momentum(progress)
        for target_net, online_net in zip(self.nets, self.online):
            for target, online in zip(target_net.parameters(), online_net.parameters()):
                target.mul_(m).add_(online.detach(), alpha=1 - m)
            for target, online in zip(target_net.buffers(), online_net.buffers()):
                target.copy_(online)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for net in self.nets:
            x = net(x)
        return x


def head_sizes(cfg, defaults: dict) -> dict:
    """The run's head sizes: a config field left at 0 takes the method's default for this backbone."""
    return {k: getattr(cfg, k) or v for k, v in defaults.items()}


def build_method(name: str, backbone: nn.Module, cfg, **extra) -> Method:
    """The registered method `name` around `backbone` (`extra`: a test's stand-ins, e.g. a teacher)."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; valid: {', '.join(method_names())}")
    return METHODS[name](backbone, cfg, **extra)
