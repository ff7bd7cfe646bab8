import json

from ssl_src.store import Run, run_id, write_json_atomic
from ssl_src.train import TrainConfig


def test_run_id_is_stable_and_sensitive_to_every_field():
    base = TrainConfig().to_dict()
    assert run_id(base) == run_id(json.loads(json.dumps(base)))
    assert run_id(base) != run_id(dict(base, seed=1))
    assert run_id(base) != run_id(dict(base, augment=dict(base["augment"], flip_p=0.0)))


def test_atomic_write_leaves_only_the_target(tmp_path):
    write_json_atomic(tmp_path / "a" / "x.json", {"v": 1})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"v": 1}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]


def test_a_truncated_summary_does_not_count_as_finished(tmp_path):
    run = Run({"x": 1}, root=tmp_path)
    run.start()
    assert not run.finished()
    run.summary_path.write_text('{"loss": 0.1')  # as a crash mid-write would leave it without rename
    assert not run.finished()
    run.write_summary({"loss": 0.1})  # valid JSON, but not a summary of this run
    assert not run.finished()
    run.finish({"run_id": run.id, "loss": 0.1}, {"seed": 0})
    assert run.finished() and run.summary() == {"run_id": run.id, "loss": 0.1}
