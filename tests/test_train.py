import json

import numpy as np
import pytest
import torch

from ssl_src.errors import UserError
from ssl_src.train import TrainConfig, iid_batches, lr_factor, set_learning_rates, train

TINY = TrainConfig(width=4, steps=3, batch_size=32, subset=0.01, image_size=16, proj_layers=2,
                   eval_train_images=600, eval_test_images=200)


def test_lr_schedule_warmup_then_cosine_to_zero():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_factor(0, 100, 0) == pytest.approx(1.0)
    assert lr_factor(100, 100, 0) == pytest.approx(0.0)


def test_fixed_lr_groups_ignore_the_schedule():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "fixed_lr": False, "initial_lr": 0.1},
                           {"params": [b], "fixed_lr": True, "initial_lr": 0.1}], lr=0.1)
    set_learning_rates(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.025), pytest.approx(0.1)]


def test_iid_batches_visit_every_image_once_per_epoch():
    indices = np.arange(100, 110)
    batches = list(iid_batches(indices, 3, steps=7, seed=0))
    assert len(batches) == 7 and all(len(b) == 3 for b in batches)
    for epoch in (batches[0:3], batches[3:6]):
        seen = np.concatenate(epoch)
        assert len(set(seen.tolist())) == 9 and set(seen.tolist()) <= set(indices.tolist())


def test_batch_larger_than_the_subset_is_refused(results_dir):
    with pytest.raises(UserError, match="larger than the subset"):
        train(TrainConfig(subset=0.001, batch_size=256, steps=1))
    assert not results_dir.exists()


def test_tiny_run_is_stored_and_reused(results_dir, capsys):
    first = train(TINY, progress=False)
    for key in ("run_id", "loss", "knn_acc", "linear_acc", "auc", "effective_rank", "pairs_per_s"):
        assert key in first
    run_dir = results_dir / first["run_id"]
    assert json.loads((run_dir / "config.json").read_text())["config"]["steps"] == 3
    assert [m["step"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())][-1] == 3
    assert json.loads((run_dir / "provenance.json").read_text())["seed"] == 0
    capsys.readouterr()
    again = train(TINY, progress=False)
    assert again == first and "re-using" in capsys.readouterr().err
    forced = train(TINY, progress=False, force=True)
    assert forced["run_id"] == first["run_id"] and forced["train_seconds"] != first["train_seconds"]


def test_run_trained_without_evaluation_is_evaluated_from_its_checkpoint(results_dir):
    bare = train(TINY, evaluate=False, progress=False)
    assert "knn_acc" not in bare
    full = train(TINY, progress=False)
    assert full["run_id"] == bare["run_id"] and 0 <= full["knn_acc"] <= 1
