"""The one training loop: data -> batched augmentation -> method -> optimizer, then evaluation and the store.

Data-parallel under torchrun (DDP: gloo on CPU, NCCL on CUDA): every rank draws the same global batch
indices and trains on its slice; rank 0 alone writes the run store and evaluates.
"""
from __future__ import annotations

import collections
import contextlib
import json
import math
import pickle
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
import torch.distributed as dist
from tqdm.std import tqdm

from . import data as datasets
from .augment import AugmentConfig, augment
from .errors import TrainingStopped, UserError, matches_type
from .evaluate import evaluate_features, extract_features, weighted_knn_accuracy
from .hardware import autocast_dtype, pick_device
from .methods import build_method, method_names
from .metrics import asymmetry, collapse_metrics, eigenspace_alignment, normalised_std
from .models import STEMS, VITS, arch_names, build_backbone, to_device_layout
from .orderings import ORDERINGS, Schedule
from .store import Run, provenance, results_root, save_torch_atomic

PRECISIONS = ("auto", "bf16", "fp32")
OPTIMIZERS = ("sgd", "lars", "adamw")
PREDICTORS = ("mlp", "linear")
BN_VIEWS = ("joint", "per_view")
MONITOR_PROBE_IMAGES = 2048
MONITOR_TEST_IMAGES = 1024  # queries of the monitor's kNN, against the probe set's features as the bank
MONITOR_KNN_K = 20  # weighted kNN on a 2048-image bank: k = 200 would vote with a tenth of the bank
COLLAPSE_WARNING_RANK = 2.0  # effective rank below this = complete collapse
CHECKPOINT_EVERY = 500  # steps: a quick-scale run (1000 steps, ~2 min) loses at most a minute; a GPU paper run, minutes
TIMING_FIELDS = ("train_seconds", "pairs_per_s", "monitor_seconds", "eval_seconds")  # the summary fields a re-run may change


def field_choices() -> dict[str, list[str]]:
    """The valid values of every TrainConfig field that is a name (CLI choices and validation)."""
    return {"method": method_names(), "arch": arch_names(), "dataset": datasets.dataset_names(), "stem": list(STEMS),
            "precision": list(PRECISIONS), "optimizer": list(OPTIMIZERS), "predictor": list(PREDICTORS),
            "bn_views": list(BN_VIEWS), "ordering": list(ORDERINGS)}


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
    ordering: str = "iid"
    chunks: int = 0  # 0 = one chunk per epoch
    switch: float = 0.4  # hybrid: fraction of the steps trained single-pass
    steps: int = 1000
    batch_size: int = 256  # global batch (split over data-parallel ranks)
    seed: int = 0
    optimizer: str = "sgd"
    base_lr: float = 0.05  # lr = base_lr * batch_size / 256
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    warmup_epochs: float = 0.0  # added to warmup_steps; an epoch is len(full set) // batch steps
    fix_pred_lr: bool = True
    stop_grad: bool = True
    predictor: str = "mlp"
    bn_views: str = "joint"  # joint: both views in one pass (BN pooled); per_view: the authors' BN per view
    proj_hidden_dim: int = 0  # 0 = the method's default for this backbone and width
    proj_dim: int = 0
    pred_dim: int = 0
    proj_layers: int = 0
    ema: float = 0.99  # base momentum of BYOL / MoCo-v3 / DirectPred targets (cosine to 1)
    temperature: float = 1.0  # MoCo-v3 InfoNCE (1.0 for ResNets in the MoCo-v3 code)
    queue_size: int = 0  # NNSiam; 0 = 25,600 scaled by the data-set size (at least 2 batches)
    dp_rho: float = 0.3  # DirectPred: weight of the OLD correlation estimate
    dp_eps: float = 0.01
    dp_freq: int = 1
    teacher: str = ""  # distill: run id of a stored run whose backbone is the teacher
    freeze_patch_embed: bool = True  # ViT
    sync_bn: bool = False
    monitor_every: int = 100  # steps between live collapse measurements (0 = off)
    precision: str = "auto"
    eval_train_images: int = 0  # 0 = the whole training set (as the authors); smoke scale uses fewer
    eval_test_images: int = 0  # 0 = the whole test set
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @property
    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def validate(self) -> None:
        for f in fields(self):
            value, default = getattr(self, f.name), getattr(TrainConfig, f.name, None)
            if isinstance(default, (bool, int, float, str)) and not matches_type(value, type(default)):
                raise UserError(f"{f.name} must be {type(default).__name__}, got {value!r}")
        for name, valid in field_choices().items():
            if getattr(self, name) not in valid:
                raise UserError(f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}")
        for name in ("width", "batch_size", "image_size", "dp_freq"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("steps", "chunks", "proj_hidden_dim", "proj_dim", "pred_dim", "proj_layers", "warmup_steps",
                     "warmup_epochs", "queue_size", "monitor_every", "eval_train_images", "eval_test_images"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.subset <= 1:
            raise UserError(f"subset must be in (0, 1], got {self.subset}")
        if self.method == "distill" and not self.teacher:
            raise UserError("distill needs a teacher: --teacher RUN_ID of a stored run (python -m ssl_src train ...)")
        if self.temperature <= 0 or not 0 <= self.ema <= 1 or not 0 <= self.dp_rho < 1:
            raise UserError("temperature must be > 0, ema in [0, 1] and dp_rho in [0, 1)")


# ----------------------------------------------------------------------------- devices


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return (dist.get_rank(), world) if world > 1 else (0, 1)


# ----------------------------------------------------------------------------- schedule and optimizer


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


def build_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
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


# ----------------------------------------------------------------------------- model


def load_backbone(run_id: str) -> torch.nn.Module:
    """The frozen backbone of a stored, finished run (the distillation teacher)."""
    run_dir = results_root() / run_id
    try:
        stored = json.loads((run_dir / "config.json").read_text())["config"]
        state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
        backbone = build_backbone(stored["arch"], stored["width"], datasets.manifest(stored["dataset"])["channels"],
                                  stored["stem"], stored["image_size"], stored.get("freeze_patch_embed", True))
        backbone.load_state_dict({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})
    except (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:
        raise UserError(f"teacher run {run_id!r} not found or unreadable in {results_root()} ({exc})") from None
    return backbone


def build_model(cfg: TrainConfig, in_chans: int):
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.arch, cfg.width, in_chans, cfg.stem, cfg.image_size, cfg.freeze_patch_embed)
    extra = {"teacher": load_backbone(cfg.teacher)} if cfg.method == "distill" else {}
    return build_method(cfg.method, backbone, cfg, **extra)


def resolved(cfg: TrainConfig, train_size: int) -> TrainConfig:
    """Fill the data-dependent defaults, so the stored config says what actually ran."""
    if cfg.method == "nnsiam" and cfg.queue_size == 0:
        cfg = replace(cfg, queue_size=max(2 * cfg.batch_size, round(25_600 * train_size / 1_281_167)))
    if cfg.method == "nnsiam" and cfg.queue_size < cfg.batch_size:
        raise UserError(f"queue size {cfg.queue_size} must be at least the batch size {cfg.batch_size}")
    if cfg.precision == "auto":  # the run id names what ran: bf16 on one machine is not fp32 on another
        cfg = replace(cfg, precision="bf16" if autocast_dtype("auto", pick_device()) else "fp32")
    if cfg.arch in VITS and cfg.stem != "cifar":
        raise UserError("--stem applies to ResNets only")
    return cfg


def evaluate_backbone(method, cfg: TrainConfig, data: datasets.ImageData, device) -> dict:
    """Evaluation of the method's backbone, plus the normalised std of its projector output (where it has one)."""
    data = datasets.evaluation_view(data, cfg.eval_train_images, cfg.eval_test_images)
    train_x = extract_features(method.backbone, data.train_images, data, cfg.image_size, device)
    test_x = extract_features(method.backbone, data.test_images, data, cfg.image_size, device)
    result = evaluate_features(train_x, test_x, data)
    projector = getattr(method, "projector", None)
    if projector is not None:
        was_training = projector.training
        with torch.no_grad():
            result["projector_normalised_std"] = normalised_std(projector.eval()(train_x.to(device)).float().cpu())
        projector.train(was_training)
    return result


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class CollapseMonitor:
    """Collapse metrics of the fp32 backbone features of a fixed probe set, every `monitor_every` steps, and
    a small weighted kNN (fixed test images against the probe set): the learning curve of a run."""

    def __init__(self, run: Run, data: datasets.ImageData, cfg: TrainConfig, device):
        idx = torch.from_numpy(datasets.data_permutation(len(data.train_images), cfg.data_seed + 1)[:MONITOR_PROBE_IMAGES])
        test_idx = torch.from_numpy(datasets.data_permutation(len(data.test_images), cfg.data_seed + 1)[:MONITOR_TEST_IMAGES])
        self.images, self.labels = data.train_images[idx], data.train_labels[idx]
        self.test_images, self.test_labels = data.test_images[test_idx], data.test_labels[test_idx]
        self.data, self.cfg, self.device, self.run = data, cfg, device, run
        self.seconds = 0.0
        self.warned = False

    def __call__(self, method, step: int) -> None:
        started = time.perf_counter()
        features = extract_features(method.backbone, self.images, self.data, self.cfg.image_size, self.device)
        test_features = extract_features(method.backbone, self.test_images, self.data, self.cfg.image_size, self.device)
        metrics = collapse_metrics(features)
        metrics["weighted_knn20_acc"] = weighted_knn_accuracy(features, self.labels, test_features, self.test_labels,
                                                   self.data.num_classes, k=MONITOR_KNN_K)
        self.run.log_monitor(dict(metrics, step=step, **predictor_spectra(method, features, self.device)))
        if metrics["effective_rank"] < COLLAPSE_WARNING_RANK and not self.warned:
            _log(f"warning: run {self.run.id} step {step}: effective rank {metrics['effective_rank']:.2f} "
                 f"< {COLLAPSE_WARNING_RANK}: the representation has collapsed completely")
            self.warned = True
        self.seconds += time.perf_counter() - started


def predictor_spectra(method, features: torch.Tensor, device) -> dict:
    """For a linear predictor W_p (Tian et al.'s setting): the eigenvalues of F = E[f f^T] over the probe
    set's projector outputs f (eval mode), the real parts of W_p's eigenvalues, cos(u_j, W_p u_j) per
    eigenvector of F, and W_p's asymmetry. Empty for other predictors."""
    predictor = getattr(method, "predictor", None)
    if not isinstance(predictor, torch.nn.Linear):
        return {}
    was_training = method.projector.training
    with torch.no_grad():
        f = method.projector.eval()(features.to(device)).double().cpu()
    method.projector.train(was_training)
    W_p = predictor.weight.detach().double().cpu().numpy()
    s, cos = eigenspace_alignment((f.T @ f / len(f)).numpy(), W_p)
    return {"F_eigenvalues": s.tolist(), "predictor_eigenvalues": sorted(np.linalg.eigvals(W_p).real.tolist(), reverse=True),
            "alignment": cos.tolist(), "predictor_asymmetry": asymmetry(W_p)}


# ----------------------------------------------------------------------------- the loop


class StopRequests:
    """SIGINT/SIGTERM while training ask the loop to finish its step, write a checkpoint and stop;
    a second signal stops at once."""

    def __init__(self):
        self.signal = 0
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # Python delivers signals there only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._request)
        return self

    def _request(self, signum, frame):
        if self.signal:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _agree(flags: list[float], world: int, device) -> list[float]:
    """Stop requests and non-finite losses, maxed over data-parallel ranks so every rank stops at the same step."""
    if world == 1:
        return flags
    t = torch.tensor(flags, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def _gather(obj, world: int) -> list:
    """Every rank's `obj` (its generator state, its losses), for rank 0 to write into the checkpoint."""
    if world == 1:
        return [obj]
    objs = [None] * world
    dist.all_gather_object(objs, obj)
    return objs


def _from_rank0(value, world: int):
    """Rank 0's `value` on every rank (rank 0 alone holds the run's lock and decides)."""
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def prepare(cfg: TrainConfig) -> tuple[TrainConfig, datasets.ImageData, Schedule]:
    """Every check that needs no training: the config, the data (present, checksums), the batch schedule.
    Chapters call it for all their runs before any of them starts."""
    cfg.validate()
    data = datasets.load(cfg.dataset, cfg.image_size if cfg.stem == "imagenet" else None)
    cfg = resolved(cfg, len(data.train_images))
    pool = datasets.subset_indices(len(data.train_images), cfg.subset, cfg.data_seed)
    schedule = Schedule(pool, len(data.train_images), cfg.batch_size, cfg.steps, cfg.ordering, cfg.chunks, cfg.switch)
    schedule.validate()
    return cfg, data, schedule


def train(cfg: TrainConfig, *, evaluate: bool = True, force: bool = False, progress: bool = True,
          log_every: int = 20, checkpoint_every: int = CHECKPOINT_EVERY, stop_after: int = 0) -> dict | None:
    """Train (or re-use, or resume) the run `cfg` names and return its summary (None on data-parallel ranks > 0).

    Every `checkpoint_every` steps the whole training state is written; calling again with the same config
    resumes from it and ends exactly where an uninterrupted run ends (bitwise, on the CPU). `stop_after`
    > 0 trains only the first steps of the run, on its full schedule, and returns {"stopped_at": step}
    with no summary (the replay check compares those steps' loss curve)."""
    if checkpoint_every < 0:
        raise UserError(f"checkpoint_every must be >= 0 (0 = never), got {checkpoint_every}")
    if stop_after < 0:
        raise UserError(f"stop_after must be >= 0 (0 = train every step), got {stop_after}")
    cfg, data, schedule = prepare(cfg)
    device = pick_device()
    rank, world = init_distributed(device)
    if cfg.sync_bn and world > 1 and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); drop it on CPU")
    if cfg.batch_size % world:
        raise UserError(f"batch size {cfg.batch_size} is not divisible by the {world} data-parallel processes")
    # Results depend on how the batch is split over processes (BN statistics, augmentation streams).
    run = Run(cfg.to_dict() if world == 1 else dict(cfg.to_dict(), data_parallel_processes=world))
    model = to_device_layout(build_model(cfg, data.channels), device)  # may refuse the config: before any write
    with run.lock(log=_log) if rank == 0 else contextlib.nullcontext():
        if _from_rank0(run.finished() and not force, world):
            return _reuse(run, cfg, data, device, evaluate) if rank == 0 else None
        return _train_steps(cfg, run, model, data, schedule, device, rank, world,
                            evaluate=evaluate, force=force, progress=progress, log_every=log_every,
                            checkpoint_every=checkpoint_every, stop_after=stop_after)


def _reuse(run: Run, cfg: TrainConfig, data, device, evaluate: bool) -> dict:
    summary = run.summary()
    if evaluate and "knn_acc" not in summary:
        _log(f"run {run.id}: trained earlier without evaluation; evaluating its checkpoint")
        model = build_model(cfg, data.channels)
        model.load_state_dict(torch.load(run.checkpoint_path, map_location="cpu", weights_only=True))
        summary.update(evaluate_backbone(to_device_layout(model, device), cfg, data, device))
        run.write_summary(summary)  # the training provenance stays as it was
    else:
        _log(f"run {run.id}: re-using the stored result (pass --force to train again)")
    return summary


def _train_steps(cfg, run, method, data, schedule, device, rank, world, *, evaluate, force, progress, log_every,
                 checkpoint_every, stop_after) -> dict | None:
    started = time.perf_counter()
    optimizer = build_optimizer(method, cfg)
    dtype = autocast_dtype(cfg.precision, device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1000 * rank)
    epoch_losses = collections.deque(maxlen=schedule.steps_per_epoch)  # the summary's loss: last-epoch average
    window, start_step, seconds_before = [], 0, 0.0
    monitor = CollapseMonitor(run, data, cfg, device) if cfg.monitor_every and rank == 0 else None
    state = None if force else run.load_checkpoint(log=_log)
    if state is None:
        if rank == 0:
            run.start()
    else:
        start_step = state["step"]
        _log(f"run {run.id}: resuming from step {start_step} of {cfg.steps} ({state['path']})")
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generators"][rank])
        torch.set_rng_state(state["torch_rng"])
        rank_epoch_losses, rank_window = state["losses"][rank]
        epoch_losses.extend(rank_epoch_losses.to(device).unbind())
        window = list(rank_window.to(device).unbind())
        seconds_before = state["train_seconds"]
        if monitor:
            monitor.seconds, monitor.warned = state["monitor_seconds"], state["warned"]
        if rank == 0:
            run.resume_logs(start_step)
    warmup = cfg.warmup_steps + round(cfg.warmup_epochs * schedule.steps_per_epoch)
    model = method
    if world > 1:
        if cfg.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # converts in place: `method` is model
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    local = slice(rank * cfg.batch_size // world, (rank + 1) * cfg.batch_size // world)
    model.train()

    def checkpoint(step: int) -> None:
        if not torch.stack([torch.isfinite(p).all() for p in method.parameters()]).all():
            _diverged(run, step - 1, optimizer, epoch_losses, rank, "the weights are not finite")
        generators = _gather(generator.get_state(), world)
        stack = lambda losses: torch.stack(list(losses)).cpu() if losses else torch.empty(0)
        losses = _gather((stack(epoch_losses), stack(window)), world)
        if rank == 0:
            run.save_checkpoint({
                "step": step, "model": method.state_dict(), "optimizer": optimizer.state_dict(),
                "generators": generators, "torch_rng": torch.get_rng_state(), "losses": losses,
                "train_seconds": seconds_before + time.perf_counter() - train_started,
                "monitor_seconds": monitor.seconds if monitor else 0.0, "warned": bool(monitor and monitor.warned)})

    # On a GPU, checking the loss every step would synchronise every step: there the checks (non-finite
    # loss, stop request) wait for the next log or checkpoint step, and the first bad step is remembered.
    check_every_step = device.type == "cpu"
    first_nonfinite = torch.full((), -1, dtype=torch.long, device=device)
    bar = tqdm(total=cfg.steps, initial=start_step, desc=f"{cfg.method} {cfg.arch}-w{cfg.width} {run.id}",
               disable=not progress or rank > 0, file=sys.stderr, mininterval=2.0, ncols=100)
    train_started = time.perf_counter()
    if monitor and start_step == 0:
        monitor(method, 0)  # the state at initialisation, the reference of every trajectory
    with StopRequests() as stop, bar:
        for step, batch_idx in enumerate(schedule.batches(cfg.seed, start_step), start=start_step):
            set_learning_rates(optimizer, lr_factor(step, cfg.steps, warmup))
            images = data.train_images[torch.from_numpy(batch_idx[local])].to(device, non_blocking=True)
            x1 = augment(images, cfg.augment, cfg.image_size, data.mean, data.std, generator)
            x2 = augment(images, cfg.augment, cfg.image_size, data.mean, data.std, generator)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = model(x1, x2)
            loss = out["loss"].detach()
            first_nonfinite = torch.where((first_nonfinite < 0) & ~torch.isfinite(loss), step, first_nonfinite)
            at_boundary = ((step + 1) % log_every == 0 or step + 1 == cfg.steps
                           or (checkpoint_every and (step + 1) % checkpoint_every == 0))
            stop_signal = 0
            if check_every_step or at_boundary:
                stop_signal, bad_step = _agree([stop.signal, float(first_nonfinite)], world, device)
                if bad_step >= 0:
                    _diverged(run, int(bad_step), optimizer, epoch_losses, rank, "the loss is not finite")
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            method.after_optimizer_step((step + 1) / cfg.steps)
            window.append(loss)
            epoch_losses.append(loss)
            if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
                mean_loss = torch.stack(window).float().mean()
                if world > 1:
                    dist.all_reduce(mean_loss)
                    mean_loss /= world
                loss_value, window = float(mean_loss), []
                pairs_per_s = (step + 1 - start_step) * cfg.batch_size / (time.perf_counter() - train_started)
                if rank == 0:
                    run.log_metrics({"step": step + 1, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"],
                                     "pairs_per_s": pairs_per_s})
                bar.set_postfix(loss=f"{loss_value:.4f}", pairs_s=f"{pairs_per_s:.0f}", refresh=False)
            if monitor and ((step + 1) % cfg.monitor_every == 0 or step + 1 == cfg.steps):
                monitor(method, step + 1)
            bar.update(1)
            if stop_signal:  # at the last step too: evaluation then waits for the re-run
                checkpoint(step + 1)
                name = signal.Signals(int(stop_signal)).name
                raise TrainingStopped(f"run {run.id} stopped by {name} after step {step + 1} of {cfg.steps}; "
                                      f"checkpoint written: run the same command again to resume", 128 + int(stop_signal))
            if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < cfg.steps:
                checkpoint(step + 1)
            if stop_after and step + 1 >= stop_after:
                break
    if stop_after and stop_after < cfg.steps:
        return {"run_id": run.id, "stopped_at": min(stop_after, cfg.steps)}
    train_seconds = seconds_before + time.perf_counter() - train_started
    final_loss = torch.stack(list(epoch_losses)).float().mean() if epoch_losses else torch.tensor(math.nan, device=device)
    if world > 1:  # every rank has finished training; only rank 0 saves and evaluates
        dist.all_reduce(final_loss)
        final_loss /= world
        if rank > 0:
            return None

    save_torch_atomic(run.checkpoint_path, method.state_dict())
    summary = {
        "run_id": run.id, "method": cfg.method, "arch": cfg.arch, "width": cfg.width, "subset": cfg.subset,
        "ordering": cfg.ordering, "seed": cfg.seed, "steps": cfg.steps,
        "loss": float(final_loss),
        "train_seconds": train_seconds,
        "pairs_per_s": cfg.steps * cfg.batch_size / train_seconds if cfg.steps else float("nan"),
        "monitor_seconds": monitor.seconds if monitor else 0.0,
    }
    if evaluate:
        summary.update(evaluate_backbone(method, cfg, data, device))
    # wall time of the whole run: a resumed run adds the training time its checkpoint carried
    run.finish(summary, provenance(cfg.seed, device, seconds_before + time.perf_counter() - started,
                                   str(dtype or torch.float32), world))
    return summary


def _diverged(run: Run, step: int, optimizer, losses, rank: int, what: str) -> None:
    """Stop at the first non-finite step: the run is marked failed (never re-used as a result) and keeps its
    last good checkpoint (checkpoints are only written from finite weights)."""
    lr = optimizer.param_groups[0]["lr"]
    last_finite = next((float(x) for x in reversed(losses) if torch.isfinite(x)), float("nan"))
    kept = run.load_checkpoint(log=lambda msg: None)
    resume = f"its last good checkpoint (step {kept['step']}) is kept" if kept else "no checkpoint was written before it"
    message = (f"run {run.id} diverged at step {step + 1}: {what} (lr {lr:.4g}, last finite loss {last_finite:.4g}); "
               f"{resume}. Marked failed: change the configuration (e.g. a lower --lr)")
    if rank == 0:
        run.mark_failed({"run_id": run.id, "step": step + 1, "lr": lr, "last_finite_loss": last_finite,
                         "checkpoint_step": kept["step"] if kept else None, "message": message})
    raise TrainingStopped(message, 1)
