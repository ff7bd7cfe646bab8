"""The one training loop: data -> batched augmentation -> method -> optimizer, then evaluation and the store.

`train_step` is one step (the benchmark times the same function); the loop around it is `_train_steps`,
and everything periodic (logging, the collapse monitor, checkpoints, the divergence check, a stop request)
is a hook that runs every k steps. A checkpoint is `TrainState.state_dict()`.
"""
from __future__ import annotations

import collections
import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm.std import tqdm

from . import data as datasets
from .augment import augment
from .config import TrainConfig
from .errors import TrainingStopped, UserError
from .evaluate import evaluate_features, extract_features
from .hardware import autocast_dtype, pick_device
from .methods import METHODS, Method, build_method
from .metrics import normalised_std
from .models import VITS, build_backbone, to_device_layout
from .monitor import CollapseMonitor
from .optim import build_optimizer, lr_factor, set_learning_rates
from .orderings import Schedule
from .parallel import SingleProcess, data_parallel
from .store import Run, provenance, save_torch_atomic
from .streaming import crop_loader

CHECKPOINT_EVERY = 500  # steps: a quick-scale run (1000 steps, ~2 min) loses at most a minute; a GPU paper run, minutes
TIMING_FIELDS = ("train_seconds", "pairs_per_s", "monitor_seconds", "eval_seconds")  # the summary fields a re-run may change


# ----------------------------------------------------------------------------- the run's parts


def build_model(cfg: TrainConfig, in_chans: int) -> Method:
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.arch, cfg.width, in_chans, cfg.stem, cfg.image_size, cfg.freeze_patch_embed)
    return build_method(cfg.method, backbone, cfg)


def resolved(cfg: TrainConfig, train_size: int) -> TrainConfig:
    """Fill the data-dependent defaults, so the stored config says what actually ran."""
    cfg = METHODS[cfg.method].resolve_config(cfg, train_size)
    if cfg.precision == "auto":  # the run id names what ran: bf16 on one machine is not fp32 on another
        cfg = replace(cfg, precision="bf16" if autocast_dtype("auto", pick_device()) else "fp32")
    if cfg.arch in VITS and cfg.stem != "cifar":
        raise UserError("--stem applies to ResNets only")
    return cfg


def prepare(cfg: TrainConfig) -> tuple[TrainConfig, datasets.ImageData, Schedule]:
    """Every check that needs no training: the config, the data (present, checksums), the batch schedule.
    Chapters call it for all their runs before any of them starts."""
    cfg.validate()
    data = datasets.load(cfg.dataset, cfg.image_size if cfg.stem == "imagenet" else None)
    size = len(data.pretrain_images)
    cfg = resolved(cfg, size)
    pool = datasets.subset_indices(size, cfg.subset, cfg.data_seed)
    schedule = Schedule(pool, size, cfg.batch_size, cfg.steps, cfg.ordering, cfg.chunks, cfg.switch)
    schedule.validate()
    return cfg, data, schedule


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


# ----------------------------------------------------------------------------- state and step


@dataclass
class TrainState:
    """Everything a run carries from one step to the next; `state_dict()` is its checkpoint, and
    `load_state_dict()` of that dict continues bitwise where it was written (on the CPU)."""

    cfg: TrainConfig
    method: Method
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # the augmentations' random stream (one per data-parallel rank)
    data: datasets.ImageData
    device: torch.device
    parallel: SingleProcess  # this process's part in data parallelism (SingleProcess: all of it)
    step: int = 0  # steps done: the position in the batch schedule
    warmup: int = 0
    epoch_losses: collections.deque = field(default_factory=collections.deque)  # the summary's loss: last epoch
    window: list = field(default_factory=list)  # losses since the last log
    seconds_before: float = 0.0  # training time of earlier processes (a resumed run)
    monitor: CollapseMonitor | None = None
    model: torch.nn.Module | None = None  # what the step calls: the method, or its data-parallel wrapper

    def __post_init__(self):
        self.dtype = autocast_dtype(self.cfg.precision, self.device)
        self.model = self.method if self.model is None else self.model
        self.started = time.perf_counter()  # the origin of this process's share of the training time
        # the first non-finite step, kept on the device: reading it every step would synchronise a GPU
        self.first_nonfinite = torch.full((), -1, dtype=torch.long, device=self.device)

    def train_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def note_if_nonfinite(self, loss: torch.Tensor) -> None:
        """Remember the step being trained if its loss is the first that is not finite."""
        self.first_nonfinite = torch.where((self.first_nonfinite < 0) & ~torch.isfinite(loss), self.step,
                                           self.first_nonfinite)

    def record(self, loss: torch.Tensor) -> None:
        """A step's loss, kept for the log and the summary."""
        self.window.append(loss)
        self.epoch_losses.append(loss)

    def state_dict(self) -> dict:
        """Every rank's generator and losses gathered (only rank 0 writes them)."""
        stack = lambda losses: torch.stack(list(losses)).cpu() if losses else torch.empty(0)
        return {"step": self.step, "model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generators": self.parallel.gather(self.generator.get_state()), "torch_rng": torch.get_rng_state(),
                "losses": self.parallel.gather((stack(self.epoch_losses), stack(self.window))),
                "train_seconds": self.train_seconds(),
                **(self.monitor.state_dict() if self.monitor else {"monitor_seconds": 0.0, "warned": False})}

    def load_state_dict(self, state: dict) -> None:
        rank = self.parallel.rank
        self.step = state["step"]
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generators"][rank])
        torch.set_rng_state(state["torch_rng"])
        epoch_losses, window = state["losses"][rank]
        self.epoch_losses.extend(epoch_losses.to(self.device).unbind())
        self.window = list(window.to(self.device).unbind())
        self.seconds_before = state["train_seconds"]
        if self.monitor:
            self.monitor.load_state_dict(state)


def new_state(cfg: TrainConfig, method: Method, data, device, steps_per_epoch: int,
              parallel: SingleProcess = SingleProcess(), monitor: CollapseMonitor | None = None) -> TrainState:
    """The state at step 0: the optimizer, the augmentation stream of this rank, the lr warmup in steps."""
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1000 * parallel.rank)
    return TrainState(cfg, method, build_optimizer(method, cfg), generator, data, device, parallel,
                      warmup=cfg.warmup_steps + round(cfg.warmup_epochs * steps_per_epoch),
                      epoch_losses=collections.deque(maxlen=steps_per_epoch), monitor=monitor)


def two_views(state: TrainState, batch: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's two augmented views: of images in memory (`batch`: their indices), cropped on the device; or
    of a streamed batch (uint8 (B, 2, C, S, S)), already cropped from the full images by the loader."""
    cfg, data = state.cfg, state.data
    if isinstance(batch, np.ndarray):
        images = data.pretrain_images[torch.from_numpy(batch)].to(state.device, non_blocking=True)
        return tuple(augment(images, cfg.augment, cfg.image_size, data.mean, data.std, state.generator)
                     for _ in range(2))
    views = batch.to(state.device, non_blocking=True)
    return tuple(augment(views[:, k], cfg.augment, cfg.image_size, data.mean, data.std, state.generator, cropped=True)
                 for k in range(2))


def step_batches(state: TrainState, schedule: Schedule):
    """What each step from `state.step` trains on, this process's part: image indices for data in memory; for an
    ImageFolder, its views streamed by `streaming.crop_loader`."""
    cfg, local = state.cfg, state.parallel.local(state.cfg.batch_size)
    batches = schedule.batches(cfg.seed, state.step)
    pool = state.data.pretrain_images
    if not isinstance(pool.parts[0], datasets.FolderImages):
        return (batch[local] for batch in batches)
    return crop_loader(pool.parts[0].paths, cfg.image_size, cfg.augment, cfg.seed, batches, state.step, local,
                       pin_memory=state.device.type == "cuda")


def train_step(state: TrainState, batch, on_loss: Callable[[TrainState, torch.Tensor], None] | None = None) -> torch.Tensor:
    """One optimizer step on `batch` (this process's part of the global batch, as `step_batches` gives it): scheduled lr,
    two augmented views, the method's loss, backward, step, the method's after-step hook. `on_loss` sees the
    detached loss before the backward pass (the loop's divergence check: a bad step is never applied).
    Returns the loss."""
    cfg = state.cfg
    set_learning_rates(state.optimizer, lr_factor(state.step, cfg.steps, state.warmup))
    x1, x2 = two_views(state, batch)
    with torch.autocast(state.device.type, dtype=state.dtype, enabled=state.dtype is not None):
        out = state.model(x1, x2)
    if on_loss:
        on_loss(state, out["loss"].detach())
    state.optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    state.optimizer.step()
    state.step += 1
    state.method.after_optimizer_step(state.step / cfg.steps, out)
    return out["loss"].detach()


# ----------------------------------------------------------------------------- periodic work


@dataclass
class Every:
    """`action(state)` after every k-th step (never when k = 0); after the last step always when `last`,
    never otherwise."""

    k: int
    action: Callable[[TrainState], None]
    last: bool = True

    def due(self, step: int, total: int) -> bool:
        return bool(self.k) and (self.last if step == total else step % self.k == 0)

    def __call__(self, state: TrainState) -> None:
        if self.due(state.step, state.cfg.steps):
            self.action(state)


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


def hooks(state: TrainState, run: Run, stop: StopRequests, bar, log_every: int,
          checkpoint_every: int) -> tuple[Callable[[TrainState, torch.Tensor], None], list[Every]]:
    """The loss check before each backward pass, and the periodic work after a step, in order. On a GPU the
    checks (non-finite loss, stop request) wait for the next log or checkpoint step: checking every step
    would synchronise every step."""
    main, every_step = state.parallel.is_main, state.device.type == "cpu"
    flags = {}

    def check_then_record(s: TrainState, loss: torch.Tensor) -> None:
        s.note_if_nonfinite(loss)
        step = s.step + 1
        if every_step or any(hook.due(step, s.cfg.steps) for hook in (log_hook, checkpoint_hook)):
            flags["stop"], bad_step = s.parallel.agree([stop.signal, float(s.first_nonfinite)])
            if bad_step >= 0:
                _diverged(run, int(bad_step), s, "the loss is not finite")
        s.record(loss)

    def log(s: TrainState) -> None:
        loss = float(s.parallel.mean(torch.stack(s.window).float().mean()))
        s.window = []
        pairs_per_s = (s.step - start) * s.cfg.batch_size / (time.perf_counter() - s.started)
        if main:
            run.log_metrics({"step": s.step, "loss": loss, "lr": s.optimizer.param_groups[0]["lr"], "pairs_per_s": pairs_per_s})
        bar.set_postfix(loss=f"{loss:.4f}", pairs_s=f"{pairs_per_s:.0f}", refresh=False)

    def stop_if_asked(s: TrainState) -> None:
        requested = int(flags.pop("stop", 0))  # the signal, as the ranks agreed on it
        if requested:  # at the last step too: evaluation then waits for the re-run
            checkpoint(s)
            raise TrainingStopped(f"run {run.id} stopped by {signal.Signals(requested).name} after step {s.step} of "
                                  f"{s.cfg.steps}; checkpoint written: run the same command again to resume", 128 + requested)

    def checkpoint(s: TrainState) -> None:
        if not torch.stack([torch.isfinite(p).all() for p in s.method.parameters()]).all():
            _diverged(run, s.step - 1, s, "the weights are not finite")
        state_dict = s.state_dict()  # every rank takes part in the gathers
        if main:
            run.save_checkpoint(state_dict)

    start = state.step
    log_hook, checkpoint_hook = Every(log_every, log), Every(checkpoint_every, checkpoint, last=False)
    return check_then_record, [log_hook, Every(state.cfg.monitor_every if state.monitor else 0, lambda s: s.monitor(s.method, s.step)),
                               Every(1, lambda s: bar.update(1)), Every(1, stop_if_asked), checkpoint_hook]


# ----------------------------------------------------------------------------- the run


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
    if log_every < 1:
        raise UserError(f"log_every must be >= 1, got {log_every}")
    cfg, data, schedule = prepare(cfg)
    device = pick_device()
    parallel = data_parallel(device)
    if cfg.sync_bn and parallel.world > 1 and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); drop it on CPU")
    if cfg.batch_size % parallel.world:
        raise UserError(f"batch size {cfg.batch_size} is not divisible by the {parallel.world} data-parallel processes")
    # Results depend on how the batch is split over processes (BN statistics, augmentation streams).
    run = Run(cfg.to_dict() if parallel.world == 1 else dict(cfg.to_dict(), data_parallel_processes=parallel.world))
    model = to_device_layout(build_model(cfg, data.channels), device)  # may refuse the config: before any write
    with run.lock(log=_log) if parallel.is_main else contextlib.nullcontext():
        if parallel.from_main(run.finished() and not force):
            return _reuse(run, cfg, data, device, evaluate) if parallel.is_main else None
        return _train_steps(cfg, run, model, data, schedule, device, parallel, force=force, progress=progress,
                            evaluate=evaluate, log_every=log_every, checkpoint_every=checkpoint_every,
                            stop_after=stop_after)


def _reuse(run: Run, cfg: TrainConfig, data, device, evaluate: bool) -> dict:
    summary = run.summary()
    if evaluate and "knn_acc" not in summary:
        _log(f"run {run.id}: trained earlier without evaluation; evaluating its weights")
        model = build_model(cfg, data.channels)
        model.load_state_dict(run.weights())
        summary.update(evaluate_backbone(to_device_layout(model, device), cfg, data, device))
        run.write_summary(summary)  # the training provenance stays as it was
    else:
        _log(f"run {run.id}: re-using the stored result (pass --force to train again)")
    return summary


def _train_steps(cfg, run, method, data, schedule, device, parallel, *, force, progress, evaluate, log_every,
                 checkpoint_every, stop_after) -> dict | None:
    run_started = time.perf_counter()
    monitor = CollapseMonitor(run, data, cfg, device) if cfg.monitor_every and parallel.is_main else None
    state = new_state(cfg, method, data, device, schedule.steps_per_epoch, parallel, monitor)
    saved = None if force else run.load_checkpoint(log=_log)
    if saved is None:
        if parallel.is_main:
            run.start()
    else:
        _log(f"run {run.id}: resuming from step {saved['step']} of {cfg.steps} ({saved['path']})")
        state.load_state_dict(saved)
        if parallel.is_main:
            run.resume_logs(state.step)
    state.model = parallel.wrap(method, cfg.sync_bn)
    state.model.train()
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"{cfg.method} {cfg.arch}-w{cfg.width} {run.id}",
               disable=not progress or not parallel.is_main, file=sys.stderr, mininterval=2.0, ncols=100)
    state.started = time.perf_counter()  # training starts now (not at set-up)
    if monitor and state.step == 0:
        monitor(method, 0)  # the state at initialisation, the reference of every trajectory
    with StopRequests() as stop, bar:
        before_backward, periodic = hooks(state, run, stop, bar, log_every, checkpoint_every)
        for batch in step_batches(state, schedule):
            train_step(state, batch, on_loss=before_backward)
            for hook in periodic:
                hook(state)
            if stop_after and state.step >= stop_after:
                break
    if stop_after and stop_after < cfg.steps:
        return {"run_id": run.id, "stopped_at": min(stop_after, cfg.steps)}
    train_seconds = state.train_seconds()
    losses = state.epoch_losses
    final_loss = parallel.mean(torch.stack(list(losses)).float().mean() if losses else torch.tensor(math.nan, device=device))
    if not parallel.is_main:  # every rank has finished training; only rank 0 saves and evaluates
        return None

    save_torch_atomic(run.weights_path, method.state_dict())
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
    run.finish(summary, provenance(cfg.seed, device, state.seconds_before + time.perf_counter() - run_started,
                                   str(state.dtype or torch.float32), parallel.world))
    return summary


def _diverged(run: Run, step: int, state: TrainState, what: str) -> None:
    """Stop at the first non-finite step: the run is marked failed (never re-used as a result) and keeps its
    last good checkpoint (checkpoints are only written from finite weights)."""
    lr = state.optimizer.param_groups[0]["lr"]
    last_finite = next((float(x) for x in reversed(state.epoch_losses) if torch.isfinite(x)), float("nan"))
    kept = run.load_checkpoint(log=lambda msg: None)
    resume = f"its last good checkpoint (step {kept['step']}) is kept" if kept else "no checkpoint was written before it"
    message = (f"run {run.id} diverged at step {step + 1}: {what} (lr {lr:.4g}, last finite loss {last_finite:.4g}); "
               f"{resume}. Marked failed: change the configuration (e.g. a lower --lr)")
    if state.parallel.is_main:
        run.mark_failed({"run_id": run.id, "step": step + 1, "lr": lr, "last_finite_loss": last_finite,
                         "checkpoint_step": kept["step"] if kept else None, "message": message})
    raise TrainingStopped(message, 1)
