"""DirectPred (Tian, Chen & Ganguli, 2021): a linear predictor set from the eigen-decomposition of its input's
correlation, against the predictors trained by SGD (linear, and 2-layer with BN) and DirectCopy."""
from __future__ import annotations

import pandas as pd

from ..augment import GREY_SMALL
from ..claims import claim, paired_by_seed, paired_conditions
from ..errors import UserError
from ..sweep import resolve, run_summaries
from ..config import TrainConfig
from . import PRECISION, beats_random_init
from .choosing_a_scale import REGIME, steps_of

# Every variant is BYOL with the DirectPred code's projector (8w-8w-2w: 512-512-128 at width 64).
VARIANTS = {
    "DirectPred": dict(method="directpred"),
    "DirectCopy": dict(method="directcopy"),
    "linear (SGD)": dict(method="byol", predictor="linear"),
    "2-layer BN (SGD)": dict(method="byol", predictor="mlp"),
}

PRESETS = {
    "smoke": dict(dataset="fashion_mnist", width=4, image_size=16, steps=6, batch_size=64, lr=0.03, weight_decay=4e-4,
                  ema=0.996, seeds=[0, 1, 2], variants=list(VARIANTS), eval_train_images=1000, eval_test_images=300),
    # The step budget, image size and batch of the regime chosen in "Choosing a scale" (5 epochs of the 60k
    # images), with the seed's own optimizer, at the regime's narrow width: 4 predictors x 3 seeds (5 seeds
    # would have taken 2.2 hours on 2 cores, over the chapter budget of 2 hours when the regime was chosen).
    "quick": dict(dataset="fashion_mnist", width=REGIME["narrow"], image_size=REGIME["recipe"]["image_size"],
                  steps=steps_of(REGIME["recipe"]), batch_size=REGIME["recipe"]["batch_size"], lr=0.03,
                  weight_decay=4e-4, ema=0.996, seeds=[0, 1, 2], variants=list(VARIANTS), eval_train_images=20000,
                  eval_test_images=10000),
    "paper": dict(dataset="stl10", width=64, image_size=96, steps=100 * (105_000 // 128), batch_size=128, lr=0.03,
                  weight_decay=4e-4, ema=0.996, seeds=[0, 1, 2], variants=list(VARIANTS), eval_train_images=0,
                  eval_test_images=0),
}

PAPER = {
    "comparable": "ImageNet: DirectPred performs comparably with the 2-layer BN predictor (abstract)",
    "beats_linear": "ImageNet: DirectPred beats the SGD-trained linear predictor by 2.5 points (300 epochs) "
                    "and 5 points (60 epochs), linear evaluation (abstract)",
    "beats_linear_points": 0.025,
}
RANDOM_INIT = "random init"  # the untrained backbone of each seed (the same for every variant: built first)
EQUIVALENCE_MARGIN = 0.01  # "comparable": within 1 point of linear-probe accuracy


def config(p: dict, variant: str, seed: int) -> TrainConfig:
    """A variant's run; RANDOM_INIT is the 2-layer predictor's config at 0 steps (the backbone every variant
    starts from)."""
    w = p["width"]
    steps = 0 if variant == RANDOM_INIT else p["steps"]
    variant = "2-layer BN (SGD)" if variant == RANDOM_INIT else variant
    return TrainConfig(arch="resnet18", width=w, dataset=p["dataset"], image_size=p["image_size"], steps=steps,
                       batch_size=p["batch_size"], seed=seed, base_lr=p["lr"], weight_decay=p["weight_decay"],
                       ema=p["ema"], proj_hidden_dim=8 * w, proj_dim=2 * w, pred_dim=8 * w, proj_layers=2,
                       augment=GREY_SMALL if p["dataset"] == "fashion_mnist" else TrainConfig().augment,
                       eval_train_images=p["eval_train_images"], eval_test_images=p["eval_test_images"],
                       precision=PRECISION[p["scale"]], **VARIANTS[variant])


def conditions(p: dict) -> list[tuple[str, int]]:
    """(variant, seed) of every run: the random-init network of each seed, then every variant."""
    return [(variant, seed) for seed in p["seeds"] for variant in [RANDOM_INIT] + p["variants"]]


def configs(p: dict) -> list[TrainConfig]:
    """Every run of the chapter."""
    return [config(p, variant, seed) for variant, seed in conditions(p)]


def check(p: dict) -> None:
    unknown = sorted(set(p["variants"]) - set(VARIANTS))
    if unknown:
        raise UserError(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    resolve(configs(p))


def run_all(p: dict, progress: bool = True) -> pd.DataFrame:
    summaries = run_summaries(configs(p), p["scale"], progress=progress)
    return pd.DataFrame([dict(s, variant=v) for s, (v, _) in zip(summaries, conditions(p))])


def _paired(runs: pd.DataFrame, metric: str, a: str, b: str) -> list[float]:
    return paired_conditions(runs, metric, dict(variant=a), dict(variant=b))


def above_random_init(runs: pd.DataFrame, variants: list[str], margin: float) -> tuple[bool, str]:
    """Whether every variant's linear probe beats the random-init network of its seed, significantly (paired
    t-test, one-sided) and by more than `margin`: "comparable" means nothing between untrained nets."""
    from ..claims import paired_verdict

    for variant in variants:
        verdict, s = paired_verdict(_paired(runs, "linear_acc", variant, RANDOM_INIT), +1)
        if verdict != "reproduced" or s["mean_difference"] <= margin:
            return False, (f"{variant} is not clearly above the random-init network "
                           f"({100 * s['mean_difference']:+.2f} points, p = {s['p_value']:.3g}, n = {s['n_seeds']})")
    return True, f"{' and '.join(variants)} are above the random-init network by more than {100 * margin:g} point(s)"


def claims(runs: pd.DataFrame, p: dict) -> list[dict]:
    """Learned features (the least accurate predictor's net of each seed against that seed's random-init
    network), then the seed's comparisons of the predictors present."""
    present = set(p["variants"])
    knn = lambda variant: runs[runs.variant == variant].set_index("seed").weighted_knn_acc
    least = pd.concat([knn(v) for v in p["variants"]], axis=1).min(axis=1, skipna=False)
    out = [beats_random_init("the least accurate predictor's net", (100 * paired_by_seed(least, knn(RANDOM_INIT))).tolist())]
    if {"DirectPred", "2-layer BN (SGD)"} <= present:
        out.append(claim("comparable_to_two_layer", "DirectPred is as accurate as the SGD-trained 2-layer BN predictor "
                         "(linear probe within 1 point).", PAPER["comparable"],
                         _paired(runs, "linear_acc", "DirectPred", "2-layer BN (SGD)"), direction=0,
                         margin=EQUIVALENCE_MARGIN,
                         precondition=above_random_init(runs, ["DirectPred", "2-layer BN (SGD)"], EQUIVALENCE_MARGIN),
                         what="linear acc(DirectPred) - linear acc(2-layer BN), paired by seed"))
    if {"DirectPred", "linear (SGD)"} <= present:
        out.append(claim("beats_linear", "DirectPred is more accurate than the SGD-trained linear predictor.",
                         PAPER["beats_linear"], _paired(runs, "linear_acc", "DirectPred", "linear (SGD)"),
                         direction=+1, paper_effect=PAPER["beats_linear_points"],
                         what="linear acc(DirectPred) - linear acc(linear), paired by seed (paper: 300 epochs)"))
    return out
