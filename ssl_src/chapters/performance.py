"""The performance appendix: presets of the benchmark and its targets as claims."""
from __future__ import annotations

import math

from ..claims import deterministic_check
from ..errors import UserError
from . import parameters_key, published_json, read_measurement

# probe_*: the grid of `ssl_src.kernel_probe` (every in/out pair of probe_channels, kernels 1 and 3,
# strides 1 and 2, both layouts, 1 and 2 threads) run under oneDNN's AVX2 kernels.
PROBE_QUICK = dict(probe_channels=[1, 2, 4, 6, 7, 8, 16, 32], probe_kernels=[1, 3], probe_strides=[1, 2], probe_time_limit=4.0)
PRESETS = {
    "smoke": dict(widths=[4], rounds=1, steps=2, probe_channels=[4, 8], probe_kernels=[1], probe_strides=[2],
                  probe_time_limit=3.0),
    "quick": dict(widths=[8, 16], rounds=3, steps=8, **PROBE_QUICK),
    "paper": dict(widths=[8, 16, 64], rounds=5, steps=10, **PROBE_QUICK),
}


def check(p: dict) -> None:
    for name in ("rounds", "steps"):
        if p[name] < 1:
            raise UserError(f"parameter {name} must be a positive integer, got {p[name]}")
    for name in ("widths", "probe_channels", "probe_kernels", "probe_strides"):
        if any(v < 1 for v in p[name]):
            raise UserError(f"parameter {name} must hold positive integers, got {p[name]}")
    if p["probe_time_limit"] <= 0:
        raise UserError(f"parameter probe_time_limit must be positive, got {p['probe_time_limit']}")


def benchmarked_nets(p: dict) -> list:
    """The benchmarked nets, one per width (timed, never stored as runs)."""
    from ..bench import step_config

    return [step_config(width) for width in p["widths"]]


def probe_convolutions(p: dict) -> list[dict]:
    """The probe under oneDNN's AVX2 kernels, and under the CPU's own where it has better (AVX-512)."""
    from ..hardware import onednn_uses_avx512
    from ..kernel_probe import grid, probe

    cases = grid(tuple(p["probe_channels"]), tuple(p["probe_kernels"]), tuple(p["probe_strides"]))
    isas = ["AVX2"] + (["native"] if onednn_uses_avx512() else [])
    return [record for isa in isas for record in probe(cases, None if isa == "native" else isa, p["probe_time_limit"])]


def device_bench_summary():
    """The last `bench --device cuda` published (results/paper/measurements/), as a table and where it ran; or the
    line that says it was never measured."""
    from IPython.display import Markdown, display

    from ..bench import device_table

    measured = read_measurement("paper", "device-bench-cuda")
    if measured is None:
        return Markdown("**Not measured.** No GPU was at hand when this book's results were published. On a machine "
                        "with one, `python -m ssl_src bench --device cuda` measures it and publishes it here.")
    value = measured["value"]
    display(Markdown(f"Measured on {value['device']['accelerator']} at {measured['measured_at']}; matmul "
                     f"peak {value['peak_tflops']:.0f} TFLOP/s ({value['peak_dtype']}), {value['loader_workers']} loader "
                     f"workers, {value['steps']} timed steps per net."))
    return device_table(value)


def measure(p: dict) -> tuple[dict, dict]:
    """The benchmark and the convolution probe: published at the quick scale (a re-render reads them, with the
    machine and time they were measured on), measured here on `--retrain` or when missing."""
    from ..bench import run_benchmark

    key = parameters_key(p)
    bench = published_json(p["scale"], f"performance-bench-{key}",
                           lambda: run_benchmark(widths=tuple(p["widths"]), rounds=p["rounds"], steps=p["steps"]))
    probe = published_json(p["scale"], f"performance-probe-{key}", lambda: probe_convolutions(p))
    return bench, probe


def _target(claim_id: str, statement: str, value: float, target: float, higher_is_better: bool, what: str) -> dict:
    """A measured target is met or not; a missing measurement (NaN) is "not measured"."""
    holds = None if math.isnan(value) else (value >= target if higher_is_better else value <= target)
    return deterministic_check(claim_id, statement, f"target {target:g}", value, holds, f"{what} = {value:.3g}")


def claims(results: dict, params: dict, probe_records: list[dict]) -> list[dict]:
    from ..kernel_probe import routed

    w = str(max(params["widths"]))
    r = results["widths"][w]
    failing = [record for record in probe_records if record["outcome"] != "ok"]
    unrouted = sum(not routed(record) for record in failing)
    return [
        deterministic_check("failing_convolutions_routed", "every probed convolution that fails in oneDNN is routed off "
                       "its failing kernel by training", "no configuration may reach a failing kernel", unrouted,
                       unrouted == 0, f"{len(failing)} failing cases, {unrouted} of them not routed"),
        _target("ratio_vs_peer", f"ours >= 4x the lightly peer at width {w}", r["ratio"], 4.0, True, "ratio"),
        _target("fraction_of_peak", f"model FLOP/s >= 40 % of the GEMM peak of the step's precision "
                f"({results['precision']}) at width {w}", r["flops_fraction_of_peak"], 0.4, True, "fraction"),
        _target("evaluation_seconds", "features + metrics + kNN of one quick-scale run under 15 s",
                results["evaluation"]["total_s"], 15.0, False, "seconds"),
    ] + ([_target("sweep_speed_up", f"{results['sweep']['jobs']} runs at once train more pairs/s in all than one run "
                  "on every core (the default --jobs of the quick scale)", results["sweep"]["speed_up"], 1.0, True,
                  "speed-up")] if "sweep" in results else [])
