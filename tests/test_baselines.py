"""The baselines chapter (collapse paper, supplement Table 2 and sections 3.1-3.2): its runs and claims that can
fail."""
import math

import pandas as pd
import pytest

from ssl_src.chapters import baselines as chapter
from ssl_src.chapters import resolve_parameters

P = resolve_parameters(chapter.PRESETS, "quick")
PAPERLIKE = {"random init": 0.5, "iid": 0.70, "warmup": 0.69, "single": 0.75, "hybrid": 0.77, "nnsiam": 0.72, "vit": 0.40}


def _runs(accuracy):
    """One row per setting; `accuracy(arch, variant, seed)` gives its linear probe."""
    return pd.DataFrame([dict(s, run_id=f"{s['arch']}{s['variant']}{s['seed']}",
                              linear_acc=accuracy(s["arch"], s["variant"], s["seed"]),
                              weighted_knn_acc=0.5 if s["variant"] == "random init" else 0.75)
                         for s in chapter.settings(P)])


def paperlike(arch, variant, seed):
    if arch == "resnet34":  # the paper's deeper net gains from the warmup
        return {"random init": 0.5, "iid": 0.60, "warmup": 0.66}[variant] + 0.002 * seed
    return PAPERLIKE[variant] + 0.002 * seed * (variant != "iid")


def test_only_the_warmup_nnsiam_and_vit_runs_are_new():
    from ssl_src.chapters import capacity_vs_data, choosing_a_scale, data_ordering
    from ssl_src.store import run_id
    from ssl_src.sweep import resolve

    ids = lambda module: {run_id(c.to_dict()): c for c in resolve(module.configs(resolve_parameters(module.PRESETS, "quick")))}
    ours = ids(chapter)
    shared = set(ids(capacity_vs_data)) | set(ids(choosing_a_scale)) | set(ids(data_ordering))
    new = [c for i, c in ours.items() if i not in shared]
    assert len(ours) == 45 and len(new) == 27
    warmup = [c for c in new if c.arch.startswith("resnet") and c.method == "simsiam"]
    assert len(warmup) == 6 and {(c.warmup_steps, c.optimizer, c.base_lr) for c in warmup} == {(234, "sgd", 0.5)}
    vits = [c for c in new if c.arch.startswith("vit") and c.steps]
    assert len(vits) == 9 and {(c.optimizer, c.base_lr, c.weight_decay, c.warmup_steps, c.width) for c in vits} == {
        ("adamw", 1.5e-4, 0.1, 234, 4)}
    nnsiam = [c for c in new if c.method == "nnsiam"]
    assert len(nnsiam) == 3 and {c.queue_size for c in nnsiam} == {round(25_600 * 60_000 / 1_281_167)}


def test_claims_reproduce_when_each_baseline_does_what_the_paper_found():
    claims = chapter.claims(_runs(paperlike), P)
    verdicts = {c["id"]: c for c in claims}
    assert sorted(verdicts) == sorted(chapter.claim_ids(P))
    assert {c["verdict"] for c in claims} == {"reproduced"}
    assert verdicts["warmup_helps_resnet34"]["statistic"]["mean_difference"] == pytest.approx(6.0)
    assert verdicts["nnsiam_below_hybrid"]["statistic"]["effect_fraction"] == pytest.approx(5.0 / 13.9)


def test_claims_fail_when_warmup_is_the_fix_and_the_vits_learn():
    fixed = lambda arch, variant, seed: paperlike(arch, variant, seed) + {"warmup": 0.2, "vit": 0.4}.get(variant, 0)
    verdicts = {c["id"]: c["verdict"] for c in chapter.claims(_runs(fixed), P)}
    assert verdicts["warmup_does_not_help_resnet18"] == verdicts["hybrid_beats_warmup"] == "not reproduced"
    assert verdicts["vit_small_below_resnet18"] == verdicts["vit_small_d3_below_resnet18"] == "not reproduced"


def test_the_table_sets_the_papers_numbers_beside_ours():
    runs = _runs(paperlike).assign(auc=0.8, effective_rank_fraction=0.5)
    table = chapter.table(runs)
    assert table.loc[("resnet34", "SimSiam + 10 % warmup"), "linear acc, paper (%)"] == 35.82
    assert table.loc[("resnet18", "NNSiam"), "linear acc, ours (%)"] == "72.2 ± 0.2"
    assert table.loc[("vit_small_d6", "SimSiam ViT"), "linear acc, paper (%)"] == 8.0


@pytest.mark.parametrize("given, message", [({"vits": ["vit_huge"]}, "unknown ViT"),
                                             ({"warmup_fraction": 1.5}, "warmup_fraction must lie in")])
def test_bad_parameters_are_refused(given, message):
    from ssl_src.chapters import check_parameters
    from ssl_src.errors import UserError

    with pytest.raises(UserError, match=message):
        check_parameters("baselines", "smoke", given)


def test_the_verdict_has_every_accuracy_it_names_even_for_nets_left_out():
    """The smoke preset trains one ViT: the other two read NaN instead of breaking the page's glue."""
    runs = _runs(paperlike)
    runs = runs.assign(kind=["random init" if v == "random init" else "trained" for v in runs.variant])
    values = chapter.accuracies(runs[runs.arch != "vit_small_d6"])
    assert len(values) == 10 and values["acc_resnet18_warmup"] == pytest.approx(100 * PAPERLIKE["warmup"] + 0.2)
    assert math.isnan(values["acc_vit_small_d6_vit"]) and not math.isnan(values["acc_vit_small_vit"])


def test_the_paper_preset_vits_take_no_resnet_stem():
    """A ViT refuses --stem imagenet (train.resolved): the paper preset, on ImageNet, must not ask for it."""
    from ssl_src.chapters import baselines, resolve_parameters
    from ssl_src.models import VITS

    vits = [c for c in baselines.configs(resolve_parameters(baselines.PRESETS, "paper")) if c.arch in VITS]
    assert vits and all(c.stem == "cifar" and c.dataset == "imagenet" for c in vits)
