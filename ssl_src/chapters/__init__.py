"""Chapter experiments: scale presets, the runs a chapter needs, and its results file.

A notebook calls `resolve_parameters` with its papermill parameters (None = take the scale's
preset), runs the experiment function of its module here, and writes its claims with
`write_chapter_results`. Notebooks stay prose, plots and glue.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
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
# Points of weighted kNN accuracy by which a trained net must beat its random-init network (and, in the
# search for a scale, the raw pixels) before its features count as learned.
LEARNED_MARGIN = 3.0
# The book's re-train budget on a 2-core CPU (hours), chosen in "Choosing a scale": a chapter's runs, and the
# whole book's without the studies. The regime was chosen under 2 and 8 (one night), with four chapters that
# train nets; all seven of the collapse paper's chapters at 3 seeds at that regime need more, so the budget
# became an afternoon a chapter and two nights the book (the regime, and so every run, unchanged).
REGIME_BUDGET_HOURS = {"chapter": 2.0, "book": 8.0}
CHAPTER_BUDGET_HOURS, BOOK_BUDGET_HOURS = 4.0, 16.0


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
    module = chapter_module(chapter)
    if module is None:
        return  # a chapter of prose only
    params = resolve_parameters(module.PRESETS, scale, **given)
    if hasattr(module, "check"):
        module.check(params)


def chapter_module(chapter: str):
    """The experiment module of a chapter, or None for a chapter of prose only."""
    import importlib

    try:
        return importlib.import_module(f"{__name__}.{chapter}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{chapter}":
            raise
        return None


def chapter_runs(chapter: str, scale: str, given: dict, *, jobs: int | None = None, retrain: bool = False,
                 progress: bool = True) -> list[dict]:
    """Every stored run a chapter uses at a scale: read from the published set, or trained and published
    (`python -m ssl_src runs`: the training of a chapter without executing its notebook)."""
    module = chapter_module(chapter)
    if module is None or not hasattr(module, "configs"):
        raise UserError(f"chapter {chapter} trains no stored runs")
    params = resolve_parameters(module.PRESETS, scale, **given)
    module.check(params)
    stages = module.stages(params) if hasattr(module, "stages") else [module.configs(params)]
    return [summary for stage in staged_summaries(stages, scale, jobs=jobs, retrain=retrain, progress=progress)
            for summary in stage]


def staged_summaries(stages: list[list], scale: str, **sweep) -> list[list[dict]]:
    """Stage by stage, the summaries of runs that read earlier stages' runs (a distilled student its teacher's
    weights): each stage trained after the one before, the weights of the runs read published with them."""
    from ..sweep import run_summaries

    read = {cfg.teacher for stage in stages for cfg in stage if cfg.teacher}
    return [run_summaries(stage, scale, weights_read=read, **sweep) for stage in stages]


def published_json(scale: str, name: str, compute) -> dict:
    """A chapter's measurement that is not a training run (a baseline, a benchmark), published beside the
    runs in `results/<scale>/measurements/` and re-computed on `--retrain`: {"value", "measured_at",
    "machine", "read_from_published"}."""
    from ..hardware import describe
    from ..sweep import retraining

    published = None if retraining() else read_measurement(scale, name)
    if published is not None:
        return published
    stored = {"value": compute(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": describe()}
    write_json_atomic(measurement_path(scale, name), stored)
    return dict(stored, read_from_published=False)


def measurement_path(scale: str, name: str) -> Path:
    return results_root() / scale / "measurements" / f"{name}.json"


def read_measurement(scale: str, name: str) -> dict | None:
    """A published measurement (`published_json`, or `bench --device`'s), None where there is none."""
    try:  # JSON has no NaN: the writer stored a missing measurement as null (store.json_safe)
        return dict(json.loads(measurement_path(scale, name).read_text(), object_hook=_null_is_nan),
                    read_from_published=True)
    except (OSError, ValueError):
        return None


def _null_is_nan(record: dict) -> dict:
    return {k: math.nan if v is None else v for k, v in record.items()}


def parameters_key(p: dict) -> str:
    """8 hex digits naming a chapter's parameters (the file name of its published measurements)."""
    import hashlib

    canonical = json.dumps({k: v for k, v in p.items() if k != "scale"}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def raw_pixels(p: dict) -> dict:
    """kNN / linear probe / spectrum of the raw pixels at the chapter's resolution and evaluation size: the
    baseline every trained chapter shows, with the random-init network."""
    from .. import data as datasets
    from ..evaluate import raw_pixel_baseline

    def compute():
        data = datasets.evaluation_view(datasets.load(p["dataset"]), p["eval_train_images"], p["eval_test_images"])
        return raw_pixel_baseline(data, p["image_size"])

    key = f"{p['dataset']}-{p['image_size']}px-{p['eval_train_images']}-{p['eval_test_images']}"
    return published_json(p["scale"], f"raw_pixels-{key}", compute)["value"]


def learned_features(net: str, baseline: str, against: str, points_above: "Sequence[float]") -> dict:
    """The learned-features condition as a claim of this book (`beats_<baseline>`): `net` beats `against`'s
    weighted kNN by more than LEARNED_MARGIN points; `points_above` holds the per-seed differences in points."""
    from ..claims import claim

    return claim(f"beats_{baseline}", f"Learned features: {net} beats the weighted kNN of {against} by more than "
                 f"{LEARNED_MARGIN:g} points.", "(a condition of this book, not a claim of the paper)",
                 [d - LEARNED_MARGIN for d in points_above], +1,
                 f"weighted kNN - {baseline.replace('_', ' ')} - {LEARNED_MARGIN:g} points, by seed")


def beats_random_init(net: str, points_above: "Sequence[float]") -> dict:
    """`learned_features` against the same network at initialisation."""
    return learned_features(net, "random_init", "its random-init network", points_above)


def write_chapter_results(chapter: str, params: dict, claims: list[dict], runs: list[str], started: float) -> Path:
    """`results/<scale>/chapters/<chapter>.json`: the claims with verdicts, the parameters and provenance
    (written at every render, so not part of the published set)."""
    path = results_root() / params["scale"] / "chapters" / f"{chapter}.json"
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


def chapter_results(scale: str, chapter: str) -> dict | None:
    """What `write_chapter_results` wrote at the chapter's last render at `scale`; None if it has not rendered."""
    path = results_root() / scale / "chapters" / f"{chapter}.json"
    return json.loads(path.read_text()) if path.exists() else None


def monitor_curves(runs: "pd.DataFrame", scale: str, by: Sequence[str]) -> "pd.DataFrame":
    """The live monitor of every run in `runs` (one row per run, with a `run_id`), one row per monitored step:
    the run's `by` columns, the step, the AUC, the effective rank as a fraction of d and the monitor's weighted
    kNN (k = 20) on its small probe set (collapse over training, the paper's Fig. 14)."""
    import numpy as np
    import pandas as pd

    from ..store import find_run

    rows = []
    for run in runs.to_dict("records"):
        for record in find_run(run["run_id"], scale).monitor():
            rows.append({**{k: run[k] for k in by}, "step": record["step"], "auc": record["auc"],
                         "effective_rank_fraction": record["effective_rank_fraction"],
                         "monitor_knn": record.get("weighted_knn20_acc", np.nan)})
    return pd.DataFrame(rows, columns=[*by, "step", "auc", "effective_rank_fraction", "monitor_knn"])


def chapter_ids(name: str, scale: str) -> list[str] | None:
    """The run ids chapter `name` uses at its preset for `scale`, each once (None: it trains no stored runs)."""
    from ..store import Run
    from ..sweep import resolve

    module = chapter_module(name)
    if module is None or not hasattr(module, "configs"):
        return None
    cfgs = resolve(module.configs(resolve_parameters(module.PRESETS, scale)))
    return list(dict.fromkeys(Run(cfg.to_dict()).id for cfg in cfgs))


def chapter_run_ids(scale: str) -> dict[str, list[str]]:
    """The run ids every training chapter uses at its preset for `scale`, in `_toc.yml` order."""
    from ..book import chapter_names

    return {name: ids for name, ids in ((name, chapter_ids(name, scale)) for name in chapter_names()) if ids is not None}


def published_orphans(scale: str) -> list[str]:
    """Published runs of `scale` that no chapter uses at its preset any more (left by a changed preset)."""
    from ..store import published_run_ids

    used = {run_id for ids in chapter_run_ids(scale).values() for run_id in ids}
    return [run_id for run_id in published_run_ids(scale) if run_id not in used]


def core_hours(runs: list) -> float:
    """CPU time of stored runs from their provenance: wall time x the threads each used, in hours (a run is
    counted once however many probes or chapters share it)."""
    unique = {run.id: run for run in runs}.values()
    return sum(p["wall_seconds"] * p.get("machine", {}).get("torch_threads", 1)
               for p in (run.provenance() for run in unique)) / 3600


def retrain_budget(scale: str, cores: int = 2) -> "pd.DataFrame":
    """Per training chapter at its preset: its runs, how many an earlier chapter (in `_toc.yml` order) already
    trains, how many are published, and the time a re-train of the chapter alone takes, estimated from the
    published runs' wall times (core-hours / `cores`: the runs filling the cores, as the sweep runs them); then
    the whole book, each run counted once, without the runs only a study (`STUDY = True`) trains; each against
    its budget (none for a study, nor for a chapter that adds no run to the book's: it reads earlier chapters'
    runs, whose cost their own rows carry)."""
    import pandas as pd

    from ..store import published_run

    rows, book = [], {}  # every run id of the book, in first use, with its published run (None if not yet)
    used = chapter_run_ids(scale)
    for name, ids in used.items():
        published = {i: run for i, run in ((i, published_run(i, scale)) for i in ids) if run.finished()}
        hours = core_hours(list(published.values()))
        study = getattr(chapter_module(name), "STUDY", False)
        earlier = sum(i in book for i in ids)
        rows.append({"chapter": name, "runs": len(ids), "of earlier chapters": earlier,
                     "published": len(published), "core_hours": hours, f"hours_on_{cores}_cores": hours / cores,
                     "budget (h)": math.nan if study or earlier == len(ids) else CHAPTER_BUDGET_HOURS})
        if not study:
            book.update({i: published.get(i) for i in ids if i not in book})
    published = [run for run in book.values() if run is not None]
    hours = core_hours(published)
    rows.append({"chapter": "whole book (without studies)", "runs": len(book), "of earlier chapters": 0,
                 "published": len(published), "core_hours": hours, f"hours_on_{cores}_cores": hours / cores,
                 "budget (h)": BOOK_BUDGET_HOURS})
    table = pd.DataFrame(rows).set_index("chapter")
    return table.assign(over_budget=table[f"hours_on_{cores}_cores"] > table["budget (h)"])
