"""Baselines the collapse paper ruled out (supplement Table 2 and sections 3.1-3.2): is SimSiam's deficit at the
small net a missing learning-rate warmup, would a nearest-neighbour target fix it, and do Vision Transformers,
another small representation, fare better?

Every run trains the capacity chapter's recipe with one thing changed (the warmup, the method, or the
architecture with the ViTs' optimizer); the SimSiam runs it is compared with are the capacity, data-ordering and
search chapters' own.
"""
from __future__ import annotations

import pandas as pd

from ..claims import claim, mean_sd, paired_conditions
from ..config import TrainConfig
from ..errors import UserError
from ..models import VITS
from ..sweep import resolve, run_summaries
from . import beats_random_init
from . import capacity_vs_data as capacity
from . import data_ordering

# ImageNet linear probe (%), 100 epochs. Supplement Table 2 (warmup), section 3.2 (NNSiam) and Table 2 of the
# paper (the orderings NNSiam is set against); section 3.1 gives the ViTs "about 6-10 %" without a table.
PAPER = {
    "resnet18": {"iid": 30.01, "warmup": 28.38, "single": 44.5, "hybrid": 48.3, "nnsiam": 34.4},
    "resnet34": {"iid": 16.83, "warmup": 35.82},
    "vit": 8.0,  # the middle of "about 6-10 %"
    "source": "supplement Table 2 and sections 3.1-3.2; Table 2 (orderings); ImageNet linear probe, 100 epochs",
}
NAMES = {"iid": "SimSiam", "warmup": "SimSiam + 10 % warmup", "nnsiam": "NNSiam", "single": "SimSiam, single pass",
         "hybrid": "SimSiam, hybrid", "vit": "SimSiam ViT"}
# The ViTs' recipe (the paper's, from MoCo-v3): AdamW, lr 1.5e-4 x batch/256, weight decay 0.1, 10 % warmup,
# frozen patch projection (the backbone's default).
VIT_RECIPE = dict(optimizer="adamw", lr=1.5e-4, weight_decay=0.1)

PRESETS = {
    name: dict(data_ordering.recipe(name), arch=data_ordering.PRESETS[name]["narrow_arch"],
               deep_arch="resnet34", width=data_ordering.PRESETS[name]["narrow"], warmup_fraction=0.1,
               chunks=data_ordering.PRESETS[name]["chunks"], switch=0.4, vits=list(VITS),
               vit_width=data_ordering.PRESETS[name]["narrow"], seeds=[0, 1, 2])
    for name in ("smoke", "quick", "paper")
}
# smoke: the data-ordering chapter's tiny runs (so the two share them) and the shallowest ViT only
PRESETS["smoke"].update({k: data_ordering.PRESETS["smoke"][k] for k in (
    "steps", "batch_size", "image_size", "eval_train_images", "eval_test_images")}, vits=["vit_small_d3"])


def settings(p: dict) -> list[dict]:
    """Per seed: the random-init nets; SimSiam on the whole data in multiple pass (the capacity chapter's and
    the search's runs), with the 10 % warmup, single pass and hybrid (the data-ordering chapter's); NNSiam; and
    every ViT."""
    out = []
    for s in p["seeds"]:
        for arch in (p["arch"], p["deep_arch"]):
            out += [dict(arch=arch, variant=v, seed=s) for v in ("random init", "iid", "warmup")]
        out += [dict(arch=p["arch"], variant=v, seed=s) for v in ("single", "hybrid", "nnsiam")]
        out += [dict(arch=vit, variant=v, seed=s) for vit in p["vits"] for v in ("random init", "vit")]
    return out


def config(p: dict, s: dict) -> TrainConfig:
    steps = 0 if s["variant"] == "random init" else p["steps"]
    if s["arch"] in VITS:
        vit = dict(p, lr=VIT_RECIPE["lr"], weight_decay=VIT_RECIPE["weight_decay"],
                   warmup_steps=round(p["warmup_fraction"] * p["steps"]))
        # stem="cifar": no ResNet stem (the ViT patchifies itself), at every scale, ImageNet's included
        return capacity.config(vit, s["arch"], p["vit_width"], 1.0, s["seed"], steps, optimizer=VIT_RECIPE["optimizer"],
                               stem="cifar")
    if s["variant"] in ("single", "hybrid"):
        return data_ordering.config(p, dict(s, width=p["width"], ordering=s["variant"], switch=p["switch"], part="table"))
    if s["variant"] == "warmup":
        return capacity.config(dict(p, warmup_steps=round(p["warmup_fraction"] * p["steps"])), s["arch"], p["width"],
                               1.0, s["seed"], steps)
    return capacity.config(p, s["arch"], p["width"], 1.0, s["seed"], steps, **(
        dict(method="nnsiam") if s["variant"] == "nnsiam" else {}))


def configs(p: dict) -> list[TrainConfig]:
    return [config(p, s) for s in settings(p)]


def check(p: dict) -> None:
    unknown = sorted(set(p["vits"]) - set(VITS))
    if unknown:
        raise UserError(f"unknown ViT(s) {', '.join(unknown)}; valid: {', '.join(VITS)}")
    if not 0 < p["warmup_fraction"] < 1:
        raise UserError(f"warmup_fraction must lie in (0, 1), got {p['warmup_fraction']}")
    resolve(configs(p))


def run_table(p: dict, progress: bool = True) -> pd.DataFrame:
    summaries = run_summaries(configs(p), p["scale"], progress=progress)
    return pd.DataFrame([dict(summary, **s) for s, summary in zip(settings(p), summaries)])


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Linear-probe accuracy (%) of every trained variant, mean +- sd over seeds, beside the paper's."""
    trained = runs[runs.variant != "random init"]
    rows = []
    for (arch, variant), g in trained.groupby(["arch", "variant"], sort=False):
        paper = PAPER["vit"] if variant == "vit" else PAPER.get(arch, {}).get(variant)
        rows.append({"net": arch, "training": NAMES[variant], "linear acc, paper (%)": paper,
                     "linear acc, ours (%)": mean_sd(g.linear_acc), "AUC": f"{g.auc.mean():.3f}",
                     "effective rank / d": f"{g.effective_rank_fraction.mean():.2f}"})
    return pd.DataFrame(rows).set_index(["net", "training"])


def claim_ids(p: dict) -> list[str]:
    """The id of every claim `claims` makes for the parameters' ViTs."""
    return ["beats_random_init", "warmup_does_not_help_resnet18", "warmup_helps_resnet34", "hybrid_beats_warmup",
            "nnsiam_beats_simsiam", "nnsiam_below_single_pass", "nnsiam_below_hybrid"] + [f"{v}_below_resnet18" for v in p["vits"]]


def accuracies(runs: pd.DataFrame) -> dict[str, float]:
    """Linear-probe accuracy (%) of every trained net the verdict names, `acc_<arch>_<variant>`, mean over seeds;
    NaN for a net the parameters left out (the smoke preset trains one ViT), so the page still renders."""
    named = [("resnet18", v) for v in ("iid", "warmup", "nnsiam", "single", "hybrid")] + [
        ("resnet34", v) for v in ("iid", "warmup")] + [(vit, "vit") for vit in VITS]
    means = runs[runs.kind == "trained"].groupby(["arch", "variant"]).linear_acc.mean() * 100
    return {f"acc_{arch}_{variant}": float(means.get((arch, variant), float("nan"))) for arch, variant in named}


def claims(runs: pd.DataFrame, p: dict) -> list[dict]:
    """The paper's reading of each baseline, as paired differences of linear-probe points."""
    at = lambda variant, arch=p["arch"]: dict(arch=arch, variant=variant)
    points = lambda a, b: [100 * d for d in paired_conditions(runs, "linear_acc", a, b)]
    r18, r34 = PAPER["resnet18"], PAPER["resnet34"]
    learned = paired_conditions(runs, "weighted_knn_acc", at("warmup"), at("random init"))
    out = [beats_random_init(f"SimSiam {p['arch']} w{p['width']} with warmup", [100 * d for d in learned])]
    for claim_id, statement, paper, a, b, direction, effect in [
        ("warmup_does_not_help_resnet18", "A 10 % learning-rate warmup does not lift the small ResNet-18 (it lowers "
         "its accuracy).", f"{r18['warmup']} with warmup against {r18['iid']} %", at("warmup"), at("iid"), -1,
         r18["iid"] - r18["warmup"]),
        ("warmup_helps_resnet34", "A 10 % warmup lifts the deeper ResNet-34.", f"{r34['warmup']} with warmup against "
         f"{r34['iid']} %", at("warmup", p["deep_arch"]), at("iid", p["deep_arch"]), +1, r34["warmup"] - r34["iid"]),
        ("hybrid_beats_warmup", "The hybrid ordering beats SimSiam with warmup (ResNet-18).", f"{r18['hybrid']} against "
         f"{r18['warmup']} %", at("hybrid"), at("warmup"), +1, r18["hybrid"] - r18["warmup"]),
        ("nnsiam_beats_simsiam", "NNSiam beats SimSiam in multiple pass (ResNet-18).", f"{r18['nnsiam']} against "
         f"{r18['iid']} %", at("nnsiam"), at("iid"), +1, r18["nnsiam"] - r18["iid"]),
        ("nnsiam_below_single_pass", "NNSiam stays below single-pass SimSiam.", f"{r18['nnsiam']} against "
         f"{r18['single']} %", at("nnsiam"), at("single"), -1, r18["single"] - r18["nnsiam"]),
        ("nnsiam_below_hybrid", "NNSiam stays below the hybrid.", f"{r18['nnsiam']} against {r18['hybrid']} %",
         at("nnsiam"), at("hybrid"), -1, r18["hybrid"] - r18["nnsiam"]),
    ]:
        out.append(claim(claim_id, statement, f"{paper} ({PAPER['source']})", points(a, b), direction,
                         paper_effect=effect, what=f"linear probe, {NAMES[a['variant']]} {a['arch']} - "
                                                   f"{NAMES[b['variant']]} {b['arch']} (points)"))
    for vit in p["vits"]:
        out.append(claim(f"{vit}_below_resnet18", f"SimSiam {vit} (a {6 * p['vit_width']}-d representation) is far "
                         f"less accurate than SimSiam {p['arch']}.", f"about 6-10 % against {r18['iid']} % "
                         "(section 3.1: ViT-Small and shallower variants)", points(at("vit", vit), at("iid")), -1,
                         paper_effect=r18["iid"] - PAPER["vit"], what=f"linear probe, {vit} - {p['arch']} (points)"))
    return out
