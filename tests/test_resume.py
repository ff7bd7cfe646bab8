"""Reliability: killed, interrupted and corrupted runs resume to the uninterrupted result; divergence stops
cleanly; two processes on one run store take turns."""
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest
import torch

from conftest import REPO
from ssl_src import train as training
from ssl_src.cli import main
from ssl_src.errors import TrainingStopped
from ssl_src.store import exclusive
from ssl_src.config import TrainConfig
from ssl_src.train import TIMING_FIELDS, train

CLI_RUN = ["--width", "4", "--batch-size", "32", "--image-size", "16", "--steps", "120", "--monitor-every", "20",
           "--checkpoint-every", "20", "--eval-train-images", "1000", "--eval-test-images", "200", "--no-progress"]
SMALL = TrainConfig(width=4, batch_size=32, image_size=16, steps=30, monitor_every=10, proj_layers=2,
                    eval_train_images=500, eval_test_images=100)


def start_cli(results, *extra):
    return subprocess.Popen([sys.executable, "-m", "ssl_src", "train", *CLI_RUN, *extra], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, SSL_RESULTS=str(results)))


def finish_cli(results, *extra):
    proc = start_cli(results, *extra)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1]), err


def run_dir(results):
    (path,) = [p for p in results.iterdir() if p.is_dir()]
    return path


def wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, "the run ended before the moment to interrupt it"
        assert time.time() < deadline
        time.sleep(0.02)


def stored(results):
    """Summary without its timings, and the loss / monitor logs, of the only run in `results`."""
    d = run_dir(results)
    summary = {k: v for k, v in json.loads((d / "summary.json").read_text()).items() if k not in TIMING_FIELDS}
    metrics = [(r["step"], r["loss"], r["lr"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
    monitor = (d / "monitor.jsonl").read_text()
    return summary, metrics, monitor


def checkpoint_step(path):
    """The step of a checkpoint file (its state is stored serialised beside a sha256)."""
    stored = torch.load(path, weights_only=True)
    return torch.load(io.BytesIO(stored["payload"].numpy().tobytes()), weights_only=True)["step"]


def flip_a_byte_inside_the_state(path):
    payload = torch.load(path, weights_only=True)["payload"].numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(payload[2000:2064])
    assert at > 0  # the state's bytes are stored verbatim
    at += 32
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def without_timings(summary):
    return {k: v for k, v in summary.items() if k not in TIMING_FIELDS}


@pytest.mark.slow
def test_sigkill_and_sigint_resume_to_the_uninterrupted_result_bitwise(tmp_path):
    reference, _ = finish_cli(tmp_path / "a")
    second, _ = finish_cli(tmp_path / "b")
    assert without_timings(reference) == without_timings(second)  # determinism without interruption
    assert stored(tmp_path / "a") == stored(tmp_path / "b")

    killed = tmp_path / "killed"
    proc = start_cli(killed)
    wait_for(killed / reference["run_id"] / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / reference["run_id"] / "summary.json").exists()
    resumed, err = finish_cli(killed)
    assert "resuming from step" in err.splitlines()[0], err
    assert without_timings(resumed) == without_timings(reference)
    assert stored(killed) == stored(tmp_path / "a")  # logs continue the checkpoint: no repeated or lost steps

    stopped = tmp_path / "sigint"
    proc = start_cli(stopped)
    wait_for(stopped / reference["run_id"] / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and out == ""
    assert "stopped by SIGINT" in err and "run the same command again to resume" in err
    resumed, err = finish_cli(stopped)
    assert "resuming from step" in err.splitlines()[0]
    assert without_timings(resumed) == without_timings(reference)
    assert stored(stopped) == stored(tmp_path / "a")


def hook_augment(monkeypatch, hook):
    """Route the loop's augmentation through hook(n, views), n counting calls from 1 (two per step); the
    hook may raise, send a signal or change the views. Returns a function that removes the hook."""
    calls = {"n": 0}
    real = training.augment

    def augment(*args, **kwargs):
        calls["n"] += 1
        return hook(calls["n"], real(*args, **kwargs))

    monkeypatch.setattr(training, "augment", augment)
    return lambda: monkeypatch.setattr(training, "augment", real)


def interrupt_after(monkeypatch, steps):
    """Make the training loop die (as a kill would) in the step after `steps` steps."""
    def die(n, views):
        if n > 2 * steps:
            raise KeyboardInterrupt
        return views

    return hook_augment(monkeypatch, die)


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_checkpoint_file(results_dir, monkeypatch):
    """train() end to end: the checkpoint file of the last multiple of checkpoint_every, the same result as
    uninterrupted, the checkpoints gone once finished (each method's state round-trips: test_train)."""
    cfg = replace(SMALL, method="directpred")
    reference = train(cfg, progress=False, checkpoint_every=0)
    restore = interrupt_after(monkeypatch, 17)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, force=True, checkpoint_every=5)
    restore()
    run_path = results_dir / reference["run_id"]
    assert checkpoint_step(run_path / "checkpoint.pt") == 15
    resumed = train(cfg, progress=False, checkpoint_every=5)
    assert without_timings(resumed) == without_timings(reference)
    assert not (run_path / "checkpoint.pt").exists()  # a finished run keeps model.pt only
    wall = json.loads((run_path / "provenance.json").read_text())["wall_seconds"]
    assert wall >= resumed["train_seconds"] + resumed["eval_seconds"]  # the steps before the interruption count too


@pytest.mark.slow
def test_a_corrupt_checkpoint_falls_back_to_the_previous_one_then_to_scratch(results_dir, monkeypatch, capsys):
    reference = train(SMALL, progress=False, checkpoint_every=0)
    newest = results_dir / reference["run_id"] / "checkpoint.pt"
    truncate = lambda path: path.write_bytes(path.read_bytes()[:1000])  # as a full disk would leave it
    for corrupt, corrupt_both, resumed_from in ((truncate, False, 10), (flip_a_byte_inside_the_state, False, 10),
                                                (truncate, True, None)):
        restore = interrupt_after(monkeypatch, 22)
        with pytest.raises(KeyboardInterrupt):
            train(SMALL, progress=False, force=True, checkpoint_every=10)
        restore()
        corrupt(newest)
        if corrupt_both:
            newest.with_name("checkpoint.prev.pt").write_bytes(b"not a checkpoint")
        capsys.readouterr()
        resumed = train(SMALL, progress=False, checkpoint_every=10)
        err = capsys.readouterr().err
        assert "checkpoint.pt is unreadable" in err
        assert (f"resuming from step {resumed_from}" in err) if resumed_from else ("resuming" not in err)
        assert without_timings(resumed) == without_timings(reference)


@pytest.mark.slow
def test_a_non_finite_loss_stops_the_run_marks_it_failed_and_keeps_the_last_checkpoint(results_dir, monkeypatch, capsys):
    poison = lambda n, views: views * math.nan if n > 2 * 12 else views  # non-finite from step 13 on
    restore = hook_augment(monkeypatch, poison)
    with pytest.raises(TrainingStopped) as stop:
        train(SMALL, progress=False, checkpoint_every=5)
    message = str(stop.value)
    assert stop.value.exit_code == 1
    run_id = message.split()[1]
    run = results_dir / run_id
    failed = json.loads((run / "failed.json").read_text())
    assert failed["step"] == 13 and failed["checkpoint_step"] == 10 and math.isfinite(failed["last_finite_loss"])
    assert "diverged at step 13" in message and "lr " in message and "last finite loss" in message
    assert checkpoint_step(run / "checkpoint.pt") == 10
    assert not (run / "summary.json").exists()
    # The command line says it in one line with exit code 1, and the failed run is not re-used as a result.
    restore()
    hook_augment(monkeypatch, poison)  # counting from the first call again
    args = ["train", "--width", "4", "--batch-size", "32", "--image-size", "16", "--steps", "30", "--monitor-every", "10",
            "--proj-layers", "2", "--eval-train-images", "500", "--eval-test-images", "100", "--no-progress",
            "--checkpoint-every", "5", "--force"]
    capsys.readouterr()
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("stopped: run") and "diverged at step 13" in err


@pytest.mark.slow
def test_two_processes_training_the_same_run_take_turns(tmp_path):
    first, second = start_cli(tmp_path), start_cli(tmp_path)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert without_timings(summaries[0]) == without_timings(summaries[1])
    errs = "".join(err for _, err in outputs)
    assert "re-using the stored result" in errs
    steps = [json.loads(line)["step"] for line in (run_dir(tmp_path) / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 120


def test_the_lock_makes_a_second_holder_wait(tmp_path):
    lock, events = tmp_path / "x.lock", []

    def second():
        with exclusive(lock, "busy", log=events.append):
            events.append("second holds it")

    with exclusive(lock, "busy", log=events.append):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        events.append("first releases")
    thread.join(5)
    assert events == ["busy", "first releases", "second holds it"]


@pytest.mark.slow
@pytest.mark.parametrize("during_step", [8, 30])  # 30: the last step, before evaluation
def test_sigterm_writes_a_checkpoint_and_the_rerun_completes_it(during_step, results_dir, monkeypatch, capsys):
    reference = train(SMALL, progress=False, checkpoint_every=0)
    def terminate(n, views):
        if n == 2 * (during_step - 1) + 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return views

    restore = hook_augment(monkeypatch, terminate)
    with pytest.raises(TrainingStopped) as stop:
        train(SMALL, progress=False, force=True, checkpoint_every=0)
    assert stop.value.exit_code == 128 + signal.SIGTERM
    assert f"stopped by SIGTERM after step {during_step} of 30" in str(stop.value)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is restored
    restore()
    capsys.readouterr()
    resumed = train(SMALL, progress=False, checkpoint_every=0)
    assert f"resuming from step {during_step} of 30" in capsys.readouterr().err.splitlines()[0]
    assert without_timings(resumed) == without_timings(reference)


def torchrun(results, port, *extra):
    """`python -m ssl_src train` under torchrun: 2 gloo processes on the CPU, one thread each."""
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                             str(port), "-m", "ssl_src", "train", *CLI_RUN, *extra], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, SSL_RESULTS=str(results), OMP_NUM_THREADS="1"))


def finish_torchrun(results, port):
    proc = torchrun(results, port)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    (summary,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]  # rank 0 alone reports
    return summary, err


def worker_of_rank(agent: subprocess.Popen, rank: int) -> int:
    """The pid of torchrun's worker process with RANK=`rank` (a child of its agent), once it has started."""
    deadline = time.time() + 120
    while time.time() < deadline:
        for child in (open(f"/proc/{agent.pid}/task/{agent.pid}/children").read().split()):
            try:
                environ = open(f"/proc/{child}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.05)
    raise AssertionError(f"no worker of rank {rank} under torchrun")


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="finds torchrun's workers through /proc")
def test_a_torchrun_run_with_one_rank_killed_resumes_to_the_uninterrupted_result(tmp_path):
    """2 gloo processes; SIGKILL to rank 1 after the first checkpoint brings the run down (torchrun stops the
    other rank); the same command again resumes both ranks from the checkpoint to the never-killed result: the
    summary and the logged losses, bitwise."""
    reference, _ = finish_torchrun(tmp_path / "a", 29541)
    killed = tmp_path / "killed"
    agent = torchrun(killed, 29542)
    rank1 = worker_of_rank(agent, 1)
    wait_for(killed / reference["run_id"] / "checkpoint.pt", agent)
    os.kill(rank1, signal.SIGKILL)
    agent.communicate(timeout=300)
    assert agent.returncode != 0 and not (killed / reference["run_id"] / "summary.json").exists()
    resumed, err = finish_torchrun(killed, 29543)
    assert "resuming from step" in err, err[-2000:]
    assert without_timings(resumed) == without_timings(reference)
    assert stored(killed) == stored(tmp_path / "a")  # no repeated or lost steps in the logs
