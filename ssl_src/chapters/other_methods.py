"""Other methods (collapse paper, Fig. 9 = Fig. 1b, and Fig. 15): do BYOL and MoCo-v3, with a momentum target,
learn where SimSiam collapses, and does single pass, which helps SimSiam, help them too?

Every method trains the capacity chapter's recipe (`capacity_vs_data.config`) with only the method changed:
the SimSiam runs are the capacity and data-ordering chapters' own, published once.
"""
from __future__ import annotations

import pandas as pd

from ..claims import claim, condition_by_seed, mean_sd, paired_by_seed, paired_conditions
from ..errors import UserError
from ..sweep import resolve, run_summaries
from ..config import TrainConfig
from . import beats_random_init
from . import capacity_vs_data as capacity
from . import data_ordering

# ImageNet linear probe (%), 100 epochs: SimSiam from Table 2, BYOL and MoCo-v3 (ResNet-18) from Fig. 15.
PAPER = {
    "small iid": {"simsiam": 30.0, "byol": 47.6, "mocov3": 53.8},
    "small single": {"simsiam": 44.5, "byol": 44.2, "mocov3": 48.9},
    "large iid": {"simsiam": 68.1},
    "source": "ResNet-18 (small) and ResNet-50 (large) on ImageNet, linear probe (SimSiam: Table 2; BYOL and "
              "MoCo-v3: Fig. 15)",
}
NAMES = {"simsiam": "SimSiam", "byol": "BYOL", "mocov3": "MoCo-v3"}
CONDITIONS = (("small", "iid"), ("small", "single"), ("large", "iid"))  # (net, ordering) of Fig. 9 and Fig. 15
# Every claim the chapter makes when no method, ordering or net is left out (`claims`).
CLAIM_IDS = ("beats_random_init", *(form.format(m) for m in ("byol", "mocov3") for form in (
    "{}_beats_simsiam", "simsiam_more_collapsed_than_{}", "single_does_not_help_{}",
    "small_net_hurts_simsiam_more_than_{}")))

PRESETS = {
    name: dict(data_ordering.recipe(name), arch=data_ordering.PRESETS[name]["narrow_arch"],
               width=data_ordering.PRESETS[name]["narrow"], wide_arch=data_ordering.PRESETS[name]["wide_arch"],
               wide=data_ordering.PRESETS[name]["wide"],
               chunks=data_ordering.PRESETS[name]["chunks"], methods=list(NAMES), orderings=["iid", "single"],
               ema=0.99, temperature=0.2, seeds=[0, 1, 2],
               **({"steps": 8, "batch_size": 32, "image_size": 16, "eval_train_images": 1000, "eval_test_images": 300}
                  if name == "smoke" else {}))
    for name in ("smoke", "quick", "paper")
}


def settings(p: dict) -> list[dict]:
    """The random-init network of each seed (SimSiam's: the backbone every method starts from), then per seed
    every method in every ordering at the small net, and every method in multiple pass at the large one."""
    small, large = dict(net="small", arch=p["arch"], width=p["width"]), dict(net="large", arch=p["wide_arch"], width=p["wide"])
    return ([dict(small, method="simsiam", ordering="iid", seed=s, part="random init") for s in p["seeds"]]
            + [dict(small, method=m, ordering=o, seed=s, part="trained") for s in p["seeds"]
               for m in p["methods"] for o in p["orderings"]]
            + [dict(large, method=m, ordering="iid", seed=s, part="trained") for s in p["seeds"]
               for m in p["methods"] if p["wide"]])


def config(p: dict, s: dict) -> TrainConfig:
    """A setting's run: the capacity chapter's recipe with the method (and its target's EMA and temperature)
    and the ordering changed; SimSiam's are the capacity and data-ordering chapters' runs."""
    options = {"byol": dict(ema=p["ema"]), "mocov3": dict(ema=p["ema"], temperature=p["temperature"])}
    ordering = {} if s["ordering"] == "iid" else dict(ordering=s["ordering"], chunks=p["chunks"])
    steps = 0 if s["part"] == "random init" else p["steps"]
    return capacity.config(p, s["arch"], s["width"], 1.0, s["seed"], steps, method=s["method"],
                           **options.get(s["method"], {}), **ordering)


def configs(p: dict) -> list[TrainConfig]:
    return [config(p, s) for s in settings(p)]


def check(p: dict) -> None:
    unknown = sorted(set(p["methods"]) - set(NAMES)) + sorted(set(p["orderings"]) - {"iid", "single"})
    if unknown:
        raise UserError(f"unknown method(s) or ordering(s) {', '.join(unknown)}; methods: {', '.join(NAMES)}, "
                        "orderings: iid, single")
    resolve(configs(p))


def run_table(p: dict, progress: bool = True) -> pd.DataFrame:
    rows, cfgs = settings(p), configs(p)
    summaries = run_summaries(cfgs, p["scale"], progress=progress)
    return pd.DataFrame([dict(summary, **s) for s, summary in zip(rows, summaries)])


def condition_label(net: str, ordering: str) -> str:
    return f"{net} net, {data_ordering.NAMES[ordering]}"


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Linear-probe accuracy (%) per method at the small net in multiple and single pass and at the large net in
    multiple pass, mean +- sd over seeds, beside the paper's (which gives no number for BYOL's and MoCo-v3's
    large net)."""
    trained = runs[runs.part == "trained"]
    ours = trained.groupby(["method", "net", "ordering"]).linear_acc.apply(mean_sd)
    columns = {}
    for net, ordering in CONDITIONS:
        label = condition_label(net, ordering)
        if (ours.index.droplevel("method") == (net, ordering)).any():
            columns[f"paper, {label}"] = PAPER.get(f"{net} {ordering}", {})
            columns[f"ours, {label}"] = ours.xs((net, ordering), level=("net", "ordering"))
    out = pd.DataFrame(columns)
    return out.reindex([m for m in NAMES if m in out.index]).rename(index=NAMES).rename_axis("method")


def accuracy_figure(runs: pd.DataFrame):
    """Fig. 9 and Fig. 15 side by side: linear-probe accuracy per method and condition, the paper's bars (where
    it gives a number) beside ours (mean over seeds as a bar, each seed a dot). The two panels have their own
    scales: ImageNet at 100 epochs against Fashion-MNIST at 5."""
    import matplotlib.pyplot as plt
    import numpy as np

    trained = runs[runs.part == "trained"]
    conditions = [c for c in CONDITIONS if ((trained.net == c[0]) & (trained.ordering == c[1])).any()]
    methods = [m for m in NAMES if m in set(trained.method)]
    x, bar = np.arange(len(conditions)), 0.8 / len(methods)
    fig, (paper_ax, ours_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, method in enumerate(methods):
        offset = x + (i - (len(methods) - 1) / 2) * bar
        paper = [PAPER.get(f"{net} {ordering}", {}).get(method, np.nan) for net, ordering in conditions]
        paper_ax.bar(offset, paper, bar, label=NAMES[method], color=f"C{i}")
        ours = [100 * trained[(trained.method == method) & (trained.net == net) & (trained.ordering == ordering)].linear_acc
                for net, ordering in conditions]
        ours_ax.bar(offset, [a.mean() for a in ours], bar, label=NAMES[method], color=f"C{i}", alpha=0.7)
        for xi, accs in zip(offset, ours):
            ours_ax.plot([xi] * len(accs), accs, "k.", ms=4)
    for ax, title in ((paper_ax, "paper (ImageNet; no number where absent)"), (ours_ax, "ours (each dot a seed)")):
        ax.set_xticks(x, [condition_label(*c) for c in conditions], fontsize=8)
        ax.set_ylabel("linear-probe accuracy (%)"); ax.set_title(title, fontsize=9)
    ours_ax.set_ylim(max(0, 100 * trained.linear_acc.min() - 5), min(100, 100 * trained.linear_acc.max() + 2))
    fig.legend(*paper_ax.get_legend_handles_labels(), loc="upper center", ncol=len(methods), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def claims(runs: pd.DataFrame, p: dict) -> list[dict]:
    """At the small net: BYOL and MoCo-v3 beat SimSiam (multiple pass) and collapse less; single pass costs them accuracy while
    it helps SimSiam (Fig. 15); going to the small net costs SimSiam more than them (Fig. 9). Linear probe in
    points, paired by seed."""
    trained = runs[runs.part == "trained"]
    at = lambda method, ordering="iid", net="small": dict(method=method, ordering=ordering, net=net)
    points = lambda a, b: [100 * d for d in paired_conditions(trained, "linear_acc", a, b)]
    learned = paired_by_seed(condition_by_seed(trained, "weighted_knn_acc", at("simsiam")),
                             runs[runs.part == "random init"].set_index("seed").weighted_knn_acc)
    out = [beats_random_init(f"SimSiam {p['arch']} w{p['width']}", (100 * learned).tolist())]
    small_net_cost = lambda m: (condition_by_seed(trained, "linear_acc", at(m, net="large"))
                                - condition_by_seed(trained, "linear_acc", at(m)))
    for m in ("byol", "mocov3"):
        if m in p["methods"] and "simsiam" in p["methods"]:
            out.append(claim(f"{m}_beats_simsiam", f"{NAMES[m]} is more accurate than SimSiam at the small net "
                             "(multiple pass).", f"{NAMES[m]} {PAPER['small iid'][m]} against SimSiam "
                             f"{PAPER['small iid']['simsiam']} % ({PAPER['source']})", points(at(m), at("simsiam")), +1,
                             paper_effect=PAPER["small iid"][m] - PAPER["small iid"]["simsiam"],
                             what=f"linear probe, {NAMES[m]} - SimSiam (points)"))
            out.append(claim(f"simsiam_more_collapsed_than_{m}", f"At the small net SimSiam's representation is more "
                             f"collapsed (higher AUC) than {NAMES[m]}'s.", "Fig. 15: MoCo and BYOL do not collapse in "
                             "small models (the paper draws spectra, no AUC)",
                             paired_conditions(trained, "auc", at("simsiam"), at(m)), +1,
                             what=f"AUC, SimSiam - {NAMES[m]} (small net, multiple pass)"))
        if m in p["methods"] and "single" in p["orderings"]:
            out.append(claim(f"single_does_not_help_{m}", f"Single pass costs {NAMES[m]} accuracy (it has no "
                             "collapse to prevent).", f"{NAMES[m]} {PAPER['small single'][m]} single against "
                             f"{PAPER['small iid'][m]} % multiple pass", points(at(m, "single"), at(m)), -1,
                             paper_effect=PAPER["small iid"][m] - PAPER["small single"][m],
                             what=f"linear probe, {NAMES[m]} single - multiple pass (points)"))
        if m in p["methods"] and "simsiam" in p["methods"] and p["wide"]:
            out.append(claim(f"small_net_hurts_simsiam_more_than_{m}", f"The small net costs SimSiam more accuracy "
                             f"than it costs {NAMES[m]} (only SimSiam collapses when under-parameterised).",
                             f"SimSiam {PAPER['large iid']['simsiam']} % at ResNet-50, {PAPER['small iid']['simsiam']} % "
                             f"at ResNet-18; {NAMES[m]} barely drops (Fig. 9: no number given)",
                             (100 * paired_by_seed(small_net_cost("simsiam"), small_net_cost(m))).tolist(), +1,
                             what=f"(SimSiam large - small) - ({NAMES[m]} large - small), linear probe points"))
    return out
