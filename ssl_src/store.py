"""The run store: `results/<run_id>/` per training run, identified by a hash of its whole configuration.

A run is finished exactly when `summary.json` exists; every JSON file is written atomically
(temporary file, fsync, rename), so a killed run never leaves a directory that looks finished.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

from . import __version__

REPO_ROOT = Path(__file__).resolve().parent.parent


def results_root() -> Path:
    return Path(os.environ.get("SSL_RESULTS", "results")).expanduser()


def run_id(config: dict) -> str:
    """12 hex digits of sha256 over the canonical JSON of the config and the package version."""
    canonical = json.dumps({"config": config, "version": __version__}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


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


class Run:
    """One run directory: config.json, metrics.jsonl (per-step), provenance.json, model.pt, summary.json."""

    def __init__(self, config: dict, root: Path | None = None):
        self.config = config
        self.id = run_id(config)
        self.dir = (root or results_root()) / self.id

    @property
    def summary_path(self) -> Path:
        return self.dir / "summary.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "model.pt"

    def finished(self) -> bool:
        try:
            json.loads(self.summary_path.read_text())
            return True
        except (OSError, ValueError):
            return False

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text())

    def start(self) -> None:
        """Begin (or begin again) a run: stale per-step metrics and summary are removed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.summary_path.unlink(missing_ok=True)
        for stale in ("metrics.jsonl", "monitor.jsonl"):
            (self.dir / stale).unlink(missing_ok=True)
        write_json_atomic(self.dir / "config.json", {"run_id": self.id, "version": __version__, "config": self.config})

    def _append(self, name: str, record: dict) -> None:
        with open(self.dir / name, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _records(self, name: str) -> list[dict]:
        path = self.dir / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def log_metrics(self, record: dict) -> None:
        """Per-step training metrics (loss, lr, throughput)."""
        self._append("metrics.jsonl", record)

    def log_monitor(self, record: dict) -> None:
        """Live collapse metrics of the probe set during training."""
        self._append("monitor.jsonl", record)

    def monitor(self) -> list[dict]:
        return self._records("monitor.jsonl")

    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.summary_path, summary)

    def finish(self, summary: dict, provenance: dict) -> None:
        write_json_atomic(self.dir / "provenance.json", provenance)
        self.write_summary(summary)


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def provenance(seed: int, device: torch.device, wall_seconds: float, precision: str, world_size: int = 1) -> dict:
    return {
        "git_commit": git_commit(),
        "package_version": __version__,
        "seed": seed,
        "torch_version": torch.__version__,
        "device": device.type,
        "hardware": hardware_description(device),
        "precision": precision,
        "wall_seconds": wall_seconds,
        "data_parallel_processes": world_size,
        "python": platform.python_version(),
    }
