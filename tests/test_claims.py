import numpy as np
import pytest
from scipy import stats

from ssl_src.claims import ALPHA, CHECK_VERDICTS, VERDICTS, claim, describe, deterministic_check, paired_verdict


@pytest.mark.parametrize("diffs, direction, paper_effect, expected", [
    ([0.10, 0.12, 0.11], +1, None, "reproduced"),  # t = 19, p ~ 0.001
    ([-0.10, -0.12, -0.11], -1, None, "reproduced"),  # the paper expects a drop and we see one
    ([-0.10, -0.12, -0.11], +1, None, "not reproduced"),  # the 95 % interval lies below 0
    ([0.001, -0.001, 0.0005], +1, 0.25, "not reproduced"),  # the interval excludes the paper's effect size
    ([0.001, -0.001, 0.0005], +1, None, "inconclusive"),  # no effect size to exclude, 0 not excluded either
    ([0.05, -0.04, 0.06], +1, None, "inconclusive"),  # noisy, could be either
    ([0.2, 0.3], +1, None, "inconclusive"),  # two seeds are never enough
    ([0.02, 0.02, 0.02], +1, None, "reproduced"),  # no spread at all: decided by the side alone
])
def test_paired_verdict(diffs, direction, paper_effect, expected):
    verdict, stat = paired_verdict(diffs, direction, paper_effect)
    assert verdict == expected
    assert stat["n_seeds"] == len(diffs)
    assert stat["mean_difference"] == pytest.approx(sum(diffs) / len(diffs))


def test_statistics_match_scipy_and_a_hand_computed_interval():
    d = [0.10, 0.12, 0.11]
    _, stat = paired_verdict(d, +1, paper_effect=0.22)
    se = np.std(d, ddof=1) / np.sqrt(3)  # 0.005774
    assert stat["standard_error"] == pytest.approx(se)
    assert stat["ci95"] == pytest.approx([0.11 - 4.302653 * se, 0.11 + 4.302653 * se], rel=1e-6)  # t(0.975, 2)
    assert stat["p_value"] == pytest.approx(stats.ttest_1samp(d, 0, alternative="greater").pvalue)
    assert stat["p_value"] == pytest.approx(stats.t.sf(0.11 / se, 2))
    assert stat["effect_fraction"] == pytest.approx(0.5)


@pytest.mark.parametrize("diffs, expected", [
    ([0.001, -0.002, 0.0015, 0.0, 0.0005], "reproduced"),  # the 90 % interval lies inside +-0.01
    ([0.05, 0.06, 0.055], "not reproduced"),  # the 95 % interval lies wholly above the margin
    ([0.0, 0.02, -0.01], "inconclusive"),  # could be either
])
def test_equivalence_is_two_one_sided_tests(diffs, expected):
    verdict, stat = paired_verdict(diffs, 0, margin=0.01)
    assert verdict == expected
    low = stats.ttest_1samp(diffs, -0.01, alternative="greater").pvalue
    high = stats.ttest_1samp(diffs, 0.01, alternative="less").pvalue
    assert stat["p_value"] == pytest.approx(max(low, high))


@pytest.mark.parametrize("n", [3, 5])
def test_false_reproduced_rate_under_no_effect_is_at_most_alpha(n):
    """Monte-Carlo: differences with no effect at all are called "reproduced" at most 5 % of the time
    (plus 4 Monte-Carlo standard errors); the old rule (same sign and 2 SE) said so ~15 % of the time at n = 2."""
    rng = np.random.default_rng(n)
    draws = 10_000  # half in each direction
    rate = np.mean([paired_verdict(rng.normal(0, 0.01, n), 1 - 2 * (i % 2))[0] == "reproduced" for i in range(draws)])
    assert rate <= ALPHA + 4 * np.sqrt(ALPHA * (1 - ALPHA) / draws), rate


@pytest.mark.parametrize("n", [3, 5])
def test_false_equivalence_rate_at_the_margin_is_at_most_alpha(n):
    """At a true difference on the margin, "comparable" is claimed at most 5 % of the time."""
    rng = np.random.default_rng(10 + n)
    draws = 10_000
    rate = np.mean([paired_verdict(rng.normal(0.01, 0.005, n), 0, margin=0.01)[0] == "reproduced" for _ in range(draws)])
    assert rate <= ALPHA + 4 * np.sqrt(ALPHA * (1 - ALPHA) / draws), rate


def test_a_real_effect_is_found_and_an_opposite_one_refuted():
    rng = np.random.default_rng(0)
    found = np.mean([paired_verdict(rng.normal(0.03, 0.01, 5), +1)[0] == "reproduced" for _ in range(2000)])
    refuted = np.mean([paired_verdict(rng.normal(-0.03, 0.01, 5), +1)[0] == "not reproduced" for _ in range(2000)])
    assert found > 0.95 and refuted > 0.95


def test_claim_record_has_the_chapter_schema():
    c = claim("x", "statement", "paper says", [0.1, 0.2, 0.15], +1, "what", paper_effect=0.3)
    assert set(c) == {"id", "kind", "statement", "paper", "statistic", "verdict"}
    assert c["kind"] == "claim" and c["verdict"] in VERDICTS
    assert {"mean_difference", "ci95", "p_value", "n_seeds", "effect_fraction"} <= set(c["statistic"])
    assert "95 % CI" in describe(c) and "n = 3" in describe(c) and "50 % of the paper's effect" in describe(c)


def test_an_unmet_precondition_makes_a_claim_inconclusive_with_its_reason():
    c = claim("x", "s", "p", [0.001, -0.001, 0.0], 0, "what", margin=0.01, precondition=(False, "nets are untrained"))
    assert c["verdict"] == "inconclusive" and "nets are untrained" in c["statistic"]["reason"]
    assert claim("x", "s", "p", [0.001, -0.001, 0.0, 0.0005, -0.0005], 0, "what", margin=0.01,
                 precondition=(True, "ok"))["verdict"] == "reproduced"


@pytest.mark.parametrize("holds, verdict", [(True, "holds"), (False, "fails"), (None, "not measured")])
def test_deterministic_check(holds, verdict):
    c = deterministic_check("x", "statement", "reference", 0.5, holds, "value = 0.5")
    assert c["verdict"] == verdict and c["kind"] == "check" and c["statistic"]["value"] == 0.5
    assert c["verdict"] in CHECK_VERDICTS and "reproduced" not in c["verdict"]


def test_mean_sd_is_the_mean_and_sample_sd_over_seeds():
    import pandas as pd

    from ssl_src.claims import mean_sd

    assert mean_sd(pd.Series([0.70, 0.72, 0.74])) == "72.0 ± 2.0"
    assert mean_sd(pd.Series([0.8123]), 1, 3) == "0.812"  # one seed: no spread to show
