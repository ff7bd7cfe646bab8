"""The benchmark runs end to end and reports what the performance appendix shows (no timing asserts)."""
import json
import math

import pytest
import torch

from conftest import run_cli
from ssl_src.bench import OurStep, gemm_peak
from ssl_src.models import build_backbone, needs_nchw
from ssl_src import data as datasets


def test_gemm_peak_is_a_positive_rate():
    assert gemm_peak(torch.float32, size=256, repeats=2) > 1e8


@pytest.mark.slow
def test_flop_count_matches_the_model_scale():
    """Counted FLOPs grow ~4x from width 4 to 8 (convs are quadratic in width)."""
    data = datasets.load("fashion_mnist")
    small, large = (OurStep(w, data, torch.device("cpu")).flops_per_step() for w in (4, 8))
    assert 3.0 < large / small < 4.5


@pytest.mark.slow
def test_bench_json_reports_every_field(tmp_path):
    code, out, err = run_cli("bench", "--json", "--widths", "2", "--rounds", "1", "--steps", "1",
                             env={"SSL_RESULTS": str(tmp_path)})
    assert code == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    row = result["widths"]["2"]
    for key in ("ours_pairs_per_s", "peer_pairs_per_s", "ratio", "flops_fraction_of_peak", "flops_fraction_fp32"):
        assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] > 0
    bf16 = result["hardware"]["native_bf16"] or result["hardware"]["accelerator"] != "none"
    assert result["precision"] == ("bf16" if bf16 else "fp32")
    assert (result["peak_bf16_gflops"] is not None) == bf16  # no bf16 GEMM without native bf16 (JSON null)
    assert result["evaluation"]["total_s"] > 0
    ablation = result["ablation"]["pairs_per_s"]
    assert len(ablation) == 4 and all(v > 0 for v in ablation.values())
    assert result["hardware"]["logical_cpus"] >= 1 and result["hardware"]["torch"] == torch.__version__
    assert result["hardware"]["instruction_sets"] and result["hardware"]["onednn_max_isa"]
    assert result["sweep"]["sweep_pairs_per_s"] > 0 and result["sweep"]["jobs"] >= 1
    stacking = result["seed_stacking"]
    assert len(stacking["pairs_per_s"]) == 3 * len(stacking["layouts"]) and stacking["speed_up_vs_sweep_bound"] > 0
    # a net whose channels_last kernel fails on this CPU (the narrow preset) is timed in NCHW only
    narrow = needs_nchw(build_backbone("resnet18", stacking["width"], 1), torch.device("cpu"))
    assert ("channels_last" in stacking["layouts"]) == (not narrow)


def test_a_seed_stacked_backbone_computes_each_seed_exactly():
    """The grouped net of `stack_seeds` with seed s's weights in slice s gives each seed's own features."""
    from ssl_src.bench import stack_seeds
    from ssl_src.models import build_backbone

    torch.manual_seed(0)
    nets = [build_backbone("resnet18", 2, 1).train() for _ in range(3)]
    stacked = stack_seeds(nets[0], 3).train()
    for param, per_seed in zip(stacked.parameters(), zip(*[net.parameters() for net in nets])):
        param.data = torch.cat([p.data for p in per_seed])
    x = torch.randn(8, 3, 16, 16)
    separate = torch.cat([net(x[:, s : s + 1]) for s, net in enumerate(nets)], dim=1)
    torch.testing.assert_close(stacked(x), separate, rtol=1e-5, atol=1e-6)
