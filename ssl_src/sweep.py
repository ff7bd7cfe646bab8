"""A chapter's runs: read from the scale's published set, or trained here (several at once) and published.

The book's chapters are sweeps of many small independent runs. Narrow nets use a small part of a CPU, so
`jobs` runs train at once, each in its own process with its share of the cores (the run store's locks
make two processes asking for the same run safe). Whether a run is read or trained is decided per run:
published and not `retrain` -> read; else train (re-using or resuming the working store) and publish.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context

import torch
from tqdm.std import tqdm

from .errors import TrainingStopped, UserError
from .hardware import pick_device
from .config import TrainConfig
from .store import Run, publish, published_run
from .train import prepare, train

# Runs trained at once by default, per scale, on a CPU (a GPU trains one run at a time). Measured with
# `python -m ssl_src bench` (sweep throughput): on a 2-core AVX2 CPU two one-thread runs of the quick
# preset's net train 1.4x the pairs per second of one two-thread run; smoke runs last seconds, less than
# a worker process takes to start.
CPU_JOBS = {"smoke": 1, "quick": 0, "paper": 1}  # 0 = one run per core


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_jobs(scale: str) -> int:
    if pick_device().type != "cpu":
        return 1
    return CPU_JOBS[scale] or cpu_cores()


def jobs_from_environment(scale: str) -> int:
    """`--jobs` of `book` / `chapter` reaches the notebook's kernel as SSL_JOBS (0 or unset = the default)."""
    value = os.environ.get("SSL_JOBS", "0")
    if not value.isdigit():
        raise UserError(f"SSL_JOBS must be a whole number of runs, got {value!r}")
    return int(value) or default_jobs(scale)


def retraining() -> bool:
    """`--retrain` of `book` / `chapter` (or RETRAIN=1 of `make book`) reaches the kernel as SSL_RETRAIN=1."""
    return os.environ.get("SSL_RETRAIN", "") not in ("", "0")


@dataclass
class RunSource:
    """Where a chapter's runs come from: read from the published set, or trained (or re-used) here."""

    published: list[str]
    trained_here: list[str]

    def describe(self, scale: str, machines: list[str], dates: list[str]) -> str:
        if not self.published:
            return f"Every number on this page was re-computed here, from {len(self.trained_here)} run(s) trained on this machine."
        where = "; ".join(sorted(set(machines))) or "unknown hardware"
        when = f"between {min(dates)} and {max(dates)}" if dates else "at an unrecorded time"
        text = (f"{len(self.published)} run(s) on this page were read from the published results "
                f"(`results/{scale}/runs/`), trained on {where} {when}")
        if self.trained_here:
            text += f"; {len(self.trained_here)} were trained here"
        return text + ". Re-compute them: add `--retrain` to the chapter's command (*Run this chapter yourself*), or `make book RETRAIN=1`."


def resolve(cfgs: list[TrainConfig]) -> list[TrainConfig]:
    """Each config with its data-dependent defaults filled in (what its run id hashes); checks them all."""
    return [prepare(cfg)[0] for cfg in cfgs]


def source_of(cfgs: list[TrainConfig], scale: str, retrain: bool | None = None) -> RunSource:
    """Which of the runs would be read from the published set, before any is trained."""
    retrain = retraining() if retrain is None else retrain
    published, here = [], []
    for cfg in resolve(cfgs):
        run_id = Run(cfg.to_dict()).id
        (here if retrain or not published_run(run_id, scale).finished() else published).append(run_id)
    return RunSource(published, here)


def describe_source(cfgs: list[TrainConfig], scale: str) -> str:
    """The line at the top of a chapter: re-computed here, or read from published runs (where, when)."""
    source = source_of(cfgs, scale)
    runs = [published_run(r, scale) for r in source.published]
    provenances = [run.provenance() for run in runs]
    return source.describe(scale, [p["hardware"] for p in provenances],
                           [p.get("finished_at", "")[:10] for p in provenances if p.get("finished_at")])


def in_notebook() -> bool:
    """Running in a Jupyter kernel (a chapter executed by papermill), where every update of a progress bar stays
    on the page as a block of its own."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def run_label(cfg: TrainConfig) -> str:
    return f"{cfg.method} {cfg.arch} w{cfg.width} subset {cfg.subset:g} {cfg.ordering} seed {cfg.seed}, {cfg.steps} steps"


def _train_one(cfg: TrainConfig, threads: int, scale: str, weights: bool) -> dict:
    """One run in a worker process: its share of the cores, no progress bar; published when done."""
    torch.set_num_threads(threads)
    summary = train(cfg, progress=False)
    publish(Run(cfg.to_dict()), scale, weights)
    return summary


def run_summaries(cfgs: list[TrainConfig], scale: str, *, jobs: int | None = None, retrain: bool | None = None,
                  progress: bool = True, weights_read: Collection[str] = ()) -> list[dict]:
    """The summary of every run, in the order of `cfgs`: published ones read, the others trained (`jobs` at
    once) and published. The runs must not depend on each other (a distillation student on its teacher).
    `weights_read`: the ids of runs whose weights other runs read (teachers), published with their weights; such
    a run published without them counts as done only where the working store holds them (then they are
    published), else it is trained again."""
    retrain = retraining() if retrain is None else retrain
    jobs = jobs or jobs_from_environment(scale)
    if jobs < 1:
        raise UserError(f"jobs must be at least 1, got {jobs}")
    cfgs = resolve(cfgs)
    runs = [Run(cfg.to_dict()) for cfg in cfgs]
    summaries: dict[str, dict] = {}
    for run in runs:
        published = published_run(run.id, scale)
        if not retrain and published.finished():
            if run.id in weights_read and not published.weights_path.exists():
                if not run.finished():
                    continue  # trained again below: the published run lacks the weights another run reads
                if not run.weights_path.exists():
                    raise UserError(f"run {run.id} is stored without its weights ({run.weights_path}), which other "
                                    "runs read: train it again with python -m ssl_src train ... --force")
                publish(run, scale, weights=True)
            summaries[run.id] = published.summary()
    todo = list({run.id: (run, cfg) for run, cfg in zip(runs, cfgs) if run.id not in summaries}.values())
    lines = progress and in_notebook()  # one line per run, not a block per progress-bar update
    already = len(summaries)

    def note(done: int, cfg: TrainConfig, summary: dict) -> None:
        if lines:
            print(f"trained run {done} of {len(todo)}: {run_label(cfg)} ({summary['run_id']}), "
                  f"{summary['train_seconds']:.0f} s", flush=True)

    if len(todo) <= 1 or jobs == 1:
        for i, (run, cfg) in enumerate(todo, 1):
            summaries[run.id] = train(cfg, progress=progress and not lines)
            publish(run, scale, weights=run.id in weights_read)
            note(i, cfg, summaries[run.id])
    else:
        workers = min(jobs, len(todo))
        threads = max(1, torch.get_num_threads() // workers)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool, \
                tqdm(total=len(todo), desc=f"{len(todo)} runs, {workers} at a time", disable=not progress or lines,
                     file=sys.stderr, ncols=100) as bar:
            cfgs_by_id = {run.id: cfg for run, cfg in todo}
            futures = {pool.submit(_train_one, cfg, threads, scale, run.id in weights_read): run.id for run, cfg in todo}
            failed = []  # a run that fails is reported at once; the others go on (each is published as it ends)
            for future in as_completed(futures):
                bar.update(1)
                try:
                    summary = future.result()
                except (UserError, TrainingStopped) as exc:
                    failed.append(f"run {futures[future]}: {exc}")
                    bar.write(f"FAILED {failed[-1]}")
                    continue
                summaries[summary["run_id"]] = summary
                note(len(summaries) - already, cfgs_by_id[summary["run_id"]], summary)
        if failed:
            raise UserError(f"{len(failed)} of {len(todo)} runs failed, the others are published; first: {failed[0]}")
    return [summaries[run.id] for run in runs]
