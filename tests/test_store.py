import json

from ssl_src.store import Run, run_id, write_json_atomic
from ssl_src.config import TrainConfig


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


def test_run_id_hashes_the_training_semantics_not_the_package_version(monkeypatch):
    import ssl_src
    import ssl_src.store as store

    base = TrainConfig().to_dict()
    before = run_id(base)
    monkeypatch.setattr(ssl_src, "__version__", "99.0")
    assert run_id(base) == before  # a release that keeps the numbers keeps every published run
    monkeypatch.setattr(store, "TRAINING_SEMANTICS", store.TRAINING_SEMANTICS + 1)
    assert run_id(base) != before


def test_a_new_version_of_the_chunked_orderings_changes_only_their_runs_ids(monkeypatch):
    import ssl_src.store as store

    configs = {o: TrainConfig(ordering=o).to_dict() for o in ("iid", "subset", "single", "cumulative", "hybrid")}
    before = {o: run_id(c) for o, c in configs.items()}
    monkeypatch.setitem(store.PART_SEMANTICS, "chunked_orderings", store.PART_SEMANTICS["chunked_orderings"] + 1)
    changed = {o for o, c in configs.items() if run_id(c) != before[o]}
    assert changed == {"single", "cumulative", "hybrid"}


def finished_run(root, config: dict, summary: dict):
    from ssl_src.store import Run

    run = Run(config, root=root)
    run.start()
    run.log_metrics({"step": 20, "loss": 0.5})
    run.finish(dict(summary, run_id=run.id), {"hardware": "test", "wall_seconds": 1.0})
    (run.dir / "model.pt").write_bytes(b"weights")
    (run.dir / "checkpoint.pt").write_bytes(b"state")
    return run


def test_publish_copies_only_the_small_files_and_find_run_reads_either_place(results_dir):
    from ssl_src.store import find_run, publish, published_root

    run = finished_run(results_dir, {"x": 1}, {"loss": 0.1})
    published = publish(run, "quick")
    assert published.dir == published_root("quick") / run.id and published.finished()
    assert sorted(p.name for p in published.dir.iterdir()) == ["config.json", "metrics.jsonl", "provenance.json", "summary.json"]
    assert published.metrics() == [{"step": 20, "loss": 0.5}] and published.summary()["loss"] == 0.1
    assert find_run(run.id).dir == run.dir  # the working store first
    import shutil

    shutil.rmtree(run.dir)
    assert find_run(run.id, "quick").dir == published.dir


def test_find_run_names_what_is_missing(results_dir):
    import pytest

    from ssl_src.errors import UserError
    from ssl_src.store import find_run

    with pytest.raises(UserError, match="run abc is neither in the run store"):
        find_run("abc")
