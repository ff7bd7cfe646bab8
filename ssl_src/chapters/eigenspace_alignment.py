"""Eigenspace alignment in real training (Tian et al., Fig. 2): BYOL with a linear predictor W_p, whose
eigenvectors should align with those of F = E[f f^T], the correlation of its input (the projector output).

The live monitor (`ssl_src.monitor.predictor_spectra`) records F's eigenvalues, W_p's eigenvalues, the
alignment cos(u_j, W_p u_j) and W_p's asymmetry on a fixed probe set every `monitor_every` steps."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..augment import GREY_SMALL
from ..claims import claim, paired_by_seed
from ..errors import UserError
from ..store import find_run
from ..sweep import resolve, run_summaries
from ..config import TrainConfig
from . import PRECISION, beats_random_init
from .choosing_a_scale import REGIME, steps_of

PRESETS = {
    "smoke": dict(dataset="fashion_mnist", width=4, image_size=16, steps=6, batch_size=64, lr=0.03, weight_decay=4e-4,
                  ema=0.996, seeds=[0, 1, 2], monitor_every=3, eval_train_images=1000, eval_test_images=300),
    # The step budget, image size and batch of the regime chosen in "Choosing a scale" (5 epochs of the 60k
    # images), with the seed's own optimizer.
    "quick": dict(dataset="fashion_mnist", width=8, image_size=REGIME["recipe"]["image_size"],
                  steps=steps_of(REGIME["recipe"]), batch_size=REGIME["recipe"]["batch_size"], lr=0.03,
                  weight_decay=4e-4, ema=0.996, seeds=[0, 1, 2], monitor_every=50, eval_train_images=0, eval_test_images=0),
    "paper": dict(dataset="stl10", width=64, image_size=96, steps=100 * (105_000 // 128), batch_size=128, lr=0.03,
                  weight_decay=4e-4, ema=0.996, seeds=[0, 1, 2], monitor_every=500, eval_train_images=0,
                  eval_test_images=0),
}

SEED = ("Fig. 2 (BYOL, STL-10, 100 epochs, no symmetric regularisation): eigenvalues of F split into growing "
        "and vanishing ones, the eigenspaces of F and W_p align, W_p becomes symmetric.")


def config(p: dict, seed: int, steps: int | None = None) -> TrainConfig:
    """BYOL with a linear predictor and the DirectPred paper's projector (512-512-128 at width 64); steps=0
    is the random-init network of the seed."""
    w = p["width"]
    return TrainConfig(method="byol", predictor="linear", arch="resnet18", width=w, dataset=p["dataset"],
                       image_size=p["image_size"], steps=p["steps"] if steps is None else steps, batch_size=p["batch_size"], seed=seed,
                       base_lr=p["lr"], weight_decay=p["weight_decay"], ema=p["ema"], proj_hidden_dim=8 * w,
                       proj_dim=2 * w, proj_layers=2, monitor_every=p["monitor_every"],
                       augment=GREY_SMALL if p["dataset"] == "fashion_mnist" else TrainConfig().augment,
                       eval_train_images=p["eval_train_images"], eval_test_images=p["eval_test_images"],
                       precision=PRECISION[p["scale"]])


def configs(p: dict) -> list[TrainConfig]:
    """Every run of the chapter: per seed the random-init network, then the trained one."""
    return [cfg for seed in p["seeds"] for cfg in (config(p, seed, 0), config(p, seed))]


def check(p: dict) -> None:
    if p["monitor_every"] < 1 or p["steps"] < 2 * p["monitor_every"]:
        raise UserError("parameter monitor_every must be between 1 and steps / 2 (the claims need two measurements after step 0)")
    resolve(configs(p))


def run_all(p: dict, progress: bool = True) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """Summaries of the runs (`kind`: trained or random init), and per seed the monitor trajectory of the
    trained run (one row per monitored step)."""
    summaries = pd.DataFrame(run_summaries(configs(p), p["scale"], progress=progress))
    summaries["kind"] = np.where(summaries.steps == 0, "random init", "trained")
    trained = summaries[summaries.kind == "trained"]
    trajectories = {seed: pd.DataFrame(find_run(run_id, p["scale"]).monitor())
                    for seed, run_id in zip(trained.seed, trained.run_id)}
    return summaries, trajectories


def trajectory_summary(traj: pd.DataFrame) -> pd.DataFrame:
    """Per monitored step: mean alignment over the leading half of F's eigenvectors, W_p's asymmetry, and the
    spread of F's spectrum (log10 of largest over median eigenvalue)."""
    rows = []
    for _, r in traj.iterrows():
        s, cos = np.asarray(r["F_eigenvalues"]), np.asarray(r["alignment"])
        top = len(s) // 2
        rows.append({"step": r["step"], "alignment_top_half": float(cos[:top].mean()),
                     "asymmetry": r["predictor_asymmetry"],
                     "F_spread": float(np.log10(max(s[0], 1e-30) / max(np.median(s), 1e-30)))})
    return pd.DataFrame(rows)


def claims(runs: pd.DataFrame, summaries: dict[int, pd.DataFrame]) -> list[dict]:
    """Whether the trained nets learned features (against the random-init network of their seed), then the
    seed's statements: per seed, the last monitored step minus the first one after initialisation (at step 0
    the projector's BN running statistics still hold their initial values, so F measured in eval mode is not
    yet the correlation the predictor sees)."""
    change = lambda col: [float(t[col].iloc[-1] - t[col].iloc[1]) for t in summaries.values()]
    knn = lambda kind: runs[runs.kind == kind].set_index("seed").weighted_knn_acc
    return [
        beats_random_init("BYOL (linear predictor)", (100 * paired_by_seed(knn("trained"), knn("random init"))).tolist()),
        claim("alignment_rises", "The eigenvectors of F become eigenvectors of W_p: the mean cos(u_j, W_p u_j) over "
              "the leading half of F's eigenvectors rises during training.", SEED, change("alignment_top_half"),
              direction=+1, what="mean alignment (leading half), last - first monitored step, paired by seed"),
        claim("predictor_becomes_symmetric", "W_p becomes more symmetric during training.", SEED, change("asymmetry"),
              direction=-1, what="||W_p - W_p^T|| / ||W_p||, last - first monitored step, paired by seed"),
        claim("eigenvalues_split", "F's eigenvalues split: the leading ones grow away from the rest.", SEED,
              change("F_spread"), direction=+1,
              what="log10(largest / median eigenvalue of F), last - first monitored step, paired by seed"),
    ]
