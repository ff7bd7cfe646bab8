"""What is collapse? The opening chapter: the kinds of collapse on spectra the reader can see, the metrics that
tell them apart, and SimSiam without its stop-gradient or its predictor collapsing completely within minutes.

The runs train the capacity chapter's recipe (`capacity_vs_data.config`) on the whole data for a short budget,
with one of SimSiam's two safeguards removed (Chen & He 2021: both are needed, Table 1 and Fig. 2).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..claims import claim, deterministic_check, mean_sd, paired_conditions
from ..config import TrainConfig
from ..errors import UserError
from ..sweep import resolve, run_summaries
from . import capacity_vs_data as capacity

# Its runs break SimSiam on purpose and train a tenth of the regime's budget: a demonstration, not one of the
# papers' settings, so the accuracy fit (`predicting_accuracy`) leaves them out.
DEMONSTRATION = True

# Each variant: SimSiam with the options it changes.
VARIANTS = {"SimSiam": {}, "no stop-gradient": {"stop_grad": False}, "no predictor": {"predictor": "none"}}
# Chen & He's numbers for each removed safeguard: ImageNet linear accuracy falls from SimSiam's 67.7 % to 0.1 %
# (chance), and the std of the l2-normalised output from about 1/sqrt(d) (x sqrt(d): 1) to 0.
PAPER = {"no stop-gradient": "Chen & He (2021), Fig. 2: without the stop-gradient the std of the l2-normalised output "
                             "falls to 0 and linear accuracy from 67.7 % to 0.1 % (ImageNet, ResNet-50)",
         "no predictor": "Chen & He (2021), Table 1: without the predictor linear accuracy falls from 67.7 % to 0.1 %, "
                         "a complete collapse (ImageNet, ResNet-50)"}
PAPER_SPREAD_DROP = 1.0  # normalised std x sqrt(d): from about 1 to 0
PAPER_ACCURACY_DROP = 67.7 - 0.1  # points of linear accuracy

# The claims the chapter's prose names (other `variants` name fewer).
CLAIM_IDS = ("no_stop_gradient_collapses", "no_stop_gradient_less_accurate", "no_predictor_collapses",
             "no_predictor_less_accurate")

RECIPE = tuple(k for k in capacity.PRESETS["quick"] if k not in ("archs", "widths", "deeper_archs", "subsets", "steps"))
PRESETS = {
    "smoke": dict({k: capacity.PRESETS["smoke"][k] for k in RECIPE}, arch="resnet18", width=4, variants=list(VARIANTS),
                  steps=8, monitor_every=2, batch_size=32, image_size=16, eval_train_images=1000, eval_test_images=300),
    # minutes on 2 cores: a tenth of the regime's budget is enough for complete collapse to show
    "quick": dict({k: capacity.PRESETS["quick"][k] for k in RECIPE}, arch="resnet18",
                  width=capacity.PRESETS["quick"]["widths"][0], variants=list(VARIANTS), steps=300, monitor_every=20),
    "paper": dict({k: capacity.PRESETS["paper"][k] for k in RECIPE}, arch="resnet18", width=64, variants=list(VARIANTS),
                  steps=10 * (1_281_167 // 256), monitor_every=500),
}


def config(p: dict, variant: str, seed: int) -> TrainConfig:
    return capacity.config(p, p["arch"], p["width"], 1.0, seed, p["steps"], monitor_every=p["monitor_every"],
                           **VARIANTS[variant])


def configs(p: dict) -> list[TrainConfig]:
    return [config(p, variant, seed) for seed in p["seeds"] for variant in p["variants"]]


def check(p: dict) -> None:
    unknown = sorted(set(p["variants"]) - set(VARIANTS))
    if unknown:
        raise UserError(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    if p["monitor_every"] < 1 or p["steps"] < 2 * p["monitor_every"]:
        raise UserError("parameter monitor_every must be between 1 and steps / 2 (the curves need measurements)")
    resolve(configs(p))


def run_table(p: dict, progress: bool = True) -> pd.DataFrame:
    """One row per run; `projector_spread` is the projector output's normalised std x sqrt(d) (1: spread evenly
    over the sphere, 0: one point), comparable across widths and with Chen & He's d = 2048."""
    summaries = run_summaries(configs(p), p["scale"], progress=progress)
    settings = [dict(variant=v, seed=s) for s in p["seeds"] for v in p["variants"]]
    runs = pd.DataFrame([dict(summary, **setting) for setting, summary in zip(settings, summaries)])
    return runs.assign(projector_spread=runs.projector_normalised_std * np.sqrt(projector_dim(p["width"])))


def projector_dim(width: int) -> int:
    """SimSiam's projector output at base width w (`methods.simsiam`: 32w, the paper's 2048 at 64), which the
    chapter never overrides: the d of its projector's normalised std."""
    return 32 * width


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per variant, mean ± sd over seeds: accuracy, and the collapse of the backbone's features and of the
    projector's output."""
    rows = {}
    for variant, g in runs.groupby("variant", sort=False):
        rows[variant] = {"weighted kNN (%)": mean_sd(g.weighted_knn_acc), "linear probe (%)": mean_sd(g.linear_acc),
                         "AUC": mean_sd(g.auc, 1, 3), "effective rank": mean_sd(g.effective_rank, 1, 1),
                         "rank / d": mean_sd(g.effective_rank_fraction, 1, 2),
                         "normalised std x sqrt(d), features": mean_sd(g.normalised_std * np.sqrt(g.dim), 1, 3),
                         "normalised std x sqrt(d), projector": mean_sd(g.projector_spread, 1, 3)}
    return pd.DataFrame(rows).T.rename_axis("variant")


def synthetic_spectra(d: int = 64, n: int = 1024, seed: int = 0) -> dict[str, torch.Tensor]:
    """Three N x d feature matrices whose collapse is known: every dimension used (isotropic Gaussian), a few
    directions carrying everything (dimensional collapse, 6 of d), and every sample at nearly one point
    (complete collapse: a constant plus rounding-size noise)."""
    rng = np.random.default_rng(seed)
    healthy = rng.standard_normal((n, d))
    few = rng.standard_normal((n, 6)) @ rng.standard_normal((6, d)) + 1e-3 * rng.standard_normal((n, d))
    point = np.ones((n, d)) + 1e-7 * rng.standard_normal((n, d))
    return {name: torch.from_numpy(x) for name, x in
            (("healthy", healthy), ("dimensional collapse", few), ("complete collapse", point))}


def synthetic_reports() -> dict[str, dict]:
    """The collapse report (`diagnose.matrix_report` and its reading) of each synthetic matrix."""
    from ..diagnose import matrix_report, reading

    reports = {}
    for name, features in synthetic_spectra().items():
        report = matrix_report(features, name)
        reports[name] = dict(report, reading=reading(report))
    return reports


def claims(runs: pd.DataFrame, reports: dict[str, dict]) -> list[dict]:
    """Each removed safeguard against SimSiam, paired by seed: the projector output's spread (Chen & He's
    collapse signal) and the linear probe (their accuracy); and the reading of the three synthetic spectra
    (checks)."""
    out = []
    removed = [v for v in runs.variant.unique() if v != "SimSiam"] if "SimSiam" in set(runs.variant) else []
    for variant in removed:
        slug = variant.replace(" ", "_").replace("-", "_")
        against = lambda metric: paired_conditions(runs, metric, dict(variant=variant), dict(variant="SimSiam"))
        out.append(claim(f"{slug}_collapses", f"SimSiam with {variant} collapses: its projector output's normalised "
                         "std falls below SimSiam's.", PAPER[variant], against("projector_spread"), -1,
                         f"normalised std x sqrt(d) of the projector output ({variant} - SimSiam), paired by seed",
                         paper_effect=PAPER_SPREAD_DROP))
        out.append(claim(f"{slug}_less_accurate", f"SimSiam with {variant} is less accurate (linear probe).",
                         PAPER[variant], [100 * d for d in against("linear_acc")], -1,
                         f"linear probe ({variant} - SimSiam, points), paired by seed", paper_effect=PAPER_ACCURACY_DROP))
    for name, report in reports.items():
        out.append(deterministic_check(f"reads_{name.replace(' ', '_')}", f"`diagnose` reads the synthetic {name} "
                                       f"matrix as {name.replace('dimensional', 'partial')}.",
                                       "the thresholds of ssl_src.diagnose", report["effective_rank"],
                                       report["reading"] == name.replace("dimensional", "partial"),
                                       f"reading: {report['reading']} (effective rank {report['effective_rank']:.2f})"))
    return out
