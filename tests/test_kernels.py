"""The oneDNN AVX2 convolution bug (hangs with 2 threads, memory corruption or wrong gradients with 1):
the probe finds it, the routing rule covers everything it finds, and every preset's narrowest nets
train under `ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN's AVX2 kernels on any x86 CPU) with 1 and 2 threads."""
import importlib
import json
import os
import platform
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import REPO
from ssl_src.chapters import SCALES, resolve_parameters
from ssl_src.hardware import channels_last_fails
from ssl_src.errors import UserError
from ssl_src.kernel_probe import ConvCase, failure_table, probe, routed
from ssl_src.models import build_backbone, to_device_layout

x86 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="oneDNN's AVX2 kernels exist on x86 only")
TRAINING_CHAPTERS = ("what_is_collapse", "capacity_vs_data", "data_ordering", "other_methods", "distillation",
                     "width_vs_depth", "baselines", "eigenspace_alignment", "directpred", "performance")


def nets_of(module, scale: str) -> list | None:
    """The configs a chapter trains at `scale` (its stored runs, or the performance appendix's benchmarked nets);
    None where listing them needs the paper's data and it is not here (a distilled student names its teacher's
    run id, resolved from the data; the students' nets are the capacity chapter's paper nets)."""
    p = resolve_parameters(module.PRESETS, scale)
    try:
        return module.benchmarked_nets(p) if hasattr(module, "benchmarked_nets") else module.configs(p)
    except UserError as exc:
        if scale == "paper" and "not found" in str(exc):
            return None
        raise


@pytest.mark.parametrize("kernel, stride, in_channels, fails", [
    (1, 2, 1, True), (1, 2, 4, True), (1, 2, 7, True), (1, 2, 8, False), (1, 2, 64, False),
    (1, 1, 4, False), (3, 2, 4, False), (3, 1, 1, False),
])
def test_the_routing_rule(kernel, stride, in_channels, fails):
    assert channels_last_fails(nn.Conv2d(in_channels, 16, kernel, stride, bias=False)) is fails


def test_a_net_with_a_failing_layer_runs_in_nchw_throughout():
    """ResNet-18 at width 4 has one (the stage-2 shortcut, 4 -> 8 channels, 1x1, stride 2): every convolution
    takes NCHW weights and input. At width 8 it has none and stays channels_last."""
    narrow = to_device_layout(build_backbone("resnet18", 4, 1), torch.device("cpu"))
    convs = [m for m in narrow.modules() if isinstance(m, nn.Conv2d)]
    assert sum(channels_last_fails(c) for c in convs) == 1
    assert all(c._forward_pre_hooks and c.weight.is_contiguous() for c in convs)
    assert narrow.get_submodule("layer2.0.downsample.0").weight.stride() == (4, 1, 1, 1)  # not (4, 1, 4, 4)
    seen = []
    for conv in convs:
        conv.register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    narrow(torch.randn(2, 1, 16, 16).contiguous(memory_format=torch.channels_last))
    assert seen == [True] * len(convs)
    wide = to_device_layout(build_backbone("resnet18", 8, 1), torch.device("cpu"))
    assert not any(m._forward_pre_hooks for m in wide.modules())
    assert wide.get_submodule("layer2.0.downsample.0").weight.stride() == (8, 1, 8, 8)  # channels_last
    assert wide.conv1.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
@x86
def test_the_probe_finds_the_bug_and_the_rule_covers_every_failure():
    """Around the boundary (4, 7 and 8 input channels), 1 and 2 threads, both layouts. If no case fails, the
    pinned torch no longer has the bug: the routing (hardware.channels_last_fails) can go."""
    cases = [ConvCase(i, 16, 1, 2, layout, threads) for i in (4, 7, 8) for layout in (True, False) for threads in (1, 2)]
    records = probe(cases, "AVX2", limit=5.0, progress=False)
    failing = [r for r in records if r["outcome"] != "ok"]
    assert failing, "no probed case failed: the oneDNN AVX2 bug is gone from this torch, drop the routing"
    assert all(routed(r) for r in failing), failing
    assert {r["in_channels"] for r in failing} <= {4, 7} and all(r["channels_last"] for r in failing)
    table = failure_table(records)
    assert table.failed.sum() == len(failing) and table.all_failures_routed.all()


def narrowest_nets() -> list[dict]:
    """For every training chapter and scale, the narrowest net of each architecture, stem and image size."""
    entries, seen = [], set()
    for chapter in TRAINING_CHAPTERS:
        module = importlib.import_module(f"ssl_src.chapters.{chapter}")
        for scale in SCALES:
            for cfg in sorted(nets_of(module, scale) or [], key=lambda c: c.width):
                key = (cfg.method, cfg.predictor, cfg.arch, cfg.stem, cfg.image_size, cfg.dataset)
                if key not in seen:
                    seen.add(key)
                    entries.append({"name": f"{chapter} ({scale})", "config": cfg.to_dict()})
    return entries


@pytest.mark.parametrize("chapter", TRAINING_CHAPTERS)
def test_every_training_chapter_lists_its_configs(chapter):
    module = importlib.import_module(f"ssl_src.chapters.{chapter}")
    smoke = nets_of(module, "smoke")
    assert smoke and min(cfg.width for cfg in smoke) <= 4  # the smoke nets are the narrow ones the bug hits
    assert nets_of(module, "quick") and nets_of(module, "paper") != []


@pytest.mark.slow
@pytest.mark.timeout(900)
@x86
@pytest.mark.parametrize("threads", [1, 2])
def test_narrowest_preset_nets_train_under_avx2_kernels(threads, tmp_path):
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", OMP_NUM_THREADS=str(threads), SSL_RESULTS=str(tmp_path))
    nets = narrowest_nets()
    try:
        proc = subprocess.run([sys.executable, str(REPO / "tests" / "narrow_nets.py"), json.dumps(nets)], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"hung after 600 s; last lines:\n{out[-1500:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert proc.stdout.count("gradients ok") == len(nets)
    assert "trained ok capacity_vs_data (smoke)" in proc.stdout
