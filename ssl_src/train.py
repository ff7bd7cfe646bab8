"""The one training loop: data -> batched augmentation -> method -> optimizer, then evaluation and the store."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from tqdm.std import tqdm

from . import data as datasets
from .augment import AugmentConfig, augment
from .errors import UserError
from .evaluate import evaluate_features, extract_features
from .methods import build_method, method_names
from .models import STEMS, arch_names, build_backbone, to_device_layout
from .store import Run, provenance, save_torch_atomic

PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's result (its hash is the run id)."""

    method: str = "simsiam"
    arch: str = "resnet18"
    width: int = 16
    stem: str = "cifar"
    dataset: str = "fashion_mnist"
    image_size: int = 28
    subset: float = 1.0
    data_seed: int = 0
    steps: int = 1000
    batch_size: int = 256
    seed: int = 0
    base_lr: float = 0.05  # lr = base_lr * batch_size / 256
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    fix_pred_lr: bool = True
    proj_dim: int = 0  # 0 = scaled with the width: 32 * width (2048 at width 64, as the paper)
    pred_dim: int = 0  # 0 = 8 * width (512 at width 64)
    proj_layers: int = 3
    precision: str = "auto"
    eval_train_images: int = 0  # 0 = the whole training set (as the authors); smoke scale uses fewer
    eval_test_images: int = 0  # 0 = the whole test set
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def head_sizes(self) -> dict:
        return {"proj_dim": self.proj_dim or 32 * self.width, "pred_dim": self.pred_dim or 8 * self.width,
                "proj_layers": self.proj_layers}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @property
    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def validate(self, train_size: int | None = None) -> None:
        if self.method not in method_names():
            raise UserError(f"unknown method {self.method!r}; valid: {', '.join(method_names())}")
        if self.arch not in arch_names():
            raise UserError(f"unknown arch {self.arch!r}; valid: {', '.join(arch_names())}")
        if self.dataset not in datasets.dataset_names():
            raise UserError(f"unknown dataset {self.dataset!r}; valid: {', '.join(datasets.dataset_names())}")
        if self.stem not in STEMS:
            raise UserError(f"unknown stem {self.stem!r}; valid: {', '.join(STEMS)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        for name in ("width", "batch_size", "image_size", "proj_layers"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("proj_dim", "pred_dim", "warmup_steps", "eval_train_images", "eval_test_images"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.steps < 0:
            raise UserError(f"steps must be >= 0, got {self.steps}")
        if not 0 < self.subset <= 1:
            raise UserError(f"subset must be in (0, 1], got {self.subset}")
        if train_size is not None and self.batch_size > round(self.subset * train_size):
            raise UserError(
                f"batch size {self.batch_size} is larger than the subset ({round(self.subset * train_size)} images); "
                "use a larger --subset or a smaller --batch-size"
            )


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cpu_has_bf16() -> bool:
    """bf16 pays on the CPU only with native bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device):
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda" or cpu_has_bf16():
        return torch.bfloat16
    return None


def iid_batches(indices: np.ndarray, batch_size: int, steps: int, seed: int):
    """Shuffled epochs over `indices` (the incomplete last batch of an epoch is dropped)."""
    rng = np.random.default_rng(seed)
    per_epoch = len(indices) // batch_size
    step = 0
    while step < steps:
        perm = rng.permutation(indices)
        for b in range(min(per_epoch, steps - step)):
            yield perm[b * batch_size : (b + 1) * batch_size]
        step += min(per_epoch, steps - step)


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


def build_model(cfg: TrainConfig, in_chans: int):
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.arch, cfg.width, in_chans, cfg.stem)
    return build_method(cfg.method, backbone, **cfg.head_sizes())


def _optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = [dict(g, lr=cfg.lr, initial_lr=cfg.lr) for g in model.parameter_groups(cfg.fix_pred_lr)]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def evaluate_backbone(backbone, cfg: TrainConfig, data: datasets.ImageData, device) -> dict:
    dtype = autocast_dtype(cfg.precision, device)
    data = datasets.evaluation_view(data, cfg.eval_train_images, cfg.eval_test_images)
    train_x = extract_features(backbone, data.train_images, data, cfg.image_size, device, autocast_dtype=dtype)
    test_x = extract_features(backbone, data.test_images, data, cfg.image_size, device, autocast_dtype=dtype)
    return evaluate_features(train_x, test_x, data)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(cfg: TrainConfig, *, evaluate: bool = True, force: bool = False, progress: bool = True,
          log_every: int = 20) -> dict:
    """Train (or re-use) the run `cfg` names and return its summary."""
    cfg.validate()
    data = datasets.load(cfg.dataset, cfg.image_size if cfg.stem == "imagenet" else None)
    cfg.validate(train_size=len(data.train_images))
    run = Run(cfg.to_dict())
    device = pick_device()

    if run.finished() and not force:
        summary = run.summary()
        if evaluate and "knn_acc" not in summary:
            _log(f"run {run.id}: trained earlier without evaluation; evaluating its checkpoint")
            model = build_model(cfg, data.channels)
            model.load_state_dict(torch.load(run.checkpoint_path, map_location="cpu", weights_only=True))
            summary.update(evaluate_backbone(to_device_layout(model.backbone, device), cfg, data, device))
            run.finish(summary, provenance(cfg.seed, device, summary["train_seconds"], str(autocast_dtype(cfg.precision, device))))
        else:
            _log(f"run {run.id}: re-using the stored result (pass --force to train again)")
        return summary

    run.start()
    started = time.perf_counter()
    dtype = autocast_dtype(cfg.precision, device)
    model = to_device_layout(build_model(cfg, data.channels), device)
    optimizer = _optimizer(model, cfg)
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    indices = datasets.subset_indices(len(data.train_images), cfg.subset, cfg.data_seed)
    model.train()

    loss_value, window = float("nan"), []
    bar = tqdm(total=cfg.steps, desc=f"{cfg.method} {cfg.arch}-w{cfg.width} {run.id}", disable=not progress,
               file=sys.stderr, mininterval=2.0, dynamic_ncols=False, ncols=100)
    train_started = time.perf_counter()
    for step, batch_idx in enumerate(iid_batches(indices, cfg.batch_size, cfg.steps, cfg.seed)):
        set_learning_rates(optimizer, lr_factor(step, cfg.steps, cfg.warmup_steps))
        images = data.train_images[torch.from_numpy(batch_idx)].to(device, non_blocking=True)
        x1 = augment(images, cfg.augment, cfg.image_size, data.mean, data.std, generator)
        x2 = augment(images, cfg.augment, cfg.image_size, data.mean, data.std, generator)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x1, x2)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        model.after_optimizer_step(step, cfg.steps)
        window.append(out["loss"].detach())
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            loss_value = float(torch.stack(window).float().mean())
            window = []
            elapsed = time.perf_counter() - train_started
            pairs_per_s = (step + 1) * cfg.batch_size / elapsed
            run.log_metrics({"step": step + 1, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"],
                             "pairs_per_s": pairs_per_s})
            bar.set_postfix(loss=f"{loss_value:.4f}", pairs_s=f"{pairs_per_s:.0f}", refresh=False)
        bar.update(1)
    bar.close()
    train_seconds = time.perf_counter() - train_started

    save_torch_atomic(run.checkpoint_path, model.state_dict())
    summary = {
        "run_id": run.id,
        "method": cfg.method,
        "arch": cfg.arch,
        "width": cfg.width,
        "subset": cfg.subset,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "loss": loss_value,
        "train_seconds": train_seconds,
        "pairs_per_s": cfg.steps * cfg.batch_size / train_seconds if cfg.steps else float("nan"),
    }
    if evaluate:
        summary.update(evaluate_backbone(model.backbone, cfg, data, device))
    run.finish(summary, provenance(cfg.seed, device, time.perf_counter() - started, str(dtype)))
    return summary


def with_overrides(cfg: TrainConfig, **overrides) -> TrainConfig:
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
