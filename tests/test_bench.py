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


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_device_benchmark_times_a_streamed_and_an_in_memory_net(monkeypatch):
    """`bench --device`'s measurement, on the CPU with small nets: the loop's own steps, the streamed one fed by
    the loader from generated JPEGs, every number in range."""
    from dataclasses import replace

    from ssl_src.bench import device_benchmark, device_nets, device_table

    monkeypatch.setenv("SSL_LOADER_WORKERS", "1")
    nets = device_nets()
    small = {"streamed": replace(nets["ResNet-18, 224 px (paper)"], width=4, image_size=32, batch_size=8, precision="fp32"),
             "in memory": replace(next(cfg for name, cfg in nets.items() if "quick" in name), batch_size=16,
                                  precision="fp32")}
    results = device_benchmark(torch.device("cpu"), steps=2, warmup=1, nets=small, files=40, log=lambda msg: None)
    streamed, in_memory = results["nets"]["streamed"], results["nets"]["in memory"]
    assert streamed["streamed"] and not in_memory["streamed"]
    for row in (streamed, in_memory):
        assert row["images_per_s"] > 0 and 0 <= row["loader_stall_fraction"] < 1 and 0 < row["mfu"] < 1
        assert row["flops_per_step"] > 0 and row["peak_memory_gb"] > 0
    assert streamed["image_size"] == 32 and list(device_table(results).index) == ["streamed", "in memory"]
    assert {"ResNet-18, 224 px (paper)", "ResNet-50, 224 px (paper)"} <= set(nets)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_bench_on_a_missing_cuda_device_is_one_line_and_exit_2(capsys):
    from ssl_src.cli import main

    assert main(["bench", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --device cuda: no CUDA device here (torch.cuda.is_available() is False)"


def test_the_appendix_shows_the_device_bench_only_where_it_was_measured(results_dir):
    from ssl_src.chapters import measurement_path
    from ssl_src.chapters.performance import device_bench_summary
    from ssl_src.store import write_json_atomic

    assert "Not measured" in device_bench_summary().data
    row = {"arch": "resnet50", "width": 64, "image_size": 224, "batch_size": 256, "precision": "bf16", "streamed": True,
           "images_per_s": 2500.0, "step_ms": 102.4, "loader_stall_fraction": 0.05, "flops_per_step": 8e12,
           "peak_memory_gb": 40.0, "mfu": 0.1}
    write_json_atomic(measurement_path("paper", "device-bench-cuda"), {
        "value": {"device": {"accelerator": "a GPU"}, "peak_tflops": 780.0, "peak_dtype": "bf16", "loader_workers": 15,
                  "steps": 20, "nets": {"ResNet-50, 224 px (paper)": row}},
        "measured_at": "2026-12-03T00:00:00+0000", "machine": {}})
    table = device_bench_summary()
    assert table.loc["ResNet-50, 224 px (paper)", "images/s"] == 2500 and table.loc["ResNet-50, 224 px (paper)", "MFU (%)"] == 10.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_paper_nets_training_flops_are_resnet18s(tmp_path):
    """ResNet-18 at 224 px: 1.8 GMACs = 3.6 GFLOPs a forward pass; a training step is about 3 passes, on 2 views:
    about 22 GFLOPs a pair, plus the projector and predictor."""
    from ssl_src.bench import device_nets, flops_per_pair, write_image_folder

    write_image_folder(tmp_path / "imagenet", 20, size=(64, 48))
    flops = flops_per_pair(device_nets()["ResNet-18, 224 px (paper)"], tmp_path)
    assert 20e9 < flops < 26e9, flops / 1e9
