"""The capacity chapter's nets and claims, on a hand-made run table."""
import pandas as pd
import pytest

from ssl_src.chapters import capacity_vs_data as chapter
from ssl_src.chapters import resolve_parameters


def test_the_deeper_net_trains_at_the_narrow_width_only():
    p = resolve_parameters(chapter.PRESETS, "quick")
    assert chapter.nets(p) == [("resnet18", 4), ("resnet18", 8), ("resnet34", 4)]
    assert len(chapter.configs(p)) == 3 * 3 * (1 + 3)  # nets x seeds x (random init + subsets)
    assert chapter.nets(dict(p, archs=["resnet18", "resnet34"], deeper_archs=["resnet34"])) == [
        ("resnet18", 4), ("resnet18", 8), ("resnet34", 4), ("resnet34", 8)]  # listed once


def runs_table() -> pd.DataFrame:
    """Per seed s: ResNet-18 w4 AUC 0.70 -> 0.80 (+0.10), w8 0.60 -> 0.64 + 0.01 s (+0.04 + 0.01 s); ResNet-34 w4
    0.72 -> 0.85 on the whole data, 5 points less accurate than ResNet-18 there."""
    rows = []
    for seed in (0, 1, 2):
        for arch, width, auc_small, auc_full, linear_full in (
                ("resnet18", 4, 0.70, 0.80, 0.80), ("resnet18", 8, 0.60, 0.64 + 0.01 * seed, 0.85),
                ("resnet34", 4, 0.72, 0.85, 0.75)):
            for subset, auc, linear in ((0.01, auc_small, 0.7), (0.1, (auc_small + auc_full) / 2, 0.82 - 0.01 * seed),
                                        (1.0, auc_full, linear_full)):
                rows.append(dict(kind="trained", arch=arch, width=width, subset=subset, seed=seed, auc=auc,
                                 linear_acc=linear, weighted_knn_acc=linear - 0.01))
    return pd.DataFrame(rows)


def test_claims_pair_the_narrow_wide_and_deeper_contrasts_by_seed():
    p = resolve_parameters(chapter.PRESETS, "quick")
    claims = {c["id"]: c for c in chapter.claims(runs_table(), p)}
    assert set(claims) == set(chapter.CLAIM_IDS)
    stat = lambda claim_id: claims[claim_id]["statistic"]
    assert stat("auc_rises_with_data")["per_seed"] == pytest.approx([0.10] * 3)
    assert stat("auc_rises_with_data")["effect_fraction"] == pytest.approx(0.10 / (0.86 - 0.61))
    assert stat("accuracy_drops_with_data")["per_seed"] == pytest.approx([-0.02, -0.01, 0.0])
    assert stat("narrow_rises_more_than_wide_w8")["per_seed"] == pytest.approx([0.06, 0.05, 0.04])
    assert claims["narrow_rises_more_than_wide_w8"]["verdict"] == "reproduced"
    assert stat("resnet34_collapses_more")["per_seed"] == pytest.approx([0.05] * 3)
    assert stat("resnet34_less_accurate")["per_seed"] == pytest.approx([-5.0] * 3)  # points
    assert stat("resnet34_less_accurate")["effect_fraction"] == pytest.approx(5.0 / (30.0 - 16.8))
    assert stat("resnet34_auc_rises_with_data")["per_seed"] == pytest.approx([0.13] * 3)


def test_without_a_wide_or_deeper_net_only_the_data_claims_remain():
    p = dict(resolve_parameters(chapter.PRESETS, "quick"), widths=[4], deeper_archs=[])
    runs = runs_table().query("width == 4 and arch == 'resnet18'")
    assert [c["id"] for c in chapter.claims(runs, p)] == ["auc_rises_with_data", "accuracy_drops_with_data"]
