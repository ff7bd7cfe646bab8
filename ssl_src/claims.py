"""Verdicts on a paper's claims, computed from seed-paired differences (never written by hand).

Seed-to-seed spread is larger than many effects at CPU scale, so every comparison is paired by seed
(same seed = same initial network) and judged by a paired t-test (scipy.stats, df = n - 1):

- reproduced: the one-sided test in the paper's direction has p < 0.05;
- not reproduced: there is evidence against the claim: the two-sided 95 % interval lies on the wrong
  side of 0, or wholly below the paper's effect size (an effect, if any, much smaller than the paper's);
- inconclusive: anything else, including fewer than 3 seeds or an unmet precondition.

A claim that two conditions are *comparable* (direction 0) is an equivalence test within +-margin
(two one-sided tests): reproduced when both reject at 0.05, not reproduced when the 95 % interval lies
wholly outside the margin.

A deterministic measurement (a simulation against a closed form, a benchmark target) is a *check*:
it holds or fails, and is never called a reproduced claim.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

ALPHA = 0.05
MIN_SEEDS = 3
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
CHECK_VERDICTS = ("holds", "fails", "not measured")


def paired_by_seed(left: "pd.Series", right: "pd.Series") -> "pd.Series":
    """left - right per seed (both indexed by seed), over the seeds both have a finite value for: the
    differences every claim is judged on. A seed measured twice on one side is an error, not an average."""
    for side in (left, right):
        if not side.index.is_unique:
            raise ValueError(f"a seed appears twice: {sorted(side.index[side.index.duplicated()].tolist())}")
    return (left - right).dropna()


def condition_by_seed(runs: "pd.DataFrame", metric: str, condition: dict) -> "pd.Series":
    """Metric per seed of the runs matching every column value of `condition`."""
    return runs[np.logical_and.reduce([runs[k] == v for k, v in condition.items()])].set_index("seed")[metric]


def paired_conditions(runs: "pd.DataFrame", metric: str, a: dict, b: dict) -> list[float]:
    """Per seed, metric of the run matching every column value of `a` minus that of the run matching `b`."""
    return paired_by_seed(condition_by_seed(runs, metric, a), condition_by_seed(runs, metric, b)).tolist()


def _t_test(d: np.ndarray, against: float, alternative: str) -> float:
    """p of the one-sample t-test of mean(d) against `against` (what scipy.stats.ttest_1samp gives, from
    Student's t distribution directly: the Monte-Carlo test calls it 10^5 times); identical differences
    (no spread) are decided by their side of `against` alone."""
    if np.all(d == d[0]):
        return 0.0 if (d[0] > against if alternative == "greater" else d[0] < against) else 1.0
    t = (d.mean() - against) / (d.std(ddof=1) / math.sqrt(len(d)))
    return float(special.stdtr(len(d) - 1, -t if alternative == "greater" else t))


def paired_verdict(differences: Sequence[float], direction: int, paper_effect: float | None = None,
                   margin: float | None = None) -> tuple[str, dict]:
    """Verdict for per-seed differences whose expected sign (by the paper) is `direction` (+1 or -1), with
    the paper's effect size (>= 0, along `direction`, in the same units) where the paper gives one; or, for
    direction 0, equivalence within +-`margin`."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    half_width = float(special.stdtrit(n - 1, 1 - ALPHA / 2) * se) if n > 1 else math.inf
    low, high = mean - half_width, mean + half_width
    statistic = {"mean_difference": mean, "standard_error": se, "ci95": [low, high], "n_seeds": n,
                 "per_seed": d.tolist(), "direction": direction, "paper_effect": paper_effect,
                 "margin": margin, "p_value": math.nan, "effect_fraction": math.nan,
                 "test": "paired t-test, one-sided" if direction else "paired equivalence test (TOST)"}
    if direction and paper_effect:
        statistic["effect_fraction"] = direction * mean / paper_effect
    if n < MIN_SEEDS:
        statistic["reason"] = f"{n} seed(s): at least {MIN_SEEDS} are needed"
        return "inconclusive", statistic
    if direction == 0:
        if margin is None or margin <= 0:
            raise ValueError("an equivalence claim needs a positive margin")
        p = max(_t_test(d, -margin, "greater"), _t_test(d, margin, "less"))
        statistic["p_value"] = p
        if p < ALPHA:
            return "reproduced", statistic
        return ("not reproduced" if low > margin or high < -margin else "inconclusive"), statistic
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1, -1 or 0, got {direction}")
    p = _t_test(d, 0.0, "greater" if direction > 0 else "less")
    statistic["p_value"] = p
    if p < ALPHA:
        return "reproduced", statistic
    far_side = high if direction > 0 else -low  # the interval's end in the paper's direction
    if far_side < 0 or (paper_effect and far_side < paper_effect):
        return "not reproduced", statistic
    return "inconclusive", statistic


def claim(claim_id: str, statement: str, paper: str, differences: Sequence[float], direction: int, what: str, *,
          paper_effect: float | None = None, margin: float | None = None,
          precondition: tuple[bool, str] | None = None) -> dict:
    """One entry of a chapter's `claims` list, from seed-paired differences. A precondition that does not
    hold (e.g. "both nets are above the random-init network") makes the claim inconclusive, with its reason."""
    verdict, statistic = paired_verdict(differences, direction, paper_effect, margin)
    statistic["what"] = what
    if precondition is not None and not precondition[0]:
        verdict, statistic["reason"] = "inconclusive", f"precondition not met: {precondition[1]}"
    return {"id": claim_id, "kind": "claim", "statement": statement, "paper": paper, "statistic": statistic,
            "verdict": verdict}


def deterministic_check(check_id: str, statement: str, reference: str, value: float, holds: bool | None,
                        what: str) -> dict:
    """One entry of a chapter's `claims` list from one deterministic measurement: holds, fails, or (None)
    not measured."""
    verdict = "not measured" if holds is None else "holds" if holds else "fails"
    return {"id": check_id, "kind": "check", "statement": statement, "paper": reference,
            "statistic": {"value": value, "what": what}, "verdict": verdict}


def mean_sd(values: "pd.Series", scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± sd' over seeds of a table cell (the mean alone for one seed), values multiplied by `scale`
    (100: accuracy in %)."""
    mean = f"{scale * values.mean():.{digits}f}"
    return f"{mean} ± {scale * values.std(ddof=1):.{digits}f}" if len(values) > 1 else mean


def describe(entry: dict, scale: float = 1.0, unit: str = "") -> str:
    """One line for a chapter's table: mean difference, 95 % interval, p, n and the fraction of the paper's
    effect (values multiplied by `scale`, e.g. 100 for accuracy points)."""
    s = entry["statistic"]
    if entry["kind"] == "check":
        return s["what"]
    number = lambda v: math.nan if v is None else v  # a claims file read back holds null where a NaN was written
    low, high = (scale * number(v) for v in s["ci95"])
    text = (f"{s['what']}: {scale * number(s['mean_difference']):+.3g}{unit} (95 % CI {low:+.3g} to {high:+.3g}), "
            f"p = {number(s['p_value']):.3g}, n = {s['n_seeds']}")
    if s["direction"] == 0:
        text += f", margin +-{scale * s['margin']:.3g}{unit}"
    elif s.get("paper_effect"):
        text += f", {100 * number(s['effect_fraction']):.0f} % of the paper's effect"
    if s.get("reason"):
        text += f"; {s['reason']}"
    return text
