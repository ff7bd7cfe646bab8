"""Chapter experiments: scale presets, the runs a chapter needs, and its results file.

A notebook calls `resolve_parameters` with its papermill parameters (None = take the scale's
preset), runs the experiment function of its module here, and writes its claims with
`write_chapter_results`. Notebooks stay prose, plots and glue.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import __version__
from ..errors import UserError, matches_type
from ..store import git_commit, results_root, write_json_atomic

SCALES = ("smoke", "quick", "paper")
# The precision every trained run of a chapter uses, by scale, pinned so that a run means the same thing
# on every CPU. fp32 on the CPU: without native bf16 (AVX2-only CPUs) bf16 autocast is several times
# slower than fp32, while on AVX512-BF16 CPUs fp32 costs less than 2x (the performance appendix measures
# both on the machine that builds it). "auto" (bf16 on GPUs) at the paper scale.
PRECISION = {"smoke": "fp32", "quick": "fp32", "paper": "auto"}


def resolve_parameters(presets: dict, scale: str, **given) -> dict:
    """The scale's preset with every non-None notebook parameter laid over it."""
    if scale not in presets:
        raise UserError(f"unknown scale {scale!r}; valid: {', '.join(presets)}")
    params = dict(presets[scale])
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise UserError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(params))}")
    given = {k: v for k, v in given.items() if v is not None}
    for name, value in given.items():
        _check_type(name, value, params[name])
    params.update(given)
    params["scale"] = scale
    return params


def _check_type(name: str, value, preset) -> None:
    """A parameter has the type of the preset's value (a list: of the type of its items)."""
    if isinstance(preset, list):
        if not isinstance(value, list) or not value:
            raise UserError(f"parameter {name} must be a non-empty list like {preset!r}, got {value!r}")
        if preset and any(not matches_type(v, type(preset[0])) for v in value):
            raise UserError(f"parameter {name}: every item must be {type(preset[0]).__name__}, got {value!r}")
    elif not matches_type(value, type(preset)):
        raise UserError(f"parameter {name} must be {type(preset).__name__} like {preset!r}, got {value!r}")


def check_parameters(chapter: str, scale: str, given: dict) -> None:
    """Validate a chapter's parameters before any of its work starts: types against the preset, then
    the chapter's own `check` (every run's config, its data and batch schedule)."""
    import importlib

    try:
        module = importlib.import_module(f"{__name__}.{chapter}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{chapter}":
            raise
        return  # a chapter of prose only
    params = resolve_parameters(module.PRESETS, scale, **given)
    if hasattr(module, "check"):
        module.check(params)


def cached_json(path: Path, compute):
    """Load `path` if a previous call stored it, else compute, store atomically and return."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        value = compute()
        write_json_atomic(path, value)
        return value


def write_chapter_results(chapter: str, params: dict, claims: list[dict], runs: list[str], started: float) -> Path:
    """`results/<scale>/<chapter>.json`: the claims with verdicts, the parameters and provenance."""
    path = results_root() / params["scale"] / f"{chapter}.json"
    write_json_atomic(path, {
        "chapter": chapter,
        "scale": params["scale"],
        "parameters": params,
        "claims": claims,
        "provenance": {
            "git_commit": git_commit(),
            "package_version": __version__,
            "run_ids": runs,
            "wall_seconds": time.time() - started,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    })
    return path
