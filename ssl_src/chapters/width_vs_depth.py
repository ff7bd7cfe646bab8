"""Width vs depth (collapse paper, Table 1): is it the representation size, not the depth or the parameter
count, that decides how far SimSiam collapses at a small scale?

Every architecture trains the capacity chapter's recipe (`capacity_vs_data.config`) on the whole data with
only the architecture changed: ResNet-18 is the capacity chapter's narrow net and ResNet-34 the search's
depth probe, published once.
"""
from __future__ import annotations

import pandas as pd

from ..claims import claim, mean_sd, paired_conditions
from ..config import TrainConfig
from ..data import manifest
from ..errors import UserError
from ..models import build_backbone, count_parameters
from ..sweep import resolve, run_summaries
from . import beats_random_init
from . import capacity_vs_data as capacity
from .directpred import EQUIVALENCE_MARGIN

# Table 1 of the paper (ImageNet, 100 epochs, width 64): block, layers, width multiplier, representation
# dim, parameters (millions), linear-probe accuracy (%).
PAPER = {
    "resnet18": ("Basic", 18, "1x", 512, 11.7, 30.0),
    "resnet34": ("Basic", 34, "1x", 512, 21.8, 16.8),
    "basic50": ("Basic", 50, "1x", 512, 31.9, 17.5),
    "bottleneck26": ("Bottleneck", 26, "1x", 2048, 16.0, 61.7),
    "bottleneck26_2x": ("Bottleneck", 26, "2x", 2048, 39.6, 62.6),
    "resnet50": ("Bottleneck", 50, "1x", 2048, 25.6, 68.1),
}
PAPER_SOURCE = "Table 1, ImageNet linear probe, 100 epochs, width 64"
paper_acc = lambda arch: PAPER[arch][5]

RECIPE = tuple(k for k in capacity.PRESETS["quick"] if k not in ("archs", "widths", "deeper_archs", "subsets"))
PRESETS = {
    name: dict({k: capacity.PRESETS[name][k] for k in RECIPE}, archs=list(PAPER), width=width, subset=1.0,
               **({"steps": 8, "batch_size": 32, "image_size": 16, "eval_train_images": 1000, "eval_test_images": 300}
                  if name == "smoke" else {}))
    for name, width in (("smoke", 4), ("quick", capacity.PRESETS["quick"]["widths"][0]), ("paper", 64))
}


def settings(p: dict) -> list[dict]:
    """Per seed, every architecture's random-init network (its baseline) and its trained run."""
    return [dict(arch=a, seed=s, part=part) for s in p["seeds"] for a in p["archs"]
            for part in ("random init", "trained")]


def config(p: dict, s: dict) -> TrainConfig:
    steps = 0 if s["part"] == "random init" else p["steps"]
    return capacity.config(p, s["arch"], p["width"], 1.0 if steps == 0 else p["subset"], s["seed"], steps)


def configs(p: dict) -> list[TrainConfig]:
    return [config(p, s) for s in settings(p)]


def check(p: dict) -> None:
    unknown = sorted(set(p["archs"]) - set(PAPER))
    if unknown:
        raise UserError(f"unknown architecture(s) {', '.join(unknown)}; Table 1 has {', '.join(PAPER)}")
    resolve(configs(p))


def parameters(arch: str, p: dict) -> int:
    """Backbone parameters of `arch` at the preset's width (the paper counts the backbone, not the heads)."""
    return count_parameters(build_backbone(arch, p["width"], manifest(p["dataset"])["channels"],
                                           "imagenet" if p["dataset"] == "imagenet" else "cifar", p["image_size"]))


def run_table(p: dict, progress: bool = True) -> pd.DataFrame:
    summaries = run_summaries(configs(p), p["scale"], progress=progress)
    return pd.DataFrame([dict(summary, part=s["part"], arch=s["arch"], seed=s["seed"])
                         for s, summary in zip(settings(p), summaries)])


def table(runs: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Table 1 with ours beside the paper's: representation dim, parameters, linear probe (mean +- sd over
    seeds), and the collapse of the representation (AUC, effective rank and its fraction of d)."""
    trained = runs[runs.part == "trained"]
    rows = []
    for arch, g in trained.groupby("arch", sort=False):
        block, layers, multiplier, dim, params, acc = PAPER[arch]
        rows.append({"block": block, "layers": layers, "width multiplier": multiplier,
                     "repr. dim, paper": dim, "repr. dim, ours": int(g.dim.iloc[0]),
                     "params, paper (M)": params, "params, ours (k)": round(parameters(arch, p) / 1e3, 1),
                     "linear acc, paper (%)": acc, "linear acc, ours (%)": mean_sd(g.linear_acc),
                     "AUC": mean_sd(g.auc, 1, 3), "effective rank": mean_sd(g.effective_rank, 1),
                     "rank / d": mean_sd(g.effective_rank_fraction, 1, 2)})
    return pd.DataFrame(rows, index=[arch for arch in trained.arch.unique()]).rename_axis("arch")


def _gap(runs: pd.DataFrame, a: str, b: str) -> list[float]:
    """Linear-probe points of arch `a` over arch `b`, paired by seed."""
    return [100 * d for d in paired_conditions(runs[runs.part == "trained"], "linear_acc", dict(arch=a), dict(arch=b))]


def claims(runs: pd.DataFrame, p: dict) -> list[dict]:
    """The paper's evidence that width beats depth and parameters, each as a paired difference in points."""
    have = set(p["archs"])
    out = []
    if "resnet18" in have:
        base = runs[runs.arch == "resnet18"]
        learned = (base[base.part == "trained"].set_index("seed").weighted_knn_acc
                   - base[base.part == "random init"].set_index("seed").weighted_knn_acc).dropna()
        out.append(beats_random_init(f"ResNet-18 w{p['width']}", (100 * learned).tolist()))
    comparisons = [
        ("wider_beats_deeper", "bottleneck26", "resnet34", +1,
         "Bottleneck-26 (4x the representation, fewer parameters, less depth) beats Basic-34."),
        ("width_at_equal_depth", "resnet50", "basic50", +1,
         "At equal depth (50 layers), the bottleneck net (4x the representation, fewer parameters) beats the basic one."),
        ("depth_hurts_at_equal_width", "resnet34", "resnet18", -1,
         "At equal width, Basic-34 is less accurate than Basic-18."),
    ]
    for claim_id, a, b, direction, statement in comparisons:
        if {a, b} <= have:
            out.append(claim(claim_id, statement, f"{paper_acc(a)} against {paper_acc(b)} % ({PAPER_SOURCE})",
                             _gap(runs, a, b), direction, paper_effect=paper_acc(a) - paper_acc(b),
                             what=f"linear acc({a}) - linear acc({b}) (points, paired by seed)"))
    if {"bottleneck26_2x", "bottleneck26"} <= have:
        out.append(claim("parameters_buy_little", "Doubling the bottleneck width (2.5x the parameters, the same "
                         "representation size) changes accuracy by less than 1 point.",
                         f"{paper_acc('bottleneck26_2x')} against {paper_acc('bottleneck26')} % ({PAPER_SOURCE})",
                         _gap(runs, "bottleneck26_2x", "bottleneck26"), 0, margin=100 * EQUIVALENCE_MARGIN,
                         what="linear acc(bottleneck26_2x) - linear acc(bottleneck26) (points, paired by seed)"))
    return out
