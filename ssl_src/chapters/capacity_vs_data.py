"""Capacity vs data (collapse paper, Fig. 10 and 11): SimSiam at equal step budgets on growing subsets."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..augment import IMAGENET, GREY_SMALL
from ..claims import claim, condition_by_seed, paired_by_seed, paired_conditions
from ..sweep import resolve, run_summaries
from ..config import TrainConfig
from . import PRECISION
from .choosing_a_scale import REGIME, steps_of

IMAGENET_STEPS_100_EPOCHS = 100 * (1_281_167 // 256)

PRESETS = {
    "smoke": dict(dataset="fashion_mnist", archs=["resnet18"], widths=[4], deeper_archs=["resnet34"],
                  subsets=[0.01, 1.0], seeds=[0, 1, 2],
                  steps=4, batch_size=64, image_size=28, lr=0.05, weight_decay=5e-4, warmup_steps=0,
                  proj_layers=2, bn_views="joint", eval_train_images=2000, eval_test_images=500),
    # The regime chosen in "Choosing a scale": its narrow and wide nets, subsets and recipe, so the runs are
    # the search's own (published once, shared by both chapters).
    "quick": dict(dataset="fashion_mnist", archs=[REGIME["recipe"]["arch"]], widths=[REGIME["narrow"], REGIME["wide"]],
                  deeper_archs=[REGIME["deep"]],
                  subsets=[REGIME["small"], REGIME["middle"], REGIME["large"]], seeds=[0, 1, 2],
                  steps=steps_of(REGIME["recipe"]), batch_size=REGIME["recipe"]["batch_size"],
                  image_size=REGIME["recipe"]["image_size"], lr=REGIME["recipe"]["base_lr"],
                  weight_decay=REGIME["recipe"]["weight_decay"], warmup_steps=REGIME["recipe"]["warmup_steps"],
                  proj_layers=2, bn_views="joint", eval_train_images=0, eval_test_images=0),
    "paper": dict(dataset="imagenet", archs=["resnet18"], widths=[64], deeper_archs=["resnet34"],
                  subsets=[0.01, 0.05, 0.1, 0.2, 0.5, 1.0], seeds=[0, 1, 2], steps=IMAGENET_STEPS_100_EPOCHS,
                  batch_size=256, image_size=224, lr=0.05, weight_decay=1e-4, warmup_steps=0, proj_layers=3,
                  bn_views="per_view", eval_train_images=0, eval_test_images=0),
}

# What the paper reports, with where it comes from (the "paper" column of the chapter).
PAPER = {
    "auc_by_subset": {0.01: 0.61, 0.05: 0.75, 0.1: 0.84, 0.2: 0.88, 0.5: 0.87, 1.0: 0.86},
    "auc_source": "ResNet-18 spectra released by the authors (Fig. 11 / ALGORITHMS.md section 1)",
    "linear_r18_full": 30.0,
    "linear_r34_full": 16.8,
    "linear_source": "Table 2, multiple pass, ImageNet linear probe, 100 epochs",
}
# The claims the chapter's prose names at the quick preset (other parameters name others: see its claims table).
CLAIM_IDS = ("auc_rises_with_data", "accuracy_drops_with_data", f"narrow_rises_more_than_wide_w{REGIME['wide']}",
             *(f"{REGIME['deep']}_{what}" for what in ("collapses_more", "less_accurate", "auc_rises_with_data")))


def config(p: dict, arch: str, width: int, subset: float, seed: int, steps: int, **overrides) -> TrainConfig:
    """One SimSiam run of the preset's recipe; `overrides` replace its fields (the data-ordering chapter's
    ordering, chunks and switch; the other-methods chapter's method and its options)."""
    recipe = dict(
        method="simsiam", arch=arch, width=width, stem="imagenet" if p["dataset"] == "imagenet" else "cifar",
        dataset=p["dataset"], image_size=p["image_size"], subset=subset, steps=steps, batch_size=p["batch_size"],
        seed=seed, base_lr=p["lr"], weight_decay=p["weight_decay"], warmup_steps=p["warmup_steps"],
        proj_layers=p["proj_layers"], bn_views=p["bn_views"], augment=IMAGENET if p["dataset"] == "imagenet" else GREY_SMALL,
        eval_train_images=p["eval_train_images"], eval_test_images=p["eval_test_images"], precision=PRECISION[p["scale"]],
    )
    return TrainConfig(**dict(recipe, **overrides))


def nets(p: dict) -> list[tuple[str, int]]:
    """(arch, width) of every net: each of `archs` at each of `widths` (the narrow/wide contrast), then each of
    `deeper_archs` at the narrowest width only (the depth contrast at equal width, without a wide deep net).
    The claims compare every other net at the narrowest width with the first of `archs` as the deeper one."""
    narrow = min(p["widths"])
    return ([(arch, width) for arch in p["archs"] for width in p["widths"]]
            + [(arch, narrow) for arch in p["deeper_archs"] if arch not in p["archs"]])


def configs(p: dict) -> list[TrainConfig]:
    """Every run of the chapter: per net and seed the random-init network (0 steps), then every subset."""
    return [cfg for arch, width in nets(p) for seed in p["seeds"]
            for cfg in [config(p, arch, width, 1.0, seed, 0)]
            + [config(p, arch, width, subset, seed, p["steps"]) for subset in p["subsets"]]]


def check(p: dict) -> None:
    """Every run's config, data and batch schedule, before the first run starts."""
    resolve(configs(p))


def run_grid(p: dict, progress: bool = True) -> pd.DataFrame:
    """Every (arch, width, subset, seed) SimSiam run, plus the random-init network of each seed (0 steps)."""
    rows = run_summaries(configs(p), p["scale"], progress=progress)
    return pd.DataFrame(rows).assign(kind=lambda df: np.where(df.steps == 0, "random init", "trained"))


def paper_auc_rise(small: float, large: float) -> float | None:
    """The paper's AUC difference between two subset sizes, where it reports both."""
    auc = PAPER["auc_by_subset"]
    return auc[large] - auc[small] if small in auc and large in auc else None


def claims(df: pd.DataFrame, p: dict) -> list[dict]:
    """The paper's capacity claims for the first of `archs` at the narrowest width: AUC rises and accuracy drops
    with data; that rise against the wide net's (the narrow/wide contrast); and per deeper net at that width
    (supplement Fig. 1): more collapsed and less accurate on the full data, its AUC rising with data too."""
    trained = df[df.kind == "trained"].assign(linear_points=lambda d: 100 * d.linear_acc)
    subsets = sorted(p["subsets"])
    smallest, largest = subsets[0], subsets[-1]
    middle = subsets[len(subsets) // 2] if len(subsets) > 2 else smallest
    arch, narrow = p["archs"][0], min(p["widths"])
    base = dict(arch=arch, width=narrow)
    by_seed = lambda metric, net, subset: condition_by_seed(trained, metric, dict(net, subset=subset))
    auc_rise = lambda net: paired_by_seed(by_seed("auc", net, largest), by_seed("auc", net, smallest))
    out = [
        claim("auc_rises_with_data",
              f"At an equal step budget, {arch} w{narrow} collapses more (higher AUC) on the full data than on a "
              "small subset.",
              f"AUC {PAPER['auc_by_subset'][0.01]:.2f} at 1 % -> {PAPER['auc_by_subset'][1.0]:.2f} at 100 % "
              f"({PAPER['auc_source']})",
              auc_rise(base), direction=+1, paper_effect=paper_auc_rise(smallest, largest),
              what=f"AUC(subset {largest:g}) - AUC(subset {smallest:g}), paired by seed"),
        claim("accuracy_drops_with_data",
              f"At an equal step budget, {arch} w{narrow} is less accurate trained on the full data than on an "
              "intermediate subset (relative under-parameterisation).",
              "ResNet-18 accuracy peaks at an intermediate ImageNet subset and falls at 100 % "
              f"({PAPER['linear_r18_full']} % linear; Fig. 10, Table 2)",
              paired_conditions(trained, "weighted_knn_acc", dict(base, subset=largest), dict(base, subset=middle)),
              direction=-1, what=f"weighted kNN acc(subset {largest:g}) - weighted kNN acc(subset {middle:g}), "
                                 "paired by seed (the paper gives no number for this drop)"),
    ]
    for wide in sorted(w for w in p["widths"] if w != narrow):
        out.append(claim(
            f"narrow_rises_more_than_wide_w{wide}",
            f"With more data the AUC of {arch} w{narrow} rises more than that of {arch} w{wide}.",
            "small nets collapse with more data, large nets much less (Fig. 10)",
            paired_by_seed(auc_rise(base), auc_rise(dict(arch=arch, width=wide))), direction=+1,
            what=f"AUC rise (subset {smallest:g} -> {largest:g}) of w{narrow} - that of w{wide}, paired by seed "
                 "(AUC grows with the representation's dimension, so each rise is measured within one width)"))
    for deeper in [a for a, w in nets(p) if w == narrow and a != arch]:
        net = dict(arch=deeper, width=narrow)
        out += [
            claim(f"{deeper}_collapses_more",
                  f"{deeper} (same width, more depth) collapses more than {arch} on the full data.",
                  "ResNet-34 spectra more collapsed than ResNet-18's (supplement Fig. 1)",
                  paired_conditions(trained, "auc", dict(net, subset=largest), dict(base, subset=largest)),
                  direction=+1, what=f"AUC({deeper}) - AUC({arch}) on subset {largest:g}, paired by seed "
                                     "(the paper gives no number for this difference)"),
            claim(f"{deeper}_less_accurate",
                  f"{deeper} (same width, more depth) is less accurate than {arch} on the full data.",
                  f"{PAPER['linear_r34_full']} % vs {PAPER['linear_r18_full']} % linear (Table 2)",
                  paired_conditions(trained, "linear_points", dict(net, subset=largest), dict(base, subset=largest)),
                  direction=-1, paper_effect=PAPER["linear_r18_full"] - PAPER["linear_r34_full"],
                  what=f"linear-probe accuracy (points), {deeper} - {arch}, subset {largest:g}, paired by seed"),
            claim(f"{deeper}_auc_rises_with_data",
                  f"At an equal step budget, {deeper} w{narrow} collapses more on the full data than on a small subset.",
                  "ResNet-34: no collapse at 1 %, more data tends to more collapse (supplement Fig. 1, no AUC given)",
                  auc_rise(net), direction=+1,
                  what=f"AUC(subset {largest:g}) - AUC(subset {smallest:g}) of {deeper}, paired by seed"),
        ]
    return out
