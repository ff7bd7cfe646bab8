"""The run store: `results/<run_id>/` per training run, identified by a hash of its whole configuration.

Beside it, each scale has a *published* set, `results/<scale>/runs/<run_id>/`: the small files of every
run a chapter used (config, summary, provenance, loss and monitor curves; never checkpoints or models).
`results/quick/` is committed, so the book re-renders from it without training; `find_run` reads a run
from either place.

A run directory is finished (a valid `summary.json` naming the run) or resumable (`checkpoint.pt`, with
the one before it kept as `checkpoint.prev.pt`). Every file is written atomically (temporary file,
fsync, rename), so a killed run never leaves a directory that looks finished; a run that diverged
has `failed.json` instead of a summary. One process at a time works in a run directory (`Run.lock`).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import pickle
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from . import __version__
from .errors import UserError
from .hardware import describe

REPO_ROOT = Path(__file__).resolve().parent.parent


def results_root() -> Path:
    return Path(os.environ.get("SSL_RESULTS", "results")).expanduser()


# The version of what a run computes. Bump it only when a change alters a run's numbers (its losses, its
# evaluation, its summary's fields): a refactor that keeps the numbers keeps every published run valid,
# and the replay check (`python -m ssl_src replay`) is what catches a change that should have bumped it.
# 2: features for evaluation and the monitor always in fp32; the weighted kNN (Wu et al.) in the summary.
TRAINING_SEMANTICS = 2
# Versions of what one part of training computes, hashed only into the ids of the runs that use it, so a
# change to it re-trains those runs and keeps every other published run valid. Chunked orderings (single,
# cumulative, hybrid): 2 = each chunk an equal share of the steps (the chunk count set apart from the
# epochs), the hybrid switch on its step (single and cumulative with chunks = 0, one per epoch, compute what
# they did under 1, but share the new version: one rule per ordering).
PART_SEMANTICS = {"chunked_orderings": 2}
CHUNKED_ORDERINGS = ("single", "cumulative", "hybrid")
PUBLISHED_FILES = ("config.json", "metrics.jsonl", "monitor.jsonl", "provenance.json", "summary.json")  # summary last
WEIGHTS_FILE = "model.pt"  # published only for a run whose weights another run reads (a distillation teacher)


def semantics(config: dict) -> int | dict:
    """The versions of what a run of `config` computes: TRAINING_SEMANTICS, with the version of each part
    (PART_SEMANTICS) the run uses."""
    if config.get("ordering") in CHUNKED_ORDERINGS:
        return {"training": TRAINING_SEMANTICS, "chunked_orderings": PART_SEMANTICS["chunked_orderings"]}
    return TRAINING_SEMANTICS


def run_id(config: dict) -> str:
    """12 hex digits of sha256 over the canonical JSON of the config and its semantics versions (the package
    version goes into provenance, not into the id)."""
    canonical = json.dumps({"config": config, "semantics": semantics(config)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def published_root(scale: str) -> Path:
    """The published runs of a scale (committed for `quick`)."""
    return results_root() / scale / "runs"


def json_safe(value):
    """JSON has no NaN: a measurement that does not exist is null."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(json_safe(obj), f, indent=1, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive(lock_path: Path, busy_message: str, log=print):
    """An advisory lock (flock) held for the block; if another process holds it, say so once and wait."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(busy_message)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class StoredRun:
    """A run directory read through the store: its summary, config, provenance and curves."""

    def __init__(self, run_dir: Path, run_id_: str):
        self.dir, self.id = run_dir, run_id_

    @property
    def summary_path(self) -> Path:
        return self.dir / "summary.json"

    def finished(self) -> bool:
        try:
            return json.loads(self.summary_path.read_text()).get("run_id") == self.id
        except (OSError, ValueError, AttributeError):
            return False

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text())

    def stored_config(self) -> dict:
        return json.loads((self.dir / "config.json").read_text())["config"]

    @property
    def weights_path(self) -> Path:
        """The trained model's final weights (the working store keeps them; a published set only for a run
        another run reads, see `publish`)."""
        return self.dir / WEIGHTS_FILE

    def weights(self) -> dict:
        """The final state dict (what evaluation and distillation teachers read)."""
        return torch.load(self.weights_path, map_location="cpu", weights_only=True)

    def provenance(self) -> dict:
        return json.loads((self.dir / "provenance.json").read_text())

    def _records(self, name: str) -> list[dict]:
        path = self.dir / name
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:  # the last line of a killed run may be torn
                continue
        return records

    def metrics(self) -> list[dict]:
        """The loss curve: one record per logged step."""
        return self._records("metrics.jsonl")

    def monitor(self) -> list[dict]:
        """The live collapse metrics: one record per monitored step."""
        return self._records("monitor.jsonl")


def published_run(run_id_: str, scale: str) -> StoredRun:
    """A run of the scale's published set (finished or not: `finished()` says)."""
    return StoredRun(published_root(scale) / run_id_, run_id_)


def published_run_ids(scale: str) -> list[str]:
    """Every run directory in the scale's published set."""
    root = published_root(scale)
    return sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def find_run(run_id_: str, scale: str | None = None) -> StoredRun:
    """A finished run, from the working store or a published set (that of `scale` first)."""
    from .chapters import SCALES

    scales = [scale] if scale else []
    places = [results_root() / run_id_] + [published_root(s) / run_id_ for s in scales + [s for s in SCALES if s != scale]]
    for place in places:
        run = StoredRun(place, run_id_)
        if run.finished():
            return run
    raise UserError(f"run {run_id_} is neither in the run store {results_root()} nor in a published set")


def publish(run: StoredRun, scale: str, weights: bool = False) -> StoredRun:
    """Copy a finished run's small files into the scale's published set, and its weights where another run
    reads them (`weights`: a teacher, so its students train on a fresh clone; a run published with its weights
    is always published with them, so a re-trained teacher never keeps its old weights)."""
    destination = published_root(scale) / run.id
    weights = weights or (destination / WEIGHTS_FILE).exists()
    return copy_small_files(run, destination, (WEIGHTS_FILE,) if weights else ())


def copy_small_files(run: StoredRun, destination: Path, extra: tuple[str, ...] = ()) -> StoredRun:
    """A finished run's small files (PUBLISHED_FILES, and `extra` ones) copied into `destination`, atomically and
    summary last, so a half-copied run never looks finished."""
    copy = StoredRun(destination, run.id)
    if copy.dir.resolve() == run.dir.resolve():
        return copy
    copy.summary_path.unlink(missing_ok=True)
    for name in (*extra, *PUBLISHED_FILES):
        source = run.dir / name
        if source.exists():
            copy.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=copy.dir, prefix=f".{name}.", suffix=".tmp")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, copy.dir / name)
        else:
            (copy.dir / name).unlink(missing_ok=True)
    return copy


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint (`Run.save_checkpoint`) read and checked against its sha256; ValueError (or what
    torch.load raises) when it is none."""
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict) or not isinstance(stored.get("payload"), torch.Tensor) or "sha256" not in stored:
        raise ValueError("not a training checkpoint")
    payload = stored["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != stored["sha256"]:
        raise ValueError("its sha256 does not match its content")
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise ValueError("not a training checkpoint")
    return state


class Run(StoredRun):
    """One run directory of the working store: config.json, metrics.jsonl (per-step), monitor.jsonl,
    provenance.json, model.pt, summary.json; while training, checkpoint.pt and checkpoint.prev.pt."""

    def __init__(self, config: dict, root: Path | None = None):
        self.config = config
        identity = run_id(config)
        super().__init__((root or results_root()) / identity, identity)

    @property
    def resume_paths(self) -> tuple[Path, Path]:
        """The newest training checkpoint and the one before it."""
        return self.dir / "checkpoint.pt", self.dir / "checkpoint.prev.pt"

    @property
    def failed_path(self) -> Path:
        return self.dir / "failed.json"

    def lock(self, log=print):
        """Exclusive use of the run directory: a second process (another book build) waits, then finds
        the run finished and re-uses it."""
        return exclusive(self.dir / ".lock", f"run {self.id}: another process is training it; waiting", log)

    def start(self) -> None:
        """Begin (or begin again) a run from scratch: summary, logs, checkpoints and failure mark go."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in ("summary.json", "metrics.jsonl", "monitor.jsonl", "failed.json", *(p.name for p in self.resume_paths)):
            (self.dir / stale).unlink(missing_ok=True)
        write_json_atomic(self.dir / "config.json", {"run_id": self.id, "semantics": semantics(self.config), "config": self.config})

    def save_checkpoint(self, state: dict) -> None:
        """The newest checkpoint; the previous one is kept, in case this one is ever found unreadable.

        The state is stored serialised beside its sha256, so a flipped byte is caught, not just a truncation."""
        buffer = io.BytesIO()
        torch.save(dict(state, run_id=self.id), buffer)
        payload = buffer.getvalue()
        newest, previous = self.resume_paths
        if newest.exists():
            os.replace(newest, previous)
        save_torch_atomic(newest, {"sha256": hashlib.sha256(payload).hexdigest(),
                                   "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)})

    def load_checkpoint(self, log=print) -> dict | None:
        """The newest readable checkpoint of this run, or None; an unreadable one is reported in one line."""
        for path in self.resume_paths:
            if not path.exists():
                continue
            try:
                state = read_checkpoint(path)
                if state.get("run_id") != self.id:
                    raise ValueError("not a checkpoint of this run")
                return state | {"path": str(path)}
            except (OSError, RuntimeError, EOFError, ValueError, KeyError, TypeError, AttributeError, pickle.UnpicklingError,
                    zipfile.BadZipFile) as exc:
                log(f"run {self.id}: checkpoint {path.name} is unreadable ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else 'truncated'}); trying an older one")
        return None

    def resume_logs(self, step: int) -> None:
        """Drop log records past a checkpoint's step (and a line torn by a kill), so the logs continue it."""
        for name in ("metrics.jsonl", "monitor.jsonl"):
            kept = [r for r in self._records(name) if r["step"] <= step]
            path = self.dir / name
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
            os.replace(tmp, path)

    def _append(self, name: str, record: dict) -> None:
        with open(self.dir / name, "a") as f:
            f.write(json.dumps(json_safe(record)) + "\n")

    def log_metrics(self, record: dict) -> None:
        """Per-step training metrics (loss, lr, throughput)."""
        self._append("metrics.jsonl", record)

    def log_monitor(self, record: dict) -> None:
        """Live collapse metrics of the probe set during training."""
        self._append("monitor.jsonl", record)

    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.summary_path, summary)

    def mark_failed(self, reason: dict) -> None:
        write_json_atomic(self.failed_path, reason)

    def finish(self, summary: dict, provenance: dict) -> None:
        write_json_atomic(self.dir / "provenance.json", provenance)
        self.write_summary(summary)
        for path in (*self.resume_paths, self.failed_path):  # the final model.pt is what a finished run keeps
            path.unlink(missing_ok=True)


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(seed: int, device: torch.device, wall_seconds: float, precision: str, world_size: int = 1) -> dict:
    machine = describe(device)  # instruction sets, oneDNN's ISA cap, threads
    return {
        "git_commit": git_commit(),
        "package_version": __version__,
        "training_semantics": TRAINING_SEMANTICS,
        "seed": seed,
        "torch_version": torch.__version__,
        "device": device.type,
        "hardware": machine["accelerator"] if device.type == "cuda" else f"{machine['cpu']}, {machine['torch_threads']} threads",
        "precision": precision,
        "machine": machine,
        "wall_seconds": wall_seconds,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data_parallel_processes": world_size,
        "python": platform.python_version(),
    }
