"""Capacity vs data (collapse paper, Fig. 10 and 11): SimSiam at equal step budgets on growing subsets."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..augment import IMAGENET, GREY_SMALL
from ..claims import claim, paired_conditions
from ..sweep import resolve, run_summaries
from ..config import TrainConfig
from . import PRECISION
from .choosing_a_scale import REGIME, steps_of

IMAGENET_STEPS_100_EPOCHS = 100 * (1_281_167 // 256)

PRESETS = {
    "smoke": dict(dataset="fashion_mnist", archs=["resnet18"], widths=[4], subsets=[0.01, 1.0], seeds=[0, 1, 2],
                  steps=4, batch_size=64, image_size=28, lr=0.05, weight_decay=5e-4, warmup_steps=0,
                  proj_layers=2, bn_views="joint", eval_train_images=2000, eval_test_images=500),
    # The regime chosen in "Choosing a scale": its narrow and wide nets, subsets and recipe, so the runs are
    # the search's own (published once, shared by both chapters).
    "quick": dict(dataset="fashion_mnist", archs=[REGIME["recipe"]["arch"]], widths=[REGIME["narrow"], REGIME["wide"]],
                  subsets=[REGIME["small"], REGIME["middle"], REGIME["large"]], seeds=[0, 1, 2],
                  steps=steps_of(REGIME["recipe"]), batch_size=REGIME["recipe"]["batch_size"],
                  image_size=REGIME["recipe"]["image_size"], lr=REGIME["recipe"]["base_lr"],
                  weight_decay=REGIME["recipe"]["weight_decay"], warmup_steps=REGIME["recipe"]["warmup_steps"],
                  proj_layers=2, bn_views="joint", eval_train_images=0, eval_test_images=0),
    "paper": dict(dataset="imagenet", archs=["resnet18", "resnet34"], widths=[64],
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


def configs(p: dict) -> list[TrainConfig]:
    """Every run of the chapter: per (arch, width, seed) the random-init network (0 steps), then every subset."""
    return [cfg for arch in p["archs"] for width in p["widths"] for seed in p["seeds"]
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
    trained = df[df.kind == "trained"]
    subsets = sorted(p["subsets"])
    smallest, largest = subsets[0], subsets[-1]
    middle = subsets[len(subsets) // 2] if len(subsets) > 2 else smallest
    arch, width = p["archs"][0], p["widths"][0]
    base = dict(arch=arch, width=width)
    out = [
        claim("auc_rises_with_data",
              f"At an equal step budget, {arch} collapses more (higher AUC) on the full data than on a small subset.",
              f"AUC {PAPER['auc_by_subset'][0.01]:.2f} at 1 % -> {PAPER['auc_by_subset'][1.0]:.2f} at 100 % "
              f"({PAPER['auc_source']})",
              paired_conditions(trained, "auc", dict(base, subset=largest), dict(base, subset=smallest)), direction=+1,
              paper_effect=paper_auc_rise(smallest, largest),
              what=f"AUC(subset {largest:g}) - AUC(subset {smallest:g}), paired by seed"),
        claim("accuracy_drops_with_data",
              f"At an equal step budget, {arch} is less accurate trained on the full data than on an "
              "intermediate subset (relative under-parameterisation).",
              "ResNet-18 accuracy peaks at an intermediate ImageNet subset and falls at 100 % "
              f"({PAPER['linear_r18_full']} % linear; Fig. 10, Table 2)",
              paired_conditions(trained, "weighted_knn_acc", dict(base, subset=largest), dict(base, subset=middle)),
              direction=-1, what=f"weighted kNN acc(subset {largest:g}) - weighted kNN acc(subset {middle:g}), "
                                 "paired by seed (the paper gives no number for this drop)"),
    ]
    if "resnet34" in p["archs"] and "resnet18" in p["archs"]:
        out.append(claim(
            "deeper_collapses_more",
            "ResNet-34 (same width, more depth) collapses more than ResNet-18 on the full data.",
            f"ResNet-34 spectra more collapsed (supplement Fig. 1); {PAPER['linear_r34_full']} % vs "
            f"{PAPER['linear_r18_full']} % linear",
            paired_conditions(trained, "auc", dict(arch="resnet34", width=width, subset=largest),
                    dict(arch="resnet18", width=width, subset=largest)),
            direction=+1, what="AUC(resnet34) - AUC(resnet18) on the largest subset, paired by seed "
                               "(the paper gives no number for this difference)"))
    return out
