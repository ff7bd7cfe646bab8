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
from ..errors import UserError
from ..store import git_commit, results_root, write_json_atomic

SCALES = ("smoke", "quick", "paper")


def resolve_parameters(presets: dict, scale: str, **given) -> dict:
    """The scale's preset with every non-None notebook parameter laid over it."""
    if scale not in presets:
        raise UserError(f"unknown scale {scale!r}; valid: {', '.join(presets)}")
    params = dict(presets[scale])
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise UserError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(params))}")
    params.update({k: v for k, v in given.items() if v is not None})
    params["scale"] = scale
    return params


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
