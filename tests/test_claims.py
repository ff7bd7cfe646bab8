import pytest

from ssl_src.claims import VERDICTS, claim, measured_claim, paired_verdict


@pytest.mark.parametrize("diffs, direction, expected", [
    ([0.10, 0.12, 0.11], +1, "reproduced"),  # same sign everywhere, far beyond 2 SE
    ([-0.10, -0.12, -0.11], -1, "reproduced"),  # the paper expects a drop and we see one
    ([-0.10, -0.12, -0.11], +1, "not reproduced"),  # clearly the opposite sign
    ([0.001, -0.001, 0.0005], +1, "not reproduced"),  # the whole interval is below min_effect
    ([0.05, -0.04, 0.06], +1, "inconclusive"),  # noisy, could be either
    ([0.2], +1, "inconclusive"),  # one seed says nothing about spread
    ([0.001, -0.002, 0.0015], 0, "reproduced"),  # comparable: |mean| + 2 SE = 0.0022 < 0.01
    ([0.05, 0.06, 0.055], 0, "not reproduced"),  # clearly apart: |mean| - 2 SE = 0.049 > 0.01
    ([0.0, 0.02, -0.01], 0, "inconclusive"),  # |mean| + 2 SE = 0.021: could be either
])
def test_paired_verdict(diffs, direction, expected):
    verdict, stat = paired_verdict(diffs, direction, min_effect=0.01)
    assert verdict == expected
    assert stat["n_seeds"] == len(diffs)
    assert stat["mean_difference"] == pytest.approx(sum(diffs) / len(diffs))


def test_claim_record_has_the_chapter_schema():
    c = claim("x", "statement", "paper says", [0.1, 0.2], +1, 0.01, "what")
    assert set(c) == {"id", "statement", "paper", "reproduced", "statistic", "verdict"}
    assert c["verdict"] in VERDICTS
    assert c["reproduced"] is (c["verdict"] == "reproduced")


@pytest.mark.parametrize("holds, verdict", [(True, "reproduced"), (False, "not reproduced"), (None, "inconclusive")])
def test_measured_claim(holds, verdict):
    c = measured_claim("x", "statement", "paper", 0.5, holds, "value = 0.5")
    assert c["verdict"] == verdict and c["reproduced"] is (holds is True) and c["statistic"]["value"] == 0.5
