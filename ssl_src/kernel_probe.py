"""Which convolutions the CPU's oneDNN kernels hang, crash or miscompute on: each case in its own process.

torch 2.14's oneDNN has an AVX2 kernel (1x1 backward-weights, channels_last) that spins forever with two
threads and corrupts memory with one on some narrow channel counts. A probe of such a bug cannot run in
the process it may kill, and importing torch for every case would cost seconds, so a worker process
imports torch once and forks a child per case (milliseconds); the worker kills a child at the time limit
and reports how it ended. A child that finishes also compares its gradients with a float64 reference
(ATen's own convolution, not oneDNN), so silent corruption is caught too.

`ONEDNN_MAX_CPU_ISA=AVX2` makes oneDNN pick its AVX2 kernels on an AVX-512 machine, so the AVX2 bug can
be probed on any x86 CPU: `python -m ssl_src probe-convs --isa AVX2`.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass

TOLERANCE = {"fp32": 1e-3, "bf16": 0.25}  # max |grad - float64 grad| / max |float64 grad|
WRONG_EXIT, ERROR_EXIT = 3, 4


@dataclass(frozen=True)
class ConvCase:
    """One Conv2d (no bias, padding kernel // 2 as in the ResNets), forward and backward, `repeats` times."""

    in_channels: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    channels_last: bool = True
    threads: int = 2
    precision: str = "fp32"
    batch: int = 32  # the failures do not depend on it (8 to 512 probed); the float64 reference is slow
    size: int = 28
    repeats: int = 3


DEFAULT_CHANNELS = (1, 2, 3, 4, 6, 7, 8, 12, 16, 32)  # 7 and 8: either side of the AVX2 bug's boundary


def grid(channels=DEFAULT_CHANNELS, kernels=(1, 3), strides=(1, 2), threads=(1, 2),
         precisions=("fp32",), layouts=(True, False), batch: int = 32, size: int = 28) -> list[ConvCase]:
    """Every combination of in/out channels (from `channels`), kernel, stride, layout, threads, precision."""
    return [ConvCase(i, o, k, s, cl, t, p, batch, size)
            for i, o, k, s, cl, t, p in itertools.product(channels, channels, kernels, strides, layouts, threads, precisions)]


def run_case(case: ConvCase) -> bool:
    """Forward + backward of the case (in the child); True when its gradients match the float64 reference."""
    import torch

    torch.set_num_threads(case.threads)
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(case.in_channels, case.out_channels, case.kernel, case.stride, case.kernel // 2, bias=False)
    x = torch.randn(case.batch, case.in_channels, case.size, case.size, generator=gen)
    layout = torch.channels_last if case.channels_last else torch.contiguous_format
    reference = _gradients(conv.double(), x.double(), layout)
    conv = conv.float()
    dtype = torch.bfloat16 if case.precision == "bf16" else None
    for _ in range(case.repeats):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            grads = _gradients(conv, x, layout)
    return all(float((g.double() - r).abs().max() / r.abs().max().clamp_min(1e-12)) <= TOLERANCE[case.precision]
               for g, r in zip(grads, reference))


def _gradients(conv, x, layout):
    import torch

    conv = conv.to(memory_format=layout)
    conv.zero_grad(set_to_none=True)
    x = x.to(memory_format=layout).detach().requires_grad_()  # a fresh leaf: no gradient accumulates
    out = conv(x)
    cotangent = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)  # not all-ones: every sign
    out.backward(cotangent.to(memory_format=layout))
    return x.grad, conv.weight.grad


def _outcome(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"crash ({signal.Signals(os.WTERMSIG(status)).name})"
    code = os.WEXITSTATUS(status)
    return {0: "ok", WRONG_EXIT: "wrong"}.get(code, f"error (exit {code})")


def _worker(cases_path: str, limit: float) -> None:
    """Fork a child for each case of the file (one JSON case a line); print one JSON result a line."""
    import torch  # imported once, before any fork: the children inherit it

    # Autograd imports modules on its first backward (~1 s); do it here, on two elements, which start no
    # OpenMP threads (a worker with a thread pool could not fork safely).
    torch.ones(2, requires_grad=True).mul(2).backward(torch.ones(2))  # an explicit gradient, as the cases give

    for line in open(cases_path):
        case = ConvCase(**json.loads(line))
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the worker's loop
            _die_with_parent()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # the results pipe is the worker's alone: it closes when the worker ends
            os.dup2(devnull, 2)  # glibc's "double free" lines: the outcome says it
            try:
                os._exit(0 if run_case(case) else WRONG_EXIT)
            except BaseException:
                os._exit(ERROR_EXIT)
        try:
            outcome = _wait(pid, started, limit)
        finally:
            _reap(pid)
        print(json.dumps(dict(asdict(case), outcome=outcome, seconds=round(time.perf_counter() - started, 3))), flush=True)


def _wait(pid: int, started: float, limit: float) -> str:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _outcome(status)
        if time.perf_counter() - started > limit:
            return "hang"
        time.sleep(0.005)


def _reap(pid: int) -> None:
    """Kill the child if it still runs (a hang, or the worker itself stopping) and collect it."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _die_with_parent() -> None:
    """A child spinning in a kernel must not outlive a worker that was killed (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def probe(cases: list[ConvCase], isa: str | None = "AVX2", limit: float = 10.0, progress: bool = True) -> list[dict]:
    """Run every case in a forked child of one worker process under `ONEDNN_MAX_CPU_ISA=isa` (None = the
    CPU's best); returns one record per case with its `outcome` ("ok", "hang", "crash (SIGNAME)", "wrong",
    "error (exit N)"), seconds and `isa`."""
    from tqdm.std import tqdm

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # CUDA's autograd threads would make the forks unsafe
    env.pop("DNNL_MAX_CPU_ISA", None)
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    records = []
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as cases_file:
        cases_file.write("".join(json.dumps(asdict(c)) + "\n" for c in cases))
        cases_file.flush()
        command = [sys.executable, "-m", "ssl_src.kernel_probe", "--worker", cases_file.name, str(limit)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as worker, \
                tqdm(total=len(cases), desc=f"probing convolutions (ISA {isa or 'native'})", disable=not progress,
                     file=sys.stderr, mininterval=2.0, ncols=100) as bar:
            deadline = threading.Timer(60 + len(cases) * (limit + 1), worker.kill)  # the probe never hangs either
            deadline.start()
            try:
                for line in iter(worker.stdout.readline, ""):  # line by line, not in read-ahead blocks
                    records.append(dict(json.loads(line), isa=isa or "native"))
                    bar.update(1)
            finally:
                deadline.cancel()
            if worker.wait(timeout=60) != 0 or len(records) != len(cases):
                raise RuntimeError(f"the probe worker ended after {len(records)} of {len(cases)} cases "
                                   f"(exit {worker.returncode})")
    return records


def routed(record: dict) -> bool:
    """Whether training would route this case off channels_last (`hardware.channels_last_fails`)."""
    import torch

    from .hardware import channels_last_fails

    conv = torch.nn.Conv2d(record["in_channels"], record["out_channels"], record["kernel"], record["stride"], bias=False)
    return record["channels_last"] and channels_last_fails(conv)


def failure_table(records: list[dict]):
    """One row per ISA, precision, kernel, stride and layout: how many cases failed, how (hang, crash,
    wrong gradients, error), at which input-channel counts, and whether training routes all of them."""
    import pandas as pd

    df = pd.DataFrame(records)
    df["failed"] = df.outcome != "ok"
    df["how"] = df.outcome.str.split(" ").str[0]
    df["routed"] = [routed(r) for r in records]
    df["layout"] = df.channels_last.map({True: "channels_last", False: "NCHW"})
    rows = []
    for key, group in df.groupby(["isa", "precision", "kernel", "stride", "layout"], sort=True):
        failed = group[group.failed]
        rows.append(dict(zip(["ISA", "precision", "kernel", "stride", "layout"], key), cases=len(group),
                         failed=len(failed), **{how: int((failed.how == how).sum()) for how in ("hang", "crash", "wrong", "error")},
                         failing_in_channels=" ".join(map(str, sorted(failed.in_channels.unique()))) or "-",
                         all_failures_routed=bool(failed.routed.all()), routed_cases=int(group.routed.sum())))
    return pd.DataFrame(rows)


def describe_failures(records: list[dict]) -> str:
    """The failing cases in a sentence: kernel, stride, layout and ISA with their input-channel counts."""
    rows = failure_table(records)
    rows = rows[rows.failed > 0]
    if rows.empty:
        return "no case failed"
    return "; ".join(f"{r.kernel}x{r.kernel} stride {r.stride}, {r.layout}, {r.precision}, ISA {r.ISA}: input channels "
                     f"{r.failing_in_channels} ({r.failed} of {r.cases} cases)" for r in rows.itertuples())


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(sys.argv[2], float(sys.argv[3]))
