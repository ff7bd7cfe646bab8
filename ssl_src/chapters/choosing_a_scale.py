"""Choosing a scale: the search for a CPU regime in which the collapse paper's effects can show.

A probe is a question and the grid of SimSiam settings that answers it; each setting is a recipe (one of
the named constants below, never edited once its runs are published) with some of its values changed.
The training budget is counted in epochs of the *pool*, the part of Fashion-MNIST's 60k training images
that plays "100 %"; `fraction` is the subset of the pool a run trains on, at the pool's step budget (the
paper's equal-step-budget design: a 1 % subset sees 100 times more epochs of its images).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..augment import GREY_SMALL
from ..claims import paired_by_seed
from ..store import find_run
from ..sweep import resolve, run_summaries
from ..config import TrainConfig
from . import LEARNED_MARGIN, PRECISION, beats_random_init, learned_features

FASHION_MNIST_TRAIN = 60_000

# The quick recipe the chapters used before this study (capacity chapter, 1000 steps = 2 epochs of 60k).
RECIPE_V0 = dict(arch="resnet18", width=8, image_size=20, pool=1.0, fraction=1.0, epochs=5.0, batch_size=128,
                 base_lr=0.05, weight_decay=5e-4, warmup_steps=50, ordering="iid", seed=0)
# solo-learn's CIFAR learning rate and weight decay: the fastest learner of the learning-rate probe.
RECIPE_V1 = dict(RECIPE_V0, base_lr=0.5, weight_decay=1e-5)

# The regime the signatures are judged at (chosen from the capacity map; the probes that give it 3 seeds
# train the same settings with seeds 1 and 2).
REGIME = dict(recipe=RECIPE_V1, narrow=4, wide=8, small=0.01, middle=0.1, large=1.0, deep="resnet34")


@dataclass(frozen=True)
class Probe:
    """A question, the settings that answer it, and the axes its figure draws (`curves`: the learning curves
    of every run that differs from the probe's settings only along its axes, one line per run; `map`: heat
    maps over axes[0] x axes[1], the mean over every seed trained at those values; `none`: its runs add
    seeds to another probe's figure)."""

    question: str
    settings: tuple[dict, ...]
    figure: str = "curves"
    axes: tuple[str, ...] = ()


def grid(recipe: dict, **axes) -> tuple[dict, ...]:
    """Every combination of the axes' values laid over the recipe."""
    names = list(axes)
    return tuple(dict(recipe, **dict(zip(names, values))) for values in itertools.product(*axes.values()))


PROBES = {
    "learning_rate": Probe(
        "How fast does SimSiam learn at the old quick recipe's lr (0.05 x 128/256) and at the larger rates "
        "of lightly's (0.06 unscaled) and solo-learn's (0.5 x batch/256, weight decay 1e-5) CIFAR recipes?",
        grid(RECIPE_V0, base_lr=[0.05, 0.12, 0.5]) + grid(RECIPE_V0, base_lr=[0.5], weight_decay=[1e-5]),
        axes=("base_lr", "weight_decay")),
    "capacity_map": Probe(
        "Where is a net short of capacity for its data? Width x fraction of the pool at an equal step budget "
        "(5 epochs of 60k): the paper's signature is an AUC that rises with data for narrow nets only.",
        grid(RECIPE_V1, width=[2, 4, 8], fraction=[0.01, 0.1, 1.0]), figure="map", axes=("width", "fraction")),
    "depth": Probe(
        "Does depth at equal width collapse more (supplement Fig. 1)? ResNet-34 against ResNet-18 at width 4 "
        "on the whole pool, 3 seeds (the ResNet-18 runs: capacity map and seeds).",
        grid(RECIPE_V1, arch=["resnet34"], width=[4], seed=[0, 1, 2]), axes=("arch", "seed")),
    "ordering": Probe(
        "Does single-pass training (the pool cut into the authors' 100 chunks of 1 %, each trained for its "
        "share of the steps and never again) collapse the narrow net less than multiple passes (Fig. 14)? "
        "The data-ordering chapter's single-pass runs.",
        grid(dict(RECIPE_V1, chunks=100), width=[4], ordering=["single"], seed=[0, 1, 2]), axes=("ordering", "seed")),
    "seeds": Probe(
        "Seeds 1 and 2 of the narrow net's column of the capacity map: three seeds for signatures (a) and (b).",
        grid(RECIPE_V1, width=[4], fraction=[0.01, 0.1, 1.0], seed=[1, 2]), figure="none"),
    "seeds_wide": Probe(
        "Seeds 1 and 2 of the wide net's column: three seeds for the contrast of (a).",
        grid(RECIPE_V1, width=[8], fraction=[0.01, 0.1, 1.0], seed=[1, 2]), figure="none"),
    "budget": Probe(
        "Does the narrow net beat the raw pixels with five times the budget? 25 epochs of 60k at 20 px, and at "
        "16 px (0.64 of the pixels, so of the convolution work).",
        grid(RECIPE_V1, width=[4], epochs=[25.0], image_size=[20, 16]), axes=("epochs", "image_size")),
}

PRESETS = {
    # smoke: every probe's grid, each run shrunk to a few steps on a small net (checks the pipeline only)
    "smoke": dict(probes=list(PROBES), settings_per_probe=2, steps=4, batch_size=32, image_size=16, width=0,
                  eval_train_images=1000, eval_test_images=300),
    # quick: every probe, its runs published (a new probe trains with `python -m ssl_src runs choosing_a_scale`
    # and is published before it joins; until then the test of the quick book fails)
    "quick": dict(probes=list(PROBES), settings_per_probe=0, steps=0, batch_size=0, image_size=0,
                  width=0, eval_train_images=0, eval_test_images=0),
}
# The search is about the CPU: at the paper scale the chapter shows the quick search (the notebook resolves
# its parameters at DATA_SCALE[scale]; the paper preset exists so a paper-scale book validates it).
PRESETS["paper"] = PRESETS["quick"]
DATA_SCALE = {"smoke": "smoke", "quick": "quick", "paper": "quick"}
# A study, not a chapter of the papers: its probes' cost is its own, outside the book's re-train budget (the
# runs a chapter shares with it count in the chapter's).
STUDY = True

SETTING_COLUMNS = ("probe", "arch", "width", "image_size", "pool", "fraction", "epochs", "batch_size", "base_lr",
                   "weight_decay", "warmup_steps", "ordering", "seed")


def steps_of(setting: dict) -> int:
    """The step budget: `epochs` of the pool at the batch size (0 epochs: the network at initialisation)."""
    return round(setting["epochs"] * setting["pool"] * FASHION_MNIST_TRAIN / setting["batch_size"])


def _shrunk(setting: dict, p: dict) -> dict:
    """The setting with the preset's non-zero overrides (smoke: tiny nets and batches)."""
    return dict(setting, **{k: p[k] for k in ("batch_size", "image_size", "width") if p[k]})


def config(setting: dict, p: dict) -> TrainConfig:
    """A setting's SimSiam run. Orderings other than iid cut the pool into the setting's `chunks`, by default
    one per epoch of the budget; a hybrid switches to iid at its `switch` fraction of the steps."""
    s = _shrunk(setting, p)
    steps = min(steps_of(s), p["steps"]) if p["steps"] else steps_of(s)
    # no more chunks than steps (the smoke preset's cap), so each chunk gets a step
    chunks = min(s.get("chunks", max(1, round(s["epochs"]))), max(1, steps)) if s["ordering"] != "iid" else 0
    return TrainConfig(
        method="simsiam", arch=s["arch"], width=s["width"], dataset="fashion_mnist", image_size=s["image_size"],
        subset=s["pool"] * s["fraction"], ordering=s["ordering"], chunks=chunks,
        switch=s.get("switch", 0.4) if s["ordering"] == "hybrid" else 0.4,
        steps=steps, batch_size=s["batch_size"], seed=s["seed"], base_lr=s["base_lr"], weight_decay=s["weight_decay"],
        warmup_steps=s["warmup_steps"], proj_layers=2, bn_views="joint", augment=GREY_SMALL,
        eval_train_images=p["eval_train_images"], eval_test_images=p["eval_test_images"], precision=PRECISION[p["scale"]])


def settings(p: dict) -> list[dict]:
    """The random-init network (0 epochs: evaluated, not trained) of each distinct arch, width, image size and
    seed among the probes' settings, the baseline every trained net is measured against; then every probe's
    settings, in the order the probes were run."""
    first = lambda settings: settings[: p["settings_per_probe"]] if p["settings_per_probe"] else settings
    trained = [dict(s, probe=name) for name in p["probes"] for s in first(PROBES[name].settings)]
    nets = dict.fromkeys((s["arch"], s["width"], s["image_size"], s["seed"]) for s in trained)
    return [dict(REGIME["recipe"], arch=a, width=w, image_size=i, seed=seed, epochs=0.0, probe="random init")
            for a, w, i, seed in nets] + trained


def configs(p: dict) -> list[TrainConfig]:
    return [config(s, p) for s in settings(p)]


def check(p: dict) -> None:
    from ..errors import UserError

    unknown = sorted(set(p["probes"]) - set(PROBES))
    if unknown:
        raise UserError(f"unknown probe(s) {', '.join(unknown)}; valid: {', '.join(PROBES)}")
    resolve(configs(p))


SUMMARY_COLUMNS = ("weighted_knn_acc", "knn_acc", "linear_acc", "auc", "effective_rank", "effective_rank_fraction", "loss", "steps",
                   "train_seconds", "eval_seconds", "pairs_per_s", "run_id")


def probe_table(p: dict, progress: bool = True) -> pd.DataFrame:
    """One row per setting: its values, its run's summary (trained here or read from the published set), and
    its weighted kNN in points above the raw pixels at its image size and above its random-init network."""
    from . import raw_pixels

    rows = settings(p)
    cfgs = [config(s, p) for s in rows]
    summaries = run_summaries(cfgs, p["scale"], progress=progress)
    table = pd.DataFrame([dict({k: s[k] for k in SETTING_COLUMNS}, **{k: r.get(k) for k in SUMMARY_COLUMNS})
                          for s, r in zip(rows, summaries)])
    for column in ("batch_size", "image_size", "width"):  # as trained, after the smoke preset's shrinking
        table[column] = [getattr(c, column) for c in cfgs]
    raw = {size: raw_pixels(dict(dataset="fashion_mnist", image_size=size, eval_train_images=p["eval_train_images"],
                                 eval_test_images=p["eval_test_images"], scale=p["scale"]))["weighted_knn_acc"]
           for size in table.image_size.unique()}
    net = ["arch", "width", "image_size", "seed"]
    random_init = table[table.probe == "random init"].drop_duplicates(net).set_index(net).weighted_knn_acc
    table["weighted_knn_points"] = 100 * table.weighted_knn_acc
    table["above_raw_pixels"] = 100 * (table.weighted_knn_acc - table.image_size.map(raw))
    table["above_random_init"] = 100 * (table.weighted_knn_acc - random_init.reindex(pd.MultiIndex.from_frame(table[net])).values)
    return table


def learning_curves(table: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Each run's curves, long format by monitored step: the monitor's small weighted kNN (where recorded),
    AUC and effective rank, the training loss logged nearest that step, and the step in epochs of the pool."""
    frames = []
    for row in table.itertuples():
        run = find_run(row.run_id, scale)
        monitor = pd.DataFrame(run.monitor()).reindex(columns=["step", "weighted_knn20_acc", "auc", "effective_rank"])
        losses = pd.DataFrame(run.metrics()).reindex(columns=["step", "loss"]).dropna()
        if len(losses):
            monitor = pd.merge_asof(monitor.sort_values("step"), losses.sort_values("step"), on="step", direction="nearest")
        steps_per_epoch = row.pool * FASHION_MNIST_TRAIN / row.batch_size
        frames.append(monitor.reindex(columns=["step", "weighted_knn20_acc", "auc", "effective_rank", "loss"])
                      .assign(run_id=row.run_id, epoch=lambda m: m.step / steps_per_epoch))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def label(row, axes) -> str:
    """A run's values along some axes, for a legend: "width 4, fraction 0.1"."""
    return ", ".join(f"{a} {getattr(row, a):g}" if isinstance(getattr(row, a), float) else f"{a} {getattr(row, a)}"
                     for a in axes)


MAP_PANELS = (("auc", "AUC (higher = more collapsed)", "magma_r"),
              ("effective_rank_fraction", "effective rank / d (lower = more collapsed)", "magma"),
              ("weighted_knn_acc", "weighted kNN accuracy", "viridis"))
CURVE_PANELS = (("weighted_knn20_acc", "monitor's weighted kNN (k = 20)"), ("auc", "AUC (monitor probe set)"),
                ("effective_rank", "effective rank (monitor probe set)"), ("loss", "training loss"))


def plot_probe(name: str, table: pd.DataFrame, p: dict):
    """The probe's figure: heat maps over its two axes of the final AUC, effective rank / d (AUC grows with
    the representation's dimension d, so widths compare better by the fraction) and weighted kNN (mean over
    seeds); or its runs' learning curves against epochs of the pool."""
    import matplotlib.pyplot as plt

    probe = PROBES[name]
    if probe.figure == "none":
        return None
    rows = figure_rows(table, name, p)
    if probe.figure == "map":
        fig, axes = plt.subplots(1, len(MAP_PANELS), figsize=(14, 3.6))
        for ax, (metric, title, cmap) in zip(axes, MAP_PANELS):
            values = rows.groupby(list(probe.axes))[metric].mean().unstack()
            image = ax.imshow(values.values, cmap=cmap, aspect="auto", origin="lower")
            ax.set_xticks(range(values.shape[1]), [f"{v:g}" for v in values.columns])
            ax.set_yticks(range(values.shape[0]), [f"{v:g}" for v in values.index])
            ax.set_xlabel(probe.axes[1]); ax.set_ylabel(probe.axes[0]); ax.set_title(title, fontsize=10)
            for (i, j), value in np.ndenumerate(values.values):
                r, g, b, _ = image.cmap(image.norm(value))  # dark text on light cells, light on dark
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8,
                        color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
            fig.colorbar(image, ax=ax)
    else:
        curves = learning_curves(rows, p["scale"])
        fig, axes = plt.subplots(1, len(CURVE_PANELS), figsize=(16, 3.4), sharex=True)
        keys = [a for a in probe.axes if a != "seed"]  # one colour per value of the axes; its seeds share it
        colours = {}
        for row in rows.itertuples():
            curve, legend = curves[curves.run_id == row.run_id], label(row, keys)
            colour = colours.setdefault(legend, f"C{len(colours)}")
            for ax, (metric, _) in zip(axes, CURVE_PANELS):
                ax.plot(curve.epoch, curve[metric], c=colour, lw=1.2, alpha=0.8,
                        label=legend if ax is axes[0] and legend not in ax.get_legend_handles_labels()[1] else None)
        for ax, (_, title) in zip(axes, CURVE_PANELS):
            ax.set_xlabel("epochs of the pool"); ax.set_title(title, fontsize=10)
        axes[0].legend(fontsize=8)
    fig.suptitle(name.replace("_", " "), fontsize=11)
    fig.tight_layout()
    return fig


def figure_rows(table: pd.DataFrame, name: str, p: dict) -> pd.DataFrame:
    """The trained runs (any probe's) that share every value the probe's settings have in common, except
    along the probe's axes and the seed: a probe's figure shows its runs beside their counterparts."""
    probe = PROBES[name]
    free = set(probe.axes) | {"seed", "probe"}
    common = {k: v for k, v in probe.settings[0].items()
              if k in SETTING_COLUMNS and k not in free and all(s[k] == v for s in probe.settings)}
    common = {k: _shrunk(common, p)[k] for k in common}
    trained = table[table.probe != "random init"]
    match = np.logical_and.reduce([trained[k] == v for k, v in common.items()]) if common else True
    return trained[match].drop_duplicates("run_id")


def cpu_hours(table: pd.DataFrame, scale: str) -> float:
    """Core-hours of the table's runs (training and evaluation, from their provenance), each run once."""
    from . import core_hours

    return core_hours([find_run(run_id, scale) for run_id in table.run_id.unique()])


def runs_at(table: pd.DataFrame, setting: dict, metric: str) -> pd.Series:
    """`metric` by seed of the trained runs whose values match `setting` (a run shared by two probes once)."""
    match = np.logical_and.reduce([table[k] == v for k, v in setting.items() if k in SETTING_COLUMNS and k != "seed"])
    rows = table[match & (table.probe != "random init")].drop_duplicates("run_id")
    return rows.set_index("seed")[metric].sort_index()


def paired(table: pd.DataFrame, a: dict, b: dict, metric: str) -> pd.Series:
    """Per-seed metric(a) - metric(b), over the seeds both settings have."""
    return paired_by_seed(runs_at(table, a, metric), runs_at(table, b, metric))


PAPER_AUC_RISE = 0.86 - 0.61  # ResNet-18, 1 % -> 100 % of ImageNet (the authors' released spectra)


def signature_claims(table: pd.DataFrame, regime: dict, p: dict) -> list[dict]:
    """The learned-features conditions and the paper's signatures (a)-(d) at a regime: {"recipe", "narrow",
    "wide" (widths), "small", "middle", "large" (fractions of the pool), "deep" (an arch)}, shrunk as the
    preset shrinks its runs."""
    from ..claims import claim

    narrow = _shrunk(dict(regime["recipe"], width=regime["narrow"]), p)
    wide = _shrunk(dict(regime["recipe"], width=regime["wide"]), p)
    small, middle, large = regime["small"], regime["middle"], regime["large"]
    at = lambda base, **values: dict(base, **values)
    name = lambda s: f"{s['arch']} w{s['width']}"
    full = at(narrow, fraction=large)
    rise = lambda s: paired(table, at(s, fraction=large), at(s, fraction=small), "auc")
    narrow_rise, wide_rise = rise(narrow), rise(wide)
    return [
        learned_features(name(full), "raw_pixels", "the raw pixels", runs_at(table, full, "above_raw_pixels").dropna().tolist()),
        beats_random_init(name(full), runs_at(table, full, "above_random_init").dropna().tolist()),
        claim("a_narrow_auc_rises_with_data", f"(a) At an equal step budget, {name(narrow)} collapses more (higher "
              f"AUC) on {large:g} of the pool than on {small:g}.", "ResNet-18 AUC 0.61 at 1 % -> 0.86 at 100 % of "
              "ImageNet (Fig. 11)", narrow_rise, +1, f"AUC(fraction {large:g}) - AUC(fraction {small:g})",
              paper_effect=PAPER_AUC_RISE),
        claim("a_narrow_rises_more_than_wide", f"(a) The AUC of {name(narrow)} rises with data more than that of "
              f"{name(wide)}.", "small nets collapse with more data, large nets do not (Fig. 10)",
              paired_by_seed(narrow_rise, wide_rise), +1,
              f"AUC rise of w{regime['narrow']} - AUC rise of w{regime['wide']}, by seed (AUC grows with the "
              "representation's dimension, so each rise is measured within one width)"),
        claim("b_narrow_accuracy_drops_with_data", f"(b) {name(narrow)} is less accurate trained on {large:g} of "
              f"the pool than on {middle:g}, at an equal step budget.", "ResNet-18 accuracy falls at 100 % of "
              "ImageNet (Fig. 10, Table 2)", paired(table, full, at(narrow, fraction=middle), "weighted_knn_points"),
              -1, f"weighted kNN (points), fraction {large:g} - fraction {middle:g}"),
        claim("c_deeper_collapses_more", f"(c) {regime['deep']} at width {regime['narrow']} collapses more than "
              f"{name(narrow)}.", "ResNet-34 more collapsed than ResNet-18 at equal width (supplement Fig. 1)",
              paired(table, at(full, arch=regime["deep"]), full, "auc"), +1, f"AUC({regime['deep']}) - AUC({narrow['arch']})"),
        claim("d_single_pass_less_collapsed", f"(d) Single-pass training collapses {name(narrow)} less than "
              "multiple passes.", "single pass and hybrid less collapsed than multiple pass (Fig. 14)",
              paired(table, at(full, ordering="single"), full, "auc"), -1, "AUC(single pass) - AUC(multiple pass)"),
        claim("d_single_pass_more_accurate", f"(d) Single-pass training makes {name(narrow)} more accurate than "
              "multiple passes.", "single pass 44.5 % vs multiple pass 30.0 % linear, ResNet-18 (Table 2)",
              paired(table, at(full, ordering="single"), full, "weighted_knn_points"), +1,
              "weighted kNN (points), single pass - multiple pass"),
    ]


def data_trends(runs: pd.DataFrame) -> pd.DataFrame:
    """Per width of a width x fraction set of runs (mean over seeds): AUC, effective rank / d and weighted kNN
    at the smallest and the largest fraction, and their change with data (the paper: AUC up, kNN down for
    narrow nets)."""
    out = {}
    for width, group in runs.drop_duplicates("run_id").groupby("width"):
        by_fraction = group.groupby("fraction")[["auc", "effective_rank_fraction", "weighted_knn_points"]].mean()
        small, large = by_fraction.iloc[0], by_fraction.iloc[-1]
        out[width] = {"AUC small": small.auc, "AUC large": large.auc, "AUC change": large.auc - small.auc,
                      "eff. rank / d small": small.effective_rank_fraction,
                      "eff. rank / d large": large.effective_rank_fraction,
                      "kNN small": small.weighted_knn_points, "kNN large": large.weighted_knn_points,
                      "kNN change": large.weighted_knn_points - small.weighted_knn_points,
                      "seeds": int(group.seed.nunique())}
    return pd.DataFrame(out).T.rename_axis("width")


def budget_to_beat_raw_pixels(table: pd.DataFrame, regime: dict, p: dict) -> dict:
    """The narrow net on the whole pool (the regime's recipe at every budget trained): its mean weighted kNN
    above the raw pixels per budget, and the budget in epochs at which it would beat them by LEARNED_MARGIN:
    the smallest trained budget that does, else the line through the two largest budgets in log(epochs)
    extended (infinite when accuracy does not grow with the budget); and the training hours a run of that
    budget would take at the trained runs' speed."""
    narrow = _shrunk(dict(regime["recipe"], width=regime["narrow"], fraction=regime["large"]), p)
    fixed = {k: v for k, v in narrow.items() if k in SETTING_COLUMNS and k not in ("epochs", "seed", "probe")}
    trained = table[(table.probe != "random init") & (table.epochs > 0)].drop_duplicates("run_id")
    runs = trained[np.logical_and.reduce([trained[k] == v for k, v in fixed.items()])]
    by_budget = runs.groupby("epochs").above_raw_pixels.mean().dropna()
    beats = by_budget[by_budget > LEARNED_MARGIN]
    if len(beats):
        needed, how = float(beats.index.min()), "trained"
    elif len(by_budget) >= 2:
        (e0, a0), (e1, a1) = by_budget.iloc[-2:].items()
        per_log = (a1 - a0) / (np.log(e1) - np.log(e0))
        needed = float(e1 * np.exp((LEARNED_MARGIN - a1) / per_log)) if per_log > 0 else float("inf")
        how = "extrapolated"
    else:
        needed, how = float("nan"), "not measured"
    hours_per_epoch = float((runs.train_seconds / runs.epochs).mean() / 3600) if len(runs) else float("nan")
    return {"points_above_raw_by_epochs": by_budget.round(3).to_dict(), "epochs_needed": needed, "how": how,
            "hours_per_run": needed * hours_per_epoch, "width": narrow["width"], "image_size": narrow["image_size"]}


def chosen_presets() -> pd.DataFrame:
    """What each chapter of the book that trains nets runs at the quick scale, read from its own configs: the
    presets this search chose (the Li et al. chapters train at the regime, the Tian et al. ones at its budget)."""
    from ..book import chapter_names
    from . import chapter_module, resolve_parameters

    rows = {}
    modules = [chapter_module(name) for name in chapter_names()]
    for module in [m for m in modules if hasattr(m, "configs") and not getattr(m, "STUDY", False)]:
        cfgs = module.configs(resolve_parameters(module.PRESETS, "quick"))
        trained = [c for c in cfgs if c.steps > 0]
        values = lambda field: ", ".join(f"{v:g}" if isinstance(v, float) else str(v)
                                         for v in sorted({getattr(c, field) for c in trained}))
        rows[module.__name__.rsplit(".", 1)[-1]] = {
            "method": values("method"), "arch": values("arch"), "width": values("width"),
            "image size": values("image_size"), "steps": values("steps"),
            "epochs of 60k": round(trained[0].steps * trained[0].batch_size / FASHION_MNIST_TRAIN, 2),
            "base lr": values("base_lr"), "weight decay": values("weight_decay"),
            "seeds": len({c.seed for c in trained}), "trained runs": len(trained)}
    return pd.DataFrame(rows).T


def findings(table: pd.DataFrame, regime: dict, p: dict) -> dict:
    """The numbers the chapter's summary quotes: the best trained net (weighted kNN, and its margin over the
    raw pixels and its random init), and the narrow and wide nets' AUC and kNN change with data in the
    capacity map (every seed trained)."""
    trained = table[(table.probe != "random init") & table.weighted_knn_points.notna()]
    best = trained.loc[trained.weighted_knn_points.idxmax()] if len(trained) else None
    trends = data_trends(figure_rows(table, "capacity_map", p))
    narrow, wide = (_shrunk(dict(regime["recipe"], width=regime[k]), p)["width"] for k in ("narrow", "wide"))
    pick = lambda width, column: float(trends.loc[width, column]) if width in trends.index else float("nan")
    best_value = lambda column: float(best[column]) if best is not None else float("nan")
    return {"best_knn": best_value("weighted_knn_points"), "best_above_raw": best_value("above_raw_pixels"),
            "best_above_random": best_value("above_random_init"),
            "best_setting": label(best, ("probe", "width", "epochs", "image_size", "base_lr")) if best is not None else "none",
            "narrow": narrow, "wide": wide, "narrow_auc_change": pick(narrow, "AUC change"),
            "wide_auc_change": pick(wide, "AUC change"), "narrow_knn_change": pick(narrow, "kNN change"),
            "wide_knn_change": pick(wide, "kNN change"), "runs": int(table.run_id.nunique()),
            "cpu_hours": cpu_hours(table, p["scale"])}
