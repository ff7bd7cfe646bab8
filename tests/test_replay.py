"""The replay check: bitwise on the machine that trained a run, and it fails when a published number is
not what the code computes."""
import json

import pytest

from ssl_src import replay
from ssl_src.store import publish, published_root
from ssl_src.train import train


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_replay_is_bitwise_here_and_catches_a_doctored_number(results_dir, monkeypatch):
    cfg = replay.smoke_reference_config()
    from dataclasses import replace

    from ssl_src.store import Run

    quick_like = replace(cfg, steps=40)  # a published "quick" run, trained here
    train(quick_like, progress=False, log_every=20)
    publish(Run(quick_like.to_dict()), "quick")
    replay.make_smoke_reference(log=lambda msg: None)
    lines = []
    run_id = Run(quick_like.to_dict()).id
    assert replay.replay(steps=40, run_id=run_id, log=lines.append), "\n".join(lines)
    assert any("bitwise" in line for line in lines) and lines[-1].endswith("smoke reference agrees")

    metrics = published_root("quick") / run_id / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    records[0]["loss"] *= 1.0 + 1e-6  # a published number no code produces
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    lines.clear()
    assert not replay.replay(steps=40, run_id=run_id, log=lines.append)
    assert any("DIFFERS" in line and "loss at step 20" in line for line in lines)


def test_another_machine_is_compared_within_the_tolerance():
    published = {"loss at step 20": -0.5, "loss at step 40": 0.01}
    close = {"loss at step 20": -0.51, "loss at step 40": 0.012}  # 2 % of 0.5; 0.002 of the 0.1 floor
    far = {"loss at step 20": -0.6, "loss at step 40": 0.01}
    tol = dict.fromkeys(published, replay.LOSS_TOLERANCE)
    quiet = lambda msg: None
    assert replay.compare("x", published, close, tol, bitwise=False, relative=True, log=quiet)
    assert not replay.compare("x", published, close, tol, bitwise=True, relative=True, log=quiet)
    assert not replay.compare("x", published, far, tol, bitwise=False, relative=True, log=quiet)


def test_replay_names_a_run_that_is_not_published(results_dir):
    from ssl_src.errors import UserError

    with pytest.raises(UserError, match="quick run nope is not published"):
        replay.replay_loss_curve("nope", 10)


def test_a_run_trained_on_avx2_replays_with_this_cpu_capped_to_avx2(monkeypatch):
    avx2 = {"machine": {"aten_cpu_capability": "AVX2"}}
    monkeypatch.setattr(replay, "describe", lambda: {"aten_cpu_capability": "AVX512"})
    assert replay.kernel_caps(avx2) == {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert replay.kernel_caps({"machine": {"aten_cpu_capability": "AVX512"}}) == {}
    monkeypatch.setattr(replay, "describe", lambda: {"aten_cpu_capability": "AVX2"})  # already capped, or an AVX2 CPU
    assert replay.kernel_caps(avx2) == {}
