"""The replay check: published numbers must be what the code computes.

Two re-trainings in a scratch run store, compared with what was published:
1. the first `steps` steps of a published quick run (on its full schedule): its loss curve;
2. a whole smoke reference run (`results/quick/replay/`): its summary.
On the machine, instruction sets, torch and thread count that trained a run the comparison is bitwise;
elsewhere each number must agree within a stated tolerance (floating-point sums in another order drift
apart over training). The differences are printed either way. A published number that no code produces,
or a change of what a run computes without a new `store.TRAINING_SEMANTICS`, fails here.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path

import torch

from .augment import AugmentConfig
from .errors import UserError
from .hardware import describe
from .store import StoredRun, published_root, results_root
from .config import TrainConfig
from .train import TIMING_FIELDS, train

REPLAY_STEPS = 300
# Another machine: difference of each logged loss (a 20-step mean) over the first REPLAY_STEPS steps, relative
# to max(|published loss|, LOSS_FLOOR) (SimSiam's loss starts near 0). Measured: the same machine with 2
# threads instead of 1 (another summation order) drifts up to 2.4 % over 300 steps of the quick capacity run.
LOSS_TOLERANCE = 0.05
LOSS_FLOOR = 0.1
# Another machine, the smoke reference's summary: absolute tolerances by field (accuracy on 500 test images).
SUMMARY_TOLERANCE = {"loss": 0.02, "weighted_knn_acc": 0.03, "knn_acc": 0.03, "linear_acc": 0.03, "auc": 0.01,
                     "effective_rank": 0.5, "effective_rank_fraction": 0.02, "normalised_std": 0.01,
                     "projector_normalised_std": 0.01}
SAME_MACHINE_FIELDS = ("cpu", "instruction_sets", "onednn_max_isa", "aten_cpu_capability", "torch")


def reference_root() -> Path:
    """The smoke reference run, committed beside the published quick runs."""
    return results_root() / "quick" / "replay"


def config_from_dict(stored: dict) -> TrainConfig:
    augment = {k: tuple(v) if isinstance(v, list) else v for k, v in stored["augment"].items()}
    return TrainConfig(**{k: v for k, v in stored.items() if k != "augment"}, augment=AugmentConfig(**augment))


def same_machine(provenance: dict) -> bool:
    """Whether this machine is the one that trained a run, as far as its numbers are concerned."""
    here, there = describe(), provenance.get("machine", {})
    return all(here[k] == there.get(k) for k in SAME_MACHINE_FIELDS)


def kernel_caps(provenance: dict) -> dict[str, str]:
    """The environment that makes this CPU run the kernels a run was trained with: a run trained on an AVX2-only
    CPU replays bitwise on an AVX-512 one with oneDNN and ATen capped to AVX2 (both read these at start-up, so
    the replay runs in a process started with them). Empty where nothing needs capping."""
    trained = provenance.get("machine", {}).get("aten_cpu_capability")
    if trained != "AVX2" or describe()["aten_cpu_capability"] == "AVX2":
        return {}
    return {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def published_kernel_caps(run_id: str | None = None) -> dict[str, str]:
    """`kernel_caps` of the published quick run the replay re-trains."""
    run_id = run_id or default_quick_run()
    return kernel_caps(_published(published_root("quick"), run_id, "quick run").provenance())


@contextlib.contextmanager
def scratch_store():
    """A temporary run store (SSL_RESULTS), so a replay never touches the real one."""
    previous = os.environ.get("SSL_RESULTS")
    with tempfile.TemporaryDirectory(prefix="ssl-replay-") as tmp:
        os.environ["SSL_RESULTS"] = tmp
        try:
            yield Path(tmp)
        finally:
            if previous is None:
                os.environ.pop("SSL_RESULTS", None)
            else:
                os.environ["SSL_RESULTS"] = previous


@contextlib.contextmanager
def threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def first_capacity_run(scale: str) -> TrainConfig:
    """The first trained run of the capacity chapter's preset at `scale` (resolved, as its run id hashes it)."""
    from .chapters import capacity_vs_data, resolve_parameters
    from .sweep import resolve

    cfgs = resolve(capacity_vs_data.configs(resolve_parameters(capacity_vs_data.PRESETS, scale)))
    return next(cfg for cfg in cfgs if cfg.steps > 0)


def smoke_reference_config() -> TrainConfig:
    """The smoke reference: the first trained run of the capacity chapter's smoke preset (seconds to train)."""
    return first_capacity_run("smoke")


def make_smoke_reference(log=print) -> Path:
    """Train the smoke reference run here and make it the committed reference (`replay --new-reference`:
    after a change of TRAINING_SEMANTICS, or to move the bitwise check to another machine)."""
    import shutil

    from .store import Run, copy_small_files

    root = reference_root()
    cfg = smoke_reference_config()
    with scratch_store():
        train(cfg, progress=False)
        run = Run(cfg.to_dict())
        shutil.rmtree(root, ignore_errors=True)
        copy_small_files(run, root / run.id)
    log(f"smoke reference run {run.id} written to {root / run.id}")
    return root / run.id


def default_quick_run() -> str:
    """The first trained run of the capacity chapter's quick preset."""
    from .store import run_id

    return run_id(first_capacity_run("quick").to_dict())


def _published(root: Path, run_id: str, what: str) -> StoredRun:
    run = StoredRun(root / run_id, run_id)
    if not run.finished():
        raise UserError(f"{what} {run_id} is not published in {root}")
    return run


def compare(name: str, published: dict, replayed: dict, tolerance: dict[str, float], bitwise: bool,
            relative: bool, log=print) -> bool:
    """Print each number beside its replay; True when all agree (bitwise, or within the tolerance)."""
    ok = True
    log(f"{name}: {'bitwise (same machine, ISA, torch and threads)' if bitwise else 'within tolerance (another machine)'}")
    for key, expected in published.items():
        got = replayed.get(key)
        if got is None or expected is None:
            good, diff = got == expected, math.nan
        else:
            diff = abs(got - expected) / (max(abs(expected), LOSS_FLOOR) if relative else 1.0)
            good = got == expected if bitwise else diff <= tolerance[key]
        ok &= good
        limit = "0" if bitwise else f"{tolerance[key]:g}"
        log(f"  {key:<28} published {expected!r:<24} replayed {got!r:<24} "
            f"{'relative ' if relative else ''}difference {diff:.3g} (limit {limit}) {'ok' if good else 'DIFFERS'}")
    return ok


def replay_loss_curve(run_id: str, steps: int, log=print) -> bool:
    published = _published(published_root("quick"), run_id, "quick run")
    provenance = published.provenance()
    cfg = config_from_dict(published.stored_config())
    if not 0 < steps <= cfg.steps:
        raise UserError(f"--steps must be in 1..{cfg.steps} (the run's length), got {steps}")
    n_threads = provenance["machine"]["torch_threads"]
    bitwise = same_machine(provenance)
    with scratch_store(), threads(n_threads):
        replayed = train(cfg, progress=False, stop_after=steps, evaluate=False)
        records = StoredRun(results_root() / replayed["run_id"], replayed["run_id"]).metrics()
    expected = {f"loss at step {r['step']}": r["loss"] for r in published.metrics() if r["step"] <= steps}
    got = {f"loss at step {r['step']}": r["loss"] for r in records}
    if not expected:
        raise UserError(f"quick run {run_id} has no logged loss within its first {steps} steps")
    return compare(f"quick run {run_id}, first {steps} steps, {n_threads} thread(s)", expected, got,
                   dict.fromkeys(expected, LOSS_TOLERANCE), bitwise, relative=True, log=log)


def replay_smoke_reference(log=print) -> bool:
    root = reference_root()
    candidates = [p.name for p in root.iterdir() if (p / "summary.json").exists()] if root.exists() else []
    if len(candidates) != 1:
        raise UserError(f"{root} must hold exactly one smoke reference run, found {len(candidates)}")
    reference = _published(root, candidates[0], "smoke reference run")
    provenance = reference.provenance()
    cfg = config_from_dict(reference.stored_config())
    n_threads = provenance["machine"]["torch_threads"]
    with scratch_store(), threads(n_threads):
        summary = train(cfg, progress=False)
    expected = {k: v for k, v in reference.summary().items()
                if isinstance(v, float) and k not in TIMING_FIELDS and k in SUMMARY_TOLERANCE}
    return compare(f"smoke reference run {reference.id}, whole run, {n_threads} thread(s)", expected, summary,
                   SUMMARY_TOLERANCE, same_machine(provenance), relative=False, log=log)


def replay(steps: int = REPLAY_STEPS, run_id: str | None = None, log=print) -> bool:
    """Both replays; True when both agree with what was published."""
    quick = replay_loss_curve(run_id or default_quick_run(), steps, log=log)
    smoke = replay_smoke_reference(log=log)
    log(f"replay: quick run {'agrees' if quick else 'DIFFERS'}; smoke reference {'agrees' if smoke else 'DIFFERS'}")
    return quick and smoke
