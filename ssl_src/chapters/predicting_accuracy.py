"""Predicting accuracy from collapse and loss (collapse paper, Fig. 12): an ordinary-least-squares model of each
SimSiam run's linear-probe accuracy on its AUC and its final training loss, and how early in training the
same fit already tells a run's fate.

The chapter trains nothing of its own: its runs are every trained SimSiam run of the chapters it draws on
(`chapters`: the book's chapters by default, so it grows as the book does; the search for a scale's probes
join with `chapters=["choosing_a_scale", ...]`), read through the store.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy import stats

from ..claims import claim
from ..errors import UserError
from ..store import find_run
from ..sweep import resolve, run_summaries
from ..config import TrainConfig
from . import chapter_module, resolve_parameters

# The paper's table (Fig. 12): a linear model of ImageNet linear-probe accuracy (%) on AUC and train loss.
MODELS = {"AUC only": ["auc"], "loss only": ["loss"], "both": ["auc", "loss"]}
PAPER = {
    "AUC only": {"R²": 0.21, "Pearson's r": 0.46, "Spearman's ρ": 0.48, "AUC coeff.": -34.7},
    "loss only": {"R²": 0.06, "Pearson's r": 0.24, "Spearman's ρ": 0.09, "Train loss coeff.": -14.9},
    "both": {"R²": 0.95, "Pearson's r": 0.98, "Spearman's ρ": 0.97, "AUC coeff.": -79.5, "Train loss coeff.": -106.0},
    "source": "Fig. 12: SimSiam runs on ImageNet subsets and orderings (the paper does not list them)",
}


def book_chapters() -> list[str]:
    """The book's chapters (`_toc.yml` order) that train runs, so the fit grows as the book does; the search for
    a scale is left out (a study: its probes are not re-trained with the book), so are demonstrations (SimSiam
    broken on purpose, `DEMONSTRATION = True`) and this chapter, which only reads runs."""
    from ..book import chapter_names

    own = __name__.rsplit(".", 1)[-1]
    modules = {name: chapter_module(name) for name in chapter_names() if name != own}
    return [name for name, module in modules.items()
            if hasattr(module, "configs") and not getattr(module, "STUDY", False)
            and not getattr(module, "DEMONSTRATION", False)]


BOOK_CHAPTERS = book_chapters()
ROWS = ["R²", "leave-one-out R²", "Pearson's r", "Spearman's ρ", "AUC coeff.", "Train loss coeff.", "intercept", "runs"]
COEFFICIENT_ROW = {"auc": "AUC coeff.", "loss": "Train loss coeff."}

PRESETS = {
    "smoke": dict(chapters=list(BOOK_CHAPTERS), accuracy="linear_acc", within_arch="resnet18", within_width=4,
                  early_fractions=[0.25, 0.5]),
    "quick": dict(chapters=list(BOOK_CHAPTERS), accuracy="linear_acc", within_arch="resnet18", within_width=4,
                  early_fractions=[0.1, 0.25, 0.5]),
    "paper": dict(chapters=list(BOOK_CHAPTERS), accuracy="linear_acc", within_arch="resnet18", within_width=64,
                  early_fractions=[0.1, 0.25, 0.5]),
}
ACCURACIES = ("linear_acc", "weighted_knn_acc", "knn_acc")


def configs(p: dict) -> list[TrainConfig]:
    """Every trained SimSiam run (steps > 0) of the chapters the fit draws on, at their presets, each once."""
    gathered = []
    for name in p["chapters"]:
        module = chapter_module(name)
        if module is None or not hasattr(module, "configs"):
            raise UserError(f"parameter chapters: chapter {name} trains no runs")
        scale = getattr(module, "DATA_SCALE", {}).get(p["scale"], p["scale"])
        if scale != p["scale"]:
            continue  # a chapter that shows another scale's runs at this one (the search for a scale)
        gathered += module.configs(resolve_parameters(module.PRESETS, scale))
    unique = {json.dumps(cfg.to_dict(), sort_keys=True): cfg for cfg in resolve(gathered)
              if cfg.method == "simsiam" and cfg.steps > 0}
    return list(unique.values())


def check(p: dict) -> None:
    if p["accuracy"] not in ACCURACIES:
        raise UserError(f"parameter accuracy must be one of {', '.join(ACCURACIES)}, got {p['accuracy']!r}")
    if any(not 0 < f < 1 for f in p["early_fractions"]):
        raise UserError(f"parameter early_fractions: every fraction must lie in (0, 1), got {p['early_fractions']}")
    unknown = [name for name in p["chapters"] if chapter_module(name) is None]
    if unknown:
        raise UserError(f"parameter chapters: no chapter module {', '.join(unknown)}")
    if not configs(p):
        raise UserError(f"chapters {', '.join(p['chapters'])} train no SimSiam runs at scale {p['scale']}")


def run_table(p: dict, progress: bool = True) -> pd.DataFrame:
    """One row per run: its setting, the condition it shares with its other seeds, accuracy (%), AUC, final
    loss, and the monitor's AUC and the logged loss at each early fraction of its steps."""
    cfgs = configs(p)
    rows = []
    for cfg, summary in zip(cfgs, run_summaries(cfgs, p["scale"], progress=progress)):
        setting = cfg.to_dict()
        condition = json.dumps({k: v for k, v in setting.items() if k != "seed"}, sort_keys=True)
        stored = find_run(summary["run_id"], p["scale"])
        row = {"run_id": summary["run_id"], "seed": cfg.seed, "condition": condition, "arch": cfg.arch,
               "width": cfg.width, "subset": cfg.subset, "ordering": cfg.ordering, "image_size": cfg.image_size,
               "base_lr": cfg.base_lr, "steps": cfg.steps, "accuracy": 100 * summary[p["accuracy"]],
               "auc": summary["auc"], "loss": summary["loss"]}
        row.update(early_measurements(stored.monitor(), stored.metrics(), cfg.steps, p["early_fractions"]))
        rows.append(row)
    return pd.DataFrame(rows)


def early_measurements(monitor: list[dict], metrics: list[dict], steps: int, fractions: list[float]) -> dict:
    """At each fraction f of the steps: the last monitor AUC and the last logged loss at or before step f x steps
    (NaN where nothing was recorded by then): what a run shows of itself before it ends."""
    out = {}
    for f in fractions:
        until = f * steps
        auc = [r["auc"] for r in monitor if r["step"] <= until]
        loss = [r["loss"] for r in metrics if r["step"] <= until]
        out[f"auc_at_{f:g}"] = auc[-1] if auc else np.nan
        out[f"loss_at_{f:g}"] = loss[-1] if loss else np.nan
    return out


def ols(x: np.ndarray, y: np.ndarray) -> dict:
    """Ordinary least squares of y on the columns of x with an intercept: the coefficients, in-sample R², the
    leave-one-out R² (1 - PRESS / total sum of squares, from the hat matrix: each run predicted by the fit to
    all the others), and Pearson's r and Spearman's ρ between the fitted and the measured y."""
    x, y = np.asarray(x, dtype=float).reshape(len(y), -1), np.asarray(y, dtype=float)
    design = np.column_stack([np.ones(len(y)), x])
    n, k = design.shape
    if n <= k:
        raise ValueError(f"{n} runs cannot fit {k - 1} feature(s) and an intercept with one left out")
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = design @ beta
    residual = y - fitted
    leverage = np.einsum("ij,ji->i", design, np.linalg.pinv(design.T @ design) @ design.T)
    total = float(((y - y.mean()) ** 2).sum())
    # a run that alone decides a coefficient (leverage 1) cannot be predicted from the others
    press = float(((residual / (1 - leverage)) ** 2).sum()) if leverage.max() < 1 - 1e-9 else np.nan
    return {"intercept": float(beta[0]), "coefficients": beta[1:].tolist(), "fitted": fitted,
            "r2": 1 - float((residual ** 2).sum()) / total, "loo_r2": 1 - press / total,
            "pearson": float(stats.pearsonr(fitted, y).statistic), "spearman": float(stats.spearmanr(fitted, y).statistic),
            "n": n}


def fit_table(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's table layout: per model (AUC only, loss only, both) the paper's number beside ours."""
    columns = {}
    for model, features in MODELS.items():
        fit = ols(df[features].to_numpy(), df.accuracy.to_numpy())
        ours = {"R²": fit["r2"], "leave-one-out R²": fit["loo_r2"], "Pearson's r": fit["pearson"],
                "Spearman's ρ": fit["spearman"], "intercept": fit["intercept"], "runs": fit["n"]}
        ours.update({COEFFICIENT_ROW[f]: c for f, c in zip(features, fit["coefficients"])})
        columns[(model, "paper")] = pd.Series(PAPER[model], dtype=float)
        columns[(model, "ours")] = pd.Series(ours, dtype=float)
    return pd.DataFrame(columns).reindex(ROWS)


def one_net(df: pd.DataFrame, p: dict) -> pd.DataFrame:
    """The runs of one network (`within_arch` at `within_width`), where only the data, ordering and budget vary."""
    return df[(df.arch == p["within_arch"]) & (df.width == p["within_width"])]


def scopes(df: pd.DataFrame, p: dict) -> dict[str, pd.DataFrame]:
    """The runs each fit is made on: all of them (across architectures, widths, data, orderings, budgets), and
    those of one network."""
    return {"every run": df, f"{p['within_arch']} at width {p['within_width']} only": one_net(df, p)}


def early_warning(df: pd.DataFrame, fractions: list[float]) -> pd.DataFrame:
    """The fit of final accuracy on AUC and loss measured at each fraction of training (the monitor's AUC on
    its fixed sample, the logged loss), beside the fit on the final ones: how early a run's fate shows. A
    fraction at which too few runs had recorded both is a row of NaN with its count of runs."""
    features = {f"{100 * f:g} % of the steps": [f"auc_at_{f:g}", f"loss_at_{f:g}"] for f in fractions}
    features["end of training"] = ["auc", "loss"]
    rows = {}
    for when, columns in features.items():
        known = df.dropna(subset=columns)
        fit = (ols(known[columns].to_numpy(), known.accuracy.to_numpy()) if len(known) > len(columns) + 1
               else {"r2": np.nan, "loo_r2": np.nan, "spearman": np.nan})
        rows[when] = {"R²": fit["r2"], "leave-one-out R²": fit["loo_r2"], "Spearman's ρ": fit["spearman"],
                      "runs": len(known)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("measured at")


def replicates(df: pd.DataFrame) -> pd.DataFrame:
    """The runs of the conditions every seed has: each seed's runs are one replicate of the whole study."""
    seeds = df.seed.nunique()
    shared = df.groupby("condition").seed.transform("nunique") == seeds
    return df[shared]


def per_seed_fits(df: pd.DataFrame) -> dict[int, dict[str, dict]]:
    """Each seed's three fits on the conditions every seed has (seeds too small to fit are left out)."""
    balanced = replicates(df)
    out = {}
    for seed, runs in balanced.groupby("seed"):
        if len(runs) > len(MODELS["both"]) + 1:
            out[seed] = {m: ols(runs[f].to_numpy(), runs.accuracy.to_numpy()) for m, f in MODELS.items()}
    return out


def claims(df: pd.DataFrame) -> list[dict]:
    """The paper's reading of Fig. 12 as claims, each judged on per-seed fits (a seed's runs of the conditions
    every seed has are one replicate): the out-of-sample R² of the joint model above each single one, and the
    signs of its coefficients. Leave-one-out R², since in-sample R² never falls when a feature is added; a seed
    whose leave-one-out R² is undefined (a run that alone decides a coefficient) is left out of the R² claims.
    The coefficients are judged on their sign only: in points per unit of AUC or loss, their size depends on
    how far AUC and loss vary at a scale."""
    fits = per_seed_fits(df)
    enough = (len(fits) >= 3, f"at least 3 seeds with more than {len(MODELS['both']) + 1} runs of shared conditions "
                              f"({len(fits)} have)")
    loo_gain = lambda single: [g for g in (f["both"]["loo_r2"] - f[single]["loo_r2"] for f in fits.values())
                               if np.isfinite(g)]
    paper = PAPER["both"]
    return [
        claim("both_beat_auc", "Accuracy is predicted better from AUC and loss together than from AUC alone.",
              f"R² {paper['R²']} with both against {PAPER['AUC only']['R²']} with AUC only ({PAPER['source']})",
              loo_gain("AUC only"), +1, paper_effect=paper["R²"] - PAPER["AUC only"]["R²"], precondition=enough,
              what="leave-one-out R²(both) - R²(AUC only), per seed (the paper's: in-sample)"),
        claim("both_beat_loss", "Accuracy is predicted better from AUC and loss together than from the loss alone.",
              f"R² {paper['R²']} with both against {PAPER['loss only']['R²']} with loss only",
              loo_gain("loss only"), +1, paper_effect=paper["R²"] - PAPER["loss only"]["R²"], precondition=enough,
              what="leave-one-out R²(both) - R²(loss only), per seed (the paper's: in-sample)"),
        claim("more_collapse_less_accuracy", "In the joint model, a higher AUC (more collapse) predicts a lower accuracy.",
              f"AUC coefficient {paper['AUC coeff.']} (accuracy points per unit of AUC)",
              [f["both"]["coefficients"][0] for f in fits.values()], -1, precondition=enough,
              what="AUC coefficient of the joint model (points per unit AUC), per seed"),
        claim("lower_loss_more_accuracy", "In the joint model, a lower training loss predicts a higher accuracy.",
              f"train-loss coefficient {paper['Train loss coeff.']} (accuracy points per unit of loss)",
              [f["both"]["coefficients"][1] for f in fits.values()], -1, precondition=enough,
              what="loss coefficient of the joint model (points per unit loss), per seed"),
    ]
