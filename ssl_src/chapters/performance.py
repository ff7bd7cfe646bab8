"""The performance appendix: presets of the benchmark and its targets as claims."""
from __future__ import annotations

import math

from ..claims import measured_claim
from ..errors import UserError

PRESETS = {
    "smoke": dict(widths=[4], rounds=1, steps=2),
    "quick": dict(widths=[8, 16], rounds=3, steps=8),
    "paper": dict(widths=[8, 16, 64], rounds=5, steps=10),
}


def check(p: dict) -> None:
    for name in ("rounds", "steps"):
        if p[name] < 1:
            raise UserError(f"parameter {name} must be a positive integer, got {p[name]}")
    if any(w < 1 for w in p["widths"]):
        raise UserError(f"parameter widths must hold positive integers, got {p['widths']}")


def _target(claim_id: str, statement: str, value: float, target: float, higher_is_better: bool, what: str) -> dict:
    """A measured target is met or not; a missing measurement (NaN) is inconclusive."""
    holds = None if math.isnan(value) else (value >= target if higher_is_better else value <= target)
    return measured_claim(claim_id, statement, f"target {target:g}", value, holds, f"{what} = {value:.3g}")


def claims(results: dict, params: dict) -> list[dict]:
    w = str(max(params["widths"]))
    r = results["widths"][w]
    return [
        _target("ratio_vs_peer", f"ours >= 4x the lightly peer at width {w}", r["ratio"], 4.0, True, "ratio"),
        _target("fraction_of_bf16_peak", f"model FLOP/s >= 40 % of the bf16 GEMM peak at width {w}",
                r["flops_fraction_bf16"], 0.4, True, "fraction"),
        _target("evaluation_seconds", "features + metrics + kNN of one quick-scale run under 15 s",
                results["evaluation"]["total_s"], 15.0, False, "seconds"),
    ]
