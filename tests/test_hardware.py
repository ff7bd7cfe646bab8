"""Instruction sets, oneDNN's ISA cap and the precision they allow; what a run's provenance records."""
import pytest
import torch

from ssl_src import hardware
from ssl_src.hardware import autocast_dtype, describe, instruction_sets, native_bf16, onednn_uses_avx512

CPU = torch.device("cpu")
ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AVX2_ONLY = frozenset({"avx", "avx2", "fma"})


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a CPU with the given /proc/cpuinfo flags and oneDNN ISA cap."""
    def pretend(flags, cap=None):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        if cap:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        else:
            monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    return pretend


def test_native_bf16_needs_the_instructions_and_an_isa_cap_that_allows_them(cpu):
    cpu(ZEN4)
    assert native_bf16() and onednn_uses_avx512() and autocast_dtype("auto", CPU) == torch.bfloat16
    assert instruction_sets() == ["AVX2", "AVX-512", "AVX512-BF16"]
    cpu(ZEN4, "avx2")  # oneDNN told to use its AVX2 kernels: no native bf16 for it
    assert not native_bf16() and not onednn_uses_avx512() and autocast_dtype("auto", CPU) is None
    cpu(ZEN4, "AVX512_CORE")  # AVX-512 kernels, but not the bf16 ones
    assert onednn_uses_avx512() and not native_bf16()
    cpu(AVX2_ONLY)
    assert not native_bf16() and not onednn_uses_avx512() and instruction_sets() == ["AVX2"]


def test_bf16_runs_only_when_asked_on_a_cpu_without_native_bf16(cpu):
    cpu(AVX2_ONLY)
    assert autocast_dtype("auto", CPU) is None
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) == torch.bfloat16  # asked for explicitly
    cpu(ZEN4)
    assert autocast_dtype("fp32", CPU) is None


def test_describe_names_the_instruction_sets_and_the_cap(cpu):
    cpu(AVX2_ONLY, "AVX2")
    d = describe(CPU)
    assert d["instruction_sets"] == "AVX2" and d["onednn_max_isa"] == "AVX2" and d["native_bf16"] is False
    assert d["torch"] == torch.__version__ and d["torch_threads"] == torch.get_num_threads()
    cpu(frozenset())
    assert describe(CPU)["instruction_sets"].startswith("none of AVX2")
