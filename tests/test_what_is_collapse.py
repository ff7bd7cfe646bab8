"""The opening chapter: the synthetic spectra read as they should, the variants are SimSiam with one safeguard
removed, and claims that can fail."""
import pandas as pd
import pytest

from ssl_src.chapters import resolve_parameters
from ssl_src.chapters import what_is_collapse as chapter
from ssl_src.errors import UserError

P = resolve_parameters(chapter.PRESETS, "quick")


def test_the_synthetic_matrices_are_read_as_what_they_are():
    reports = chapter.synthetic_reports()
    assert {name: r["reading"] for name, r in reports.items()} == {
        "healthy": "healthy", "dimensional collapse": "partial collapse", "complete collapse": "complete collapse"}
    assert reports["dimensional collapse"]["effective_rank"] == pytest.approx(6, abs=0.2)  # six directions
    assert reports["complete collapse"]["auc"] < 0.6  # the spectrum alone misses complete collapse


def test_each_variant_removes_one_safeguard_from_the_same_run():
    by_variant = {variant: chapter.config(P, variant, 0) for variant in chapter.VARIANTS}
    simsiam = by_variant["SimSiam"].to_dict()
    for variant, changed in (("no stop-gradient", {"stop_grad": False}), ("no predictor", {"predictor": "none"})):
        other = by_variant[variant].to_dict()
        assert {k: v for k, v in other.items() if simsiam[k] != v} == changed
    assert simsiam["stop_grad"] and simsiam["predictor"] == "mlp" and simsiam["monitor_every"] == P["monitor_every"]


def test_bad_parameters_are_refused():
    with pytest.raises(UserError, match="unknown variant"):
        chapter.check(dict(P, variants=["no projector"]))
    with pytest.raises(UserError, match="monitor_every"):
        chapter.check(dict(P, monitor_every=P["steps"]))


def _runs(spread, accuracy):
    return pd.DataFrame([dict(variant=v, seed=s, projector_spread=spread[v] + 0.01 * s,
                              linear_acc=accuracy[v] + 0.003 * s * (v == "SimSiam"))
                         for s in (0, 1, 2) for v in chapter.VARIANTS])


def test_the_claims_follow_the_runs():
    reports = chapter.synthetic_reports()
    collapsed = chapter.claims(_runs({"SimSiam": 0.95, "no stop-gradient": 0.01, "no predictor": 0.02},
                                     {"SimSiam": 0.7, "no stop-gradient": 0.3, "no predictor": 0.35}), reports)
    verdicts = {c["id"]: c["verdict"] for c in collapsed}
    assert [verdicts[i] for i in chapter.CLAIM_IDS] == ["reproduced"] * 4
    assert [c["verdict"] for c in collapsed if c["kind"] == "check"] == ["holds"] * 3
    same = chapter.claims(_runs({"SimSiam": 0.95, "no stop-gradient": 0.96, "no predictor": 0.97},
                                {"SimSiam": 0.7, "no stop-gradient": 0.72, "no predictor": 0.75}), reports)
    assert all(c["verdict"] != "reproduced" for c in same if c["kind"] == "claim")


def test_effects_are_fractions_of_chen_and_he_s():
    """A spread from 0.95 to 0.01 is 94 % of the paper's fall from about 1 to 0; 40 points of accuracy lost are
    40 / 67.6 of its fall from 67.7 % to 0.1 %."""
    runs = _runs({"SimSiam": 0.95, "no stop-gradient": 0.01, "no predictor": 0.95},
                 {"SimSiam": 0.7, "no stop-gradient": 0.3, "no predictor": 0.7})
    effect = {c["id"]: c["statistic"]["effect_fraction"] for c in chapter.claims(runs, {})}
    assert effect["no_stop_gradient_collapses"] == pytest.approx(0.94, abs=0.01)
    assert effect["no_stop_gradient_less_accurate"] == pytest.approx(40 / 67.6, abs=0.01)
    assert effect["no_predictor_collapses"] == pytest.approx(0, abs=0.01)
