"""A chapter's runs: published ones read without training, the rest trained (in parallel) and published."""
import json
import shutil

import pytest

import ssl_src.sweep as sweep
from ssl_src.chapters import capacity_vs_data, resolve_parameters
from ssl_src.errors import UserError
from ssl_src.store import Run, publish, published_root


def smoke_configs(n: int = 2):
    p = resolve_parameters(capacity_vs_data.PRESETS, "smoke", seeds=[0], subsets=[1.0])
    return sweep.resolve(capacity_vs_data.configs(p))[:n]


def test_published_runs_are_read_and_never_trained(results_dir, monkeypatch):
    cfgs = smoke_configs()
    for cfg in cfgs:  # publish a made-up summary for each run
        run = Run(cfg.to_dict(), root=published_root("quick"))
        run.start()
        run.finish({"run_id": run.id, "made_up": True}, {"hardware": "elsewhere", "wall_seconds": 1.0,
                                                          "finished_at": "2026-11-01T00:00:00+0000"})
    monkeypatch.setattr(sweep, "train", lambda *a, **k: pytest.fail("a published run was trained"))
    assert all(s["made_up"] for s in sweep.run_summaries(cfgs, "quick", jobs=1, retrain=False))
    source = sweep.source_of(cfgs, "quick", retrain=False)
    assert len(source.published) == 2 and not source.trained_here
    monkeypatch.setenv("SSL_RETRAIN", "0")
    line = sweep.describe_source(cfgs, "quick")
    assert "2 run(s) on this page were read from the published results" in line and "elsewhere" in line
    assert "2026-11-01" in line and "--retrain" in line


def test_retrain_trains_again_and_publishes(results_dir, monkeypatch):
    cfgs = smoke_configs(1)
    trained = []

    def fake_train(cfg, progress=True):
        run = Run(cfg.to_dict())
        run.start()
        run.finish({"run_id": run.id, "fresh": True}, {"hardware": "here", "wall_seconds": 1.0})
        trained.append(run.id)
        return run.summary()

    monkeypatch.setattr(sweep, "train", fake_train)
    first = sweep.run_summaries(cfgs, "quick", jobs=1, retrain=False)  # missing: trained and published
    assert trained == [first[0]["run_id"]] and (published_root("quick") / trained[0] / "summary.json").exists()
    sweep.run_summaries(cfgs, "quick", jobs=1, retrain=False)  # now published: read
    assert len(trained) == 1
    monkeypatch.setenv("SSL_RETRAIN", "1")  # what `--retrain` hands the notebook's kernel
    sweep.run_summaries(cfgs, "quick", jobs=1)
    assert len(trained) == 2 and "re-computed here" in sweep.describe_source(cfgs, "quick")


def test_runs_whose_weights_a_later_stage_reads_are_published_with_them(results_dir, monkeypatch):
    """A teacher published without its weights is trained again, unless the working store holds them; either
    way its weights join the published set, and a published teacher with weights is read, never trained."""
    cfgs = smoke_configs(1)
    trained = []

    def fake_train(cfg, progress=True):
        run = Run(cfg.to_dict())
        run.start()
        run.weights_path.write_bytes(f"weights of training {len(trained) + 1}".encode())
        run.finish({"run_id": run.id}, {"hardware": "here", "wall_seconds": 1.0})
        trained.append(run.id)
        return run.summary()

    monkeypatch.setattr(sweep, "train", fake_train)
    sweep.run_summaries(cfgs, "quick", jobs=1, retrain=False)  # no run reads its weights: not published
    run_id = trained[0]
    assert not (published_root("quick") / run_id / "model.pt").exists()
    sweep.run_summaries(cfgs, "quick", jobs=1, retrain=False, weights_read={run_id})  # the working store has them
    assert len(trained) == 1 and (published_root("quick") / run_id / "model.pt").read_bytes() == b"weights of training 1"
    sweep.run_summaries(cfgs, "quick", jobs=1, retrain=False, weights_read={run_id})  # published with them: read
    assert len(trained) == 1
    sweep.run_summaries(cfgs, "quick", jobs=1, retrain=True)  # re-trained by a reader that names no weights
    assert len(trained) == 2 and (published_root("quick") / run_id / "model.pt").read_bytes() == b"weights of training 2"
    (published_root("quick") / run_id / "model.pt").unlink()
    Run(cfgs[0].to_dict()).weights_path.unlink()  # stored, finished, but without its weights: said, not guessed
    with pytest.raises(UserError, match=f"run {run_id} is stored without its weights"):
        sweep.run_summaries(cfgs, "quick", jobs=1, retrain=False, weights_read={run_id})
    shutil.rmtree(Run(cfgs[0].to_dict()).dir)  # a fresh clone: the teacher's weights nowhere
    sweep.run_summaries(cfgs, "quick", jobs=1, retrain=False, weights_read={run_id})
    assert trained == [run_id] * 3 and (published_root("quick") / run_id / "model.pt").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failing_run_is_reported_and_the_others_still_published(results_dir):
    """Two workers: a distilled student whose teacher does not exist fails with its reason; the other run is
    trained and published all the same, and the sweep ends in one error naming the failure."""
    from dataclasses import replace

    good = smoke_configs(2)[1]  # trained for 4 steps
    orphan = replace(good, method="distill", teacher="000000000000")
    with pytest.raises(UserError, match=r"1 of 2 runs failed.*teacher run '000000000000' not found"):
        sweep.run_summaries([good, orphan], "smoke", jobs=2, retrain=False, progress=False)
    assert (published_root("smoke") / Run(good.to_dict()).id / "summary.json").exists()


def test_jobs_come_from_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv("SSL_JOBS", "3")
    assert sweep.jobs_from_environment("quick") == 3
    monkeypatch.setenv("SSL_JOBS", "0")
    assert sweep.jobs_from_environment("smoke") == 1 and sweep.jobs_from_environment("quick") == sweep.cpu_cores()
    monkeypatch.setenv("SSL_JOBS", "two")
    with pytest.raises(UserError, match="SSL_JOBS must be a whole number"):
        sweep.jobs_from_environment("quick")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_parallel_runs_equal_the_same_runs_trained_one_by_one(results_dir, tmp_path, monkeypatch):
    """Two runs in two worker processes (one thread each) give the summaries of the same runs trained in
    this process with one thread: the maths of a run does not depend on its neighbours."""
    import torch

    from ssl_src.train import TIMING_FIELDS

    cfgs = smoke_configs(2)
    parallel = sweep.run_summaries(cfgs, "smoke", jobs=2, retrain=True, progress=False)
    monkeypatch.setenv("SSL_RESULTS", str(tmp_path / "serial"))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = sweep.run_summaries(cfgs, "smoke", jobs=1, retrain=True, progress=False)
    finally:
        torch.set_num_threads(previous)
    strip = lambda s: json.dumps({k: v for k, v in s.items() if k not in TIMING_FIELDS}, sort_keys=True)  # NaN == NaN
    assert [strip(s) for s in parallel] == [strip(s) for s in serial]
    assert all((results_dir / "smoke" / "runs" / s["run_id"] / "summary.json").exists() for s in parallel)


def test_a_stopped_run_crosses_the_process_boundary():
    """A worker's run that stops (a non-finite loss) reaches the sweep as itself, not as a broken pool."""
    import pickle

    from ssl_src.errors import TrainingStopped

    back = pickle.loads(pickle.dumps(TrainingStopped("loss is nan at step 7", 1)))
    assert isinstance(back, TrainingStopped) and str(back) == "loss is nan at step 7" and back.exit_code == 1


@pytest.mark.parametrize("kernel", [False, True])
def test_in_a_notebook_each_run_is_one_line_not_a_progress_bar(kernel, results_dir, monkeypatch, capsys):
    """In a Jupyter kernel every update of a progress bar stays on the page as a block of its own."""

    cfgs = smoke_configs(2)
    bars = []

    def fake_train(cfg, progress=True):
        bars.append(progress)
        run = Run(cfg.to_dict())
        run.start()
        run.finish({"run_id": run.id, "train_seconds": 12.3}, {"hardware": "here", "wall_seconds": 1.0})
        return run.summary()

    monkeypatch.setattr(sweep, "train", fake_train)
    assert not sweep.in_notebook()  # pytest is no Jupyter kernel
    monkeypatch.setattr(sweep, "in_notebook", lambda: kernel)
    sweep.run_summaries(cfgs, "quick", jobs=1, retrain=False)
    out = capsys.readouterr().out.splitlines()
    if kernel:
        assert bars == [False, False] and len(out) == 2
        assert out[0].startswith("trained run 1 of 2: simsiam resnet18 w4") and out[1].endswith(", 12 s")
    else:
        assert bars == [True, True] and out == []
