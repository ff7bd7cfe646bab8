"""`python -m ssl_src diagnose PATH`: the collapse report of a representation, for models trained here or elsewhere.

PATH is a run directory of the store (its stored evaluation, or its weights when it has not finished), a
weights file (`model.pt`) or training checkpoint (`checkpoint.pt`) of a supported method beside its run's
`config.json`, or an N x d feature matrix (`.npy`, or `.pt` holding one tensor): N samples, d dimensions.
"""
from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .metrics import collapse_metrics

# The plain-words reading. A representation whose normalised outputs barely spread (their std under 1 % of the
# 1/sqrt(d) of zero-mean outputs spread evenly over the sphere, SimSiam's collapse signal) or whose spectrum holds
# little more than one direction has collapsed completely; one whose effective rank uses under a quarter of the
# dimensions it could use has collapsed partially (dimensional collapse: on Fashion-MNIST the book's random-init
# nets read 0.06-0.35 and its trained ones 0.17-0.68). Features after a ReLU (a ResNet's pooled output) are not
# zero-mean and spread less: the book's random-init ResNets read 0.05-0.2 x sqrt(d), its trained ones about 0.47,
# and a random-init ResNet-18 at width 2 whose every image lands on one point 0.003.
COMPLETE_SPREAD = 0.01  # normalised std * sqrt(d)
COMPLETE_RANK = 1.5  # effective rank
PARTIAL_RANK_FRACTION = 0.25  # effective rank / min(N - 1, d)
LEADING = 5  # singular values printed


def reading(report: dict) -> str:
    """healthy, partial collapse or complete collapse, by the thresholds above."""
    spread = report["normalised_std"] * math.sqrt(report["dim"])
    if spread < COMPLETE_SPREAD or report["effective_rank"] < COMPLETE_RANK:
        return "complete collapse"
    if report["effective_rank_fraction"] < PARTIAL_RANK_FRACTION:
        return "partial collapse"
    return "healthy"


def thresholds() -> str:
    return (f"complete collapse: normalised std x sqrt(d) < {COMPLETE_SPREAD} or effective rank < {COMPLETE_RANK}; "
            f"partial collapse: effective rank / min(N - 1, d) < {PARTIAL_RANK_FRACTION}; healthy otherwise")


def matrix_report(features: torch.Tensor, source: str) -> dict:
    """The report of an N x d matrix; a matrix the metrics cannot read is a UserError."""
    if features.ndim != 2:
        raise UserError(f"{source}: expected an N x d feature matrix, got shape {tuple(features.shape)}")
    if features.shape[0] < 2 or features.shape[1] < 1:
        raise UserError(f"{source}: need at least 2 samples and 1 dimension, got shape {tuple(features.shape)}")
    if features.is_complex() or features.dtype == torch.bool:
        raise UserError(f"{source}: expected numbers, got dtype {features.dtype}")
    if not torch.isfinite(features.double()).all():
        raise UserError(f"{source}: the matrix holds NaN or infinite values")
    return dict(collapse_metrics(features), samples=int(features.shape[0]), source=source)


def _matrix_file(path: Path) -> torch.Tensor | dict:
    """The tensor in a .npy or .pt file, or the dict a .pt file holds (weights or a checkpoint)."""
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            if array.dtype.kind not in "fiu":
                raise UserError(f"{path}: expected numbers, got dtype {array.dtype}")
            return torch.from_numpy(array.astype(array.dtype.newbyteorder("=")))  # torch reads native byte order only
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        kind = "NumPy array" if path.suffix == ".npy" else "PyTorch"
        raise UserError(f"{path}: not a {kind} file that can be read without unpickling code ({type(exc).__name__})") from None
    if isinstance(loaded, (torch.Tensor, dict)):
        return loaded
    raise UserError(f"{path}: holds a {type(loaded).__name__}, not a feature matrix, weights or a checkpoint")


def model_report(stored_config: dict, state: dict, source: str, images: int | None) -> dict:
    """The report of a method's backbone on `images` un-augmented training images of its data set (None: those
    its run's evaluation used, `eval_train_images`, 0 = every one), so it agrees with the run's stored evaluation."""
    from . import data as datasets
    from .evaluate import extract_features
    from .models import trained_backbone

    try:
        backbone = trained_backbone(stored_config, state)
    except (KeyError, RuntimeError) as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[:3])
        raise UserError(f"{source}: the weights do not fit the run's config ({detail[:300]})") from None
    data = datasets.load(stored_config["dataset"], stored_config["image_size"] if stored_config["stem"] == "imagenet" else None)
    data = datasets.evaluation_view(data, stored_config.get("eval_train_images", 0) if images is None else images)
    features = extract_features(backbone, data.train_images, data, stored_config["image_size"], torch.device("cpu"))
    report = matrix_report(features, source)
    report.update(arch=stored_config["arch"], width=stored_config["width"], method=stored_config["method"],
                  dataset=stored_config["dataset"])
    return report


def _run_config(run_dir: Path, config_file: Path | None) -> dict:
    import json

    path = config_file or run_dir / "config.json"
    try:
        stored = json.loads(path.read_text())
        return stored.get("config", stored)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: no readable run config (a model needs the config.json of its run; --config FILE "
                        f"names one) ({type(exc).__name__})") from None


def _weights_report(path: Path, loaded: dict, config_file: Path | None, images: int) -> dict:
    from .store import read_checkpoint

    if "payload" in loaded:
        try:
            loaded = read_checkpoint(path)["model"]
        except (ValueError, RuntimeError, KeyError) as exc:
            raise UserError(f"{path}: an unreadable training checkpoint ({exc})") from None
    if not any(isinstance(k, str) and k.startswith("backbone.") for k in loaded):
        raise UserError(f"{path}: neither a feature matrix nor the weights of a supported method (no backbone.* entries)")
    return model_report(_run_config(path.parent, config_file), loaded, str(path), images)


def diagnose(path: str | Path, config_file: str | Path | None = None, images: int | None = None) -> dict:
    """The collapse report of PATH (see the module's docstring), with its `reading` and the `thresholds` used.
    A finished run's directory reports its stored evaluation, unless `images` asks for another sample (then its
    weights are embedded again)."""
    from .store import StoredRun, WEIGHTS_FILE

    path, config_file = Path(path).resolve(), Path(config_file) if config_file else None
    if images is not None and images < 2:
        raise UserError(f"--images must be at least 2, got {images}")
    if path.is_dir():
        run = StoredRun(path, path.name)
        summary = run.summary() if run.finished() else {}
        if "auc" in summary and images is None and config_file is None:  # evaluated (not a --no-eval run)
            report = {k: summary[k] for k in ("auc", "effective_rank", "effective_rank_fraction", "normalised_std", "dim",
                                              "singular_values", "arch", "width", "method")}
            report["source"] = f"{path} (its stored evaluation)"
        else:  # not finished, not evaluated, or another sample asked for: its weights or its checkpoint
            candidates = [path / WEIGHTS_FILE, path / "checkpoint.pt", path / "checkpoint.prev.pt"]
            found = next((p for p in candidates if p.exists()), None)
            if found is None:
                raise UserError(f"{path}: a directory without a finished run, weights or a checkpoint")
            return diagnose(found, config_file, images)
    elif not path.exists():
        raise UserError(f"{path}: no such file or directory")
    elif path.suffix not in (".npy", ".pt", ".pth"):
        raise UserError(f"{path}: expected a run directory, a .npy or .pt feature matrix, or a .pt model or checkpoint")
    else:
        loaded = _matrix_file(path)
        if isinstance(loaded, torch.Tensor):
            report = matrix_report(loaded, str(path))
        else:
            report = _weights_report(path, loaded, config_file, images)
    report.update(reading=reading(report), thresholds=thresholds(), label=path.name)
    return report


def describe(report: dict) -> str:
    """The report as lines a person reads."""
    sigma = np.asarray(report["singular_values"])
    share = sigma / sigma.sum() if sigma.sum() > 0 else sigma
    what = ", ".join(f"{k} {report[k]}" for k in ("method", "arch", "width", "dataset") if k in report)
    lines = [f"source: {report['source']}" + (f" ({what})" if what else ""),
             f"reading: {report['reading'].upper()}",
             f"  AUC of the cumulative spectrum: {report['auc']:.4f}  (about 0.5 flat, 1 rank one; higher = more collapsed)",
             f"  effective rank: {report['effective_rank']:.2f} of d = {report['dim']}  "
             f"(fraction {report['effective_rank_fraction']:.3f})",
             f"  normalised std: {report['normalised_std']:.4f}  (x sqrt(d) = "
             f"{report['normalised_std'] * math.sqrt(report['dim']):.3f}; 1/sqrt(d) = {1 / math.sqrt(report['dim']):.4f} "
             f"when spread evenly, 0 when collapsed)",
             f"  leading singular values: " + ", ".join(f"{s:.4g} ({100 * p:.1f} %)" for s, p in zip(sigma[:LEADING], share)),
             f"thresholds: {report['thresholds']}"]
    return "\n".join(lines)


def save_plot(report: dict, file: str | Path) -> None:
    """The spectrum in the collapse paper's two views (report.spectrum_figure)."""
    import matplotlib

    matplotlib.use("Agg")
    from .report import spectrum_figure

    fig = spectrum_figure([(report.get("label", "features"), report)], dashed=(),
                          title=f"{report['reading']}: AUC {report['auc']:.3f}, effective rank {report['effective_rank']:.1f} of {report['dim']}")
    try:
        fig.savefig(file, dpi=120)
    except (OSError, ValueError) as exc:
        raise UserError(f"--plot {file}: cannot save the figure ({exc})") from None
