"""What this machine can run: the device, the CPU's instruction sets, the precision worth using, and the
memory layout that keeps every convolution off oneDNN kernels that fail on it.

Every measurement and every run records `describe()`, because the same code takes different kernels on
different CPUs: AVX-512 with native bf16 on some, AVX2 only on others (most laptops), and
`ONEDNN_MAX_CPU_ISA` can make oneDNN use a lower instruction set than the CPU has.
"""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch

# The instruction sets worth naming, and the /proc/cpuinfo flag that says the CPU has each.
INSTRUCTION_SETS = {"AVX2": "avx2", "AVX-512": "avx512f", "AVX512-BF16": "avx512_bf16", "AMX": "amx_bf16"}
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which its convolutions still use native bf16 instructions.
BF16_ISA_CAPS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                 "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL")


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def instruction_sets() -> list[str]:
    """The named instruction sets this CPU has, e.g. ["AVX2", "AVX-512", "AVX512-BF16"]."""
    return [name for name, flag in INSTRUCTION_SETS.items() if flag in cpu_flags()]


def onednn_isa_cap() -> str | None:
    """The instruction-set cap oneDNN was given (ONEDNN_MAX_CPU_ISA, or its older name), None = the CPU's best."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.upper() if cap else None


def onednn_uses_avx512() -> bool:
    """Whether oneDNN's convolutions run their AVX-512 kernels here (else AVX2 or older ones)."""
    cap = onednn_isa_cap()
    return "avx512f" in cpu_flags() and (cap is None or cap.startswith(("AVX512", "AVX10")) or cap == "ALL")


def native_bf16() -> bool:
    """bf16 pays on the CPU only where oneDNN can use native bf16 instructions (AVX512-BF16 or AMX)."""
    has = "avx512_bf16" in cpu_flags() or "amx_bf16" in cpu_flags()
    cap = onednn_isa_cap()
    return has and (cap is None or cap in BF16_ISA_CAPS)


def autocast_dtype(precision: str, device: torch.device):
    """The autocast dtype of a precision: "fp32" none, "bf16" bf16 on any device (asked for), "auto" bf16 on
    CUDA and on CPUs with native bf16, else none."""
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda" or native_bf16():
        return torch.bfloat16
    return None


def describe(device: torch.device | None = None) -> dict:
    """What a measurement ran on: stored in every run's provenance and printed by `bench`."""
    device = device or pick_device()
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "instruction_sets": " ".join(instruction_sets()) or "none of " + ", ".join(INSTRUCTION_SETS),
            "onednn_max_isa": onednn_isa_cap() or "not capped",
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16(),
            "torch": torch.__version__,
            "accelerator": torch.cuda.get_device_name(device) if device.type == "cuda" else "none"}


# ----------------------------------------------------------------------------- convolutions that fail

# oneDNN's AVX2 1x1 backward-weights kernel (torch 2.14.1 and 2.15.0) spins forever with two threads, and
# corrupts memory or computes wrong gradients with one, for strided 1x1 convolutions with fewer than 8
# input channels in channels_last (the probe in the performance appendix: `python -m ssl_src probe-convs`).
# A ResNet's stride-2 shortcut of width w < 8 is such a convolution: a net that has one runs in NCHW
# throughout, on every CPU (`models.to_device_layout`).
CHANNELS_LAST_MIN_IN_CHANNELS_1X1_STRIDED = 8


def channels_last_fails(conv: torch.nn.Conv2d) -> bool:
    """Whether oneDNN may take a failing kernel for this convolution in channels_last."""
    return (conv.kernel_size == (1, 1) and conv.stride != (1, 1)
            and conv.in_channels // conv.groups < CHANNELS_LAST_MIN_IN_CHANNELS_1X1_STRIDED)
