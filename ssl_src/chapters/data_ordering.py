"""Data ordering (collapse paper, Table 2, Fig. 14 and Fig. 16): multiple pass, cumulative, single pass and the
hybrid at an equal step budget, for a net short of capacity and one with capacity to spare; collapse over
training from the live monitor; and where the hybrid should switch.

The runs use the capacity chapter's recipe and builder (`capacity_vs_data.config`): the multiple-pass runs
are that chapter's full-data runs, published once.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..claims import claim, mean_sd, paired_conditions
from ..errors import UserError
from ..orderings import ORDERINGS
from ..sweep import resolve, run_summaries
from ..config import TrainConfig
from . import beats_random_init, monitor_curves
from . import capacity_vs_data as capacity
from .choosing_a_scale import REGIME

# The names of Table 2 for our orderings.
NAMES = {"iid": "multiple pass", "cumulative": "cumulative", "single": "single pass", "hybrid": "hybrid"}
PAPER = {  # ImageNet linear probe (%), 100 epochs, means over 3 seeds (Table 2)
    "resnet18": {"iid": 30.0, "cumulative": 33.0, "single": 44.5, "hybrid": 48.3},
    "resnet50": {"iid": 68.1, "cumulative": 67.7, "single": 55.9, "hybrid": 67.6},
    "source": "Table 2 (ImageNet linear probe, 100 epochs, chunks of 1 %); the large net is the paper's ResNet-50",
}
RECIPE = ("dataset", "steps", "batch_size", "image_size", "lr", "weight_decay", "warmup_steps", "proj_layers",
          "bn_views", "eval_train_images", "eval_test_images")
recipe = lambda scale: {k: capacity.PRESETS[scale][k] for k in RECIPE}
ORDERING_SETS = dict(orderings=list(NAMES), switch=0.4, seeds=[0, 1, 2], sweep_seeds=[0])

PRESETS = {
    # smoke: a few steps of tiny nets (checks the pipeline only)
    "smoke": dict(recipe("smoke"), steps=8, batch_size=32, image_size=16, eval_train_images=1000, eval_test_images=300,
                  narrow_arch="resnet18", narrow=4, wide_arch="resnet18", wide=8, wide_orderings=["iid", "single"],
                  chunks=4, switches=[0.2, 0.6], **ORDERING_SETS),
    # quick: the regime's narrow and wide nets and recipe, the paper's 100 chunks of 1 % (600 images); the
    # hybrid's switch sweep (Fig. 16) trains one seed of the narrow net
    "quick": dict(recipe("quick"), narrow_arch=REGIME["recipe"]["arch"], narrow=REGIME["narrow"],
                  wide_arch=REGIME["recipe"]["arch"], wide=REGIME["wide"], wide_orderings=["iid", "single"],
                  chunks=100, switches=[0.2, 0.6, 0.8], **ORDERING_SETS),
    # paper: the authors' ResNet-18 and ResNet-50 on ImageNet, 100 epochs, 100 chunks
    "paper": dict(recipe("paper"), narrow_arch="resnet18", narrow=64, wide_arch="resnet50", wide=64,
                  wide_orderings=list(NAMES), chunks=100, switches=[0.2, 0.6, 0.8], **ORDERING_SETS),
}


def settings(p: dict) -> list[dict]:
    """The random-init network of each net and seed, then per seed the narrow net in every ordering, the wide
    net in `wide_orderings`, and the narrow net's hybrids at the sweep's other switch points."""
    nets = {"narrow": (p["narrow_arch"], p["narrow"], p["orderings"]), "wide": (p["wide_arch"], p["wide"], p["wide_orderings"])}
    at = lambda net, part, seed, ordering, switch=p["switch"]: dict(
        net=net, arch=nets[net][0], width=nets[net][1], part=part, seed=seed, ordering=ordering, switch=switch)
    out = [at(net, "random init", s, "iid") for net in nets for s in p["seeds"]]
    out += [at(net, "table", s, o) for s in p["seeds"] for net in nets for o in nets[net][2]]
    out += [at("narrow", "switch sweep", s, "hybrid", x) for s in p["sweep_seeds"] for x in p["switches"] if x != p["switch"]]
    return out


def config(p: dict, s: dict) -> TrainConfig:
    """A setting's run: the capacity chapter's recipe on the whole data, with the setting's ordering (iid ignores
    the chunks, only the hybrid reads its switch: so the multiple-pass runs are the capacity chapter's)."""
    ordering = dict(ordering=s["ordering"], chunks=0 if s["ordering"] == "iid" else p["chunks"],
                    switch=s["switch"] if s["ordering"] == "hybrid" else 0.4)
    steps = 0 if s["part"] == "random init" else p["steps"]
    return capacity.config(p, s["arch"], s["width"], 1.0, s["seed"], steps, **ordering)


def configs(p: dict) -> list[TrainConfig]:
    return [config(p, s) for s in settings(p)]


def check(p: dict) -> None:
    unknown = sorted(set(p["orderings"] + p["wide_orderings"]) - set(NAMES))
    if unknown:
        raise UserError(f"unknown ordering(s) {', '.join(unknown)}; valid: {', '.join(NAMES)} "
                        f"(of {', '.join(ORDERINGS)}, `subset` is the capacity chapter's)")
    if any(not 0 < x < 1 for x in p["switches"] + [p["switch"]]):
        raise UserError("hybrid switch points must lie in (0, 1): 0 is multiple pass, 1 is single pass")
    resolve(configs(p))


def run_table(p: dict, progress: bool = True) -> pd.DataFrame:
    """One row per run: its part (table, switch sweep, random init), net, ordering, switch, seed and summary."""
    rows, cfgs = settings(p), configs(p)
    summaries = run_summaries(cfgs, p["scale"], progress=progress)
    return pd.DataFrame([{"part": s["part"], "net": s["net"], "arch": c.arch, "width": c.width, "ordering": s["ordering"],
                          "switch": c.switch, "seed": c.seed, **summary} for s, c, summary in zip(rows, cfgs, summaries)])


def net_name(p: dict, net: str) -> str:
    return f"{p[net + '_arch']} w{p[net]}"


def table2(runs: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Table 2's layout: linear-probe accuracy (%) per ordering and net, mean +- sd over seeds, beside the
    paper's ResNet-18 (the net short of capacity) and ResNet-50 (the large one)."""
    trained = runs[runs.part == "table"]
    ours = trained.groupby(["ordering", "net"]).linear_acc.apply(mean_sd).unstack("net")
    ours = ours[[net for net in ("narrow", "wide") if net in ours.columns]]
    ours.columns = [f"ours, {net_name(p, net)}" for net in ours.columns]
    table = ours.reindex([o for o in NAMES if o in ours.index])
    table.insert(0, "paper ResNet-18", [PAPER["resnet18"][o] for o in table.index])
    table["paper ResNet-50"] = [PAPER["resnet50"][o] for o in table.index]
    return table.rename(index=NAMES).rename_axis("training method")


def _points(runs: pd.DataFrame, metric: str, net: str, a: str, b: str, scale: float = 100.0) -> list[float]:
    """Per seed: scale x (metric of ordering a - metric of ordering b) in Table 2's runs of `net`."""
    at = lambda ordering: dict(part="table", net=net, ordering=ordering)
    return [scale * d for d in paired_conditions(runs, metric, at(a), at(b))]


def claims(runs: pd.DataFrame, p: dict) -> list[dict]:
    """Table 2's reading for the narrow net (the paper's ResNet-18) and the wide one (its ResNet-50), on the
    linear probe in points, paired by seed; collapse (AUC) of single against multiple pass (Fig. 14)."""
    narrow, wide = net_name(p, "narrow"), net_name(p, "wide")
    r18 = PAPER["resnet18"]
    gain = lambda a, b: r18[a] - r18[b]
    above_random_init = paired_conditions(runs, "weighted_knn_acc", dict(part="table", net="narrow", ordering="iid"),
                                          dict(part="random init", net="narrow"))
    out = [beats_random_init(f"the {narrow} net (multiple pass)", [100 * d for d in above_random_init])]
    narrow_claims = [
        ("single_beats_multiple", "single", "iid", "Single pass is more accurate than multiple passes for the small net."),
        ("cumulative_beats_multiple", "cumulative", "iid", "Cumulative is more accurate than multiple passes for the small net."),
        ("hybrid_beats_single", "hybrid", "single", "The hybrid is more accurate than single pass for the small net."),
        ("hybrid_beats_multiple", "hybrid", "iid", "The hybrid is more accurate than multiple passes for the small net."),
    ]
    for claim_id, a, b, statement in narrow_claims:
        if {a, b} <= set(p["orderings"]):
            out.append(claim(claim_id, statement, f"ResNet-18: {r18[a]} against {r18[b]} % ({PAPER['source']})",
                             _points(runs, "linear_acc", "narrow", a, b), +1, paper_effect=gain(a, b),
                             what=f"linear probe, {NAMES[a]} - {NAMES[b]}, {narrow} (points)"))
    if {"single", "iid"} <= set(p["orderings"]):
        out.append(claim("single_less_collapsed", "Single pass collapses the small net less than multiple passes.",
                         "Fig. 14: single pass keeps a lower AUC through training (no number given)",
                         _points(runs, "auc", "narrow", "single", "iid", scale=1.0), -1,
                         what=f"AUC, single pass - multiple pass, {narrow}"))
    if {"single", "iid"} <= set(p["wide_orderings"]):
        r50 = PAPER["resnet50"]
        out.append(claim("single_hurts_the_large_net", "Single pass is less accurate than multiple passes for a net "
                         "with capacity to spare.", f"ResNet-50: {r50['single']} against {r50['iid']} %",
                         _points(runs, "linear_acc", "wide", "single", "iid"), -1, paper_effect=r50["iid"] - r50["single"],
                         what=f"linear probe, single pass - multiple pass, {wide} (points)"))
    return out


def collapse_over_training(runs: pd.DataFrame, p: dict, net: str = "narrow") -> pd.DataFrame:
    """Fig. 14: the live monitor's AUC and small weighted kNN at each measured step, per ordering and seed,
    for `net` (narrow or wide)."""
    table = runs[(runs.part == "table") & (runs.net == net)]
    return monitor_curves(table.assign(ordering=table.ordering.map(NAMES)), p["scale"], ["ordering", "seed"])


def switch_sweep(runs: pd.DataFrame, p: dict) -> pd.DataFrame:
    """Fig. 16: the narrow net's linear-probe accuracy (%) and AUC against the fraction of the steps trained
    single-pass (0 = multiple pass, 1 = single pass), for the sweep's seeds."""
    narrow = runs[(runs.net == "narrow") & runs.seed.isin(p["sweep_seeds"]) & (runs.part != "random init")
                  & runs.ordering.isin(["iid", "single", "hybrid"])]
    single_fraction = np.select([narrow.ordering == "iid", narrow.ordering == "single"], [0.0, 1.0], narrow.switch)
    return (narrow.assign(linear_acc=100 * narrow.linear_acc, single_fraction=single_fraction)
            .groupby("single_fraction")[["linear_acc", "auc"]].mean().rename_axis("fraction of steps single-pass"))
