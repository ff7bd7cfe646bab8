"""Verdicts on a paper's claims, computed from seed-paired differences (never written by hand).

Seed-to-seed spread is larger than many effects at CPU scale, so every comparison is paired by seed
(same seed = same initial network) and judged against its own standard error:

- reproduced: every seed shows the paper's sign and the mean is more than 2 standard errors from 0;
- not reproduced: the mean has the opposite sign by more than 2 SE, or the whole 2-SE interval lies
  below `min_effect` in the paper's direction (the effect, if any, is negligible);
- inconclusive: anything else, including fewer than two seeds.

A claim that two conditions are *comparable* (direction 0) is judged against a margin instead:
reproduced when the whole 2-SE interval lies within +-margin, not reproduced when it lies outside.
A claim checked by one deterministic measurement (a simulation, a benchmark) holds or does not.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

VERDICTS = ("reproduced", "not reproduced", "inconclusive")


def paired_verdict(differences: Sequence[float], direction: int, min_effect: float) -> tuple[str, dict]:
    """Verdict for per-seed differences whose expected sign (by the paper) is `direction` (+1 or -1)."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    statistic = {"mean_difference": mean, "standard_error": se, "n_seeds": n, "per_seed": d.tolist()}
    if n < 2:
        return "inconclusive", statistic
    if direction == 0:  # equivalence within +-min_effect
        if abs(mean) + 2 * se < min_effect:
            return "reproduced", statistic
        return ("not reproduced" if abs(mean) - 2 * se > min_effect else "inconclusive"), statistic
    along = direction * d  # positive = the paper's direction
    mean_along = direction * mean
    if np.all(along > 0) and mean_along > 2 * se:
        return "reproduced", statistic
    if mean_along < -2 * se or mean_along + 2 * se < min_effect:
        return "not reproduced", statistic
    return "inconclusive", statistic


def claim(claim_id: str, statement: str, paper: str, differences: Sequence[float], direction: int,
          min_effect: float, what: str) -> dict:
    """One entry of a chapter's `claims` list, from seed-paired differences."""
    verdict, statistic = paired_verdict(differences, direction, min_effect)
    statistic["what"] = what
    statistic["min_effect"] = min_effect
    return _entry(claim_id, statement, paper, statistic, verdict)


def measured_claim(claim_id: str, statement: str, paper: str, value: float, holds: bool | None, what: str) -> dict:
    """One entry of a chapter's `claims` list, from one deterministic measurement; holds=None = not measured."""
    verdict = "inconclusive" if holds is None else "reproduced" if holds else "not reproduced"
    return _entry(claim_id, statement, paper, {"value": value, "what": what}, verdict)


def _entry(claim_id: str, statement: str, paper: str, statistic: dict, verdict: str) -> dict:
    return {
        "id": claim_id,
        "statement": statement,
        "paper": paper,
        "reproduced": verdict == "reproduced",
        "statistic": statistic,
        "verdict": verdict,
    }
