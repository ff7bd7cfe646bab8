import json

import pytest
import torch

from ssl_src.errors import UserError
from ssl_src.hardware import describe
import timm.optim

from ssl_src import data as datasets
from ssl_src.methods import build_method
from ssl_src.models import build_backbone
from ssl_src.store import Run
from ssl_src.config import TrainConfig
from ssl_src.monitor import CollapseMonitor
from ssl_src.optim import build_optimizer, lr_factor, set_learning_rates
from ssl_src.train import train

TINY = TrainConfig(width=4, steps=3, batch_size=32, subset=0.01, image_size=16, proj_layers=2,
                   eval_train_images=600, eval_test_images=200, monitor_every=2)


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


@pytest.mark.parametrize("name", ["lars", "adamw"])
def test_lars_and_adamw_exclude_biases_and_norms_from_weight_decay(name):
    model = build_method("byol", build_backbone("resnet18", 4, 1), TrainConfig(width=4))
    opt = build_optimizer(model, TrainConfig(width=4, optimizer=name, weight_decay=1e-6))
    assert isinstance(opt, timm.optim.Lars if name == "lars" else torch.optim.AdamW)
    for group in opt.param_groups:
        assert all(p.ndim <= 1 for p in group["params"]) == (group["weight_decay"] == 0)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == trainable  # target net excluded


def test_sgd_decays_every_parameter_as_simsiam():
    model = build_method("simsiam", build_backbone("resnet18", 4, 1), TrainConfig(width=4))
    opt = build_optimizer(model, TrainConfig(width=4))
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups)


class ConstantBackbone(torch.nn.Module):
    """Maps every image to the same vector: complete collapse."""

    def forward(self, x):
        return torch.ones(len(x), 16) + 0 * x.mean()


class CollapsedMethod(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = ConstantBackbone()


def test_monitor_logs_collapse_and_warns_once(results_dir, capsys):
    run = Run({"x": 1})
    run.start()
    data = datasets.load("fashion_mnist")
    monitor = CollapseMonitor(run, data, TrainConfig(image_size=16), torch.device("cpu"))
    monitor(CollapsedMethod(), 10)
    monitor(CollapsedMethod(), 20)
    records = run.monitor()
    assert [r["step"] for r in records] == [10, 20] and records[0]["effective_rank"] < 2
    assert "alignment" not in records[0]  # no linear predictor, no predictor spectra
    assert capsys.readouterr().err.count("collapsed completely") == 1


class PixelMethod(torch.nn.Module):
    """A 'backbone' that returns the pixels: the monitor's kNN then measures the raw images."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Flatten()


def test_monitor_knn_separates_pixels_from_a_collapsed_backbone(results_dir):
    run = Run({"x": 2})
    run.start()
    monitor = CollapseMonitor(run, datasets.load("fashion_mnist"), TrainConfig(image_size=16), torch.device("cpu"))
    monitor(PixelMethod(), 0)
    monitor(CollapsedMethod(), 1)
    pixels, collapsed = run.monitor()
    assert pixels["weighted_knn20_acc"] > 0.7  # raw Fashion-MNIST pixels: ~80 % with a 2048-image bank
    assert collapsed["weighted_knn20_acc"] < 0.2  # every test image ties: chance level


def test_monitor_tracks_a_linear_predictor_against_its_input_correlation(results_dir):
    from dataclasses import replace

    summary = train(replace(TINY, method="byol", predictor="linear", steps=4), progress=False, evaluate=False)
    lines = (results_dir / summary["run_id"] / "monitor.jsonl").read_text().splitlines()
    first, *_, last = map(json.loads, lines)
    assert first["step"] == 0 and len(lines) == 3
    k = 16  # BYOL's projector output: 4 x width
    assert len(last["F_eigenvalues"]) == len(last["alignment"]) == len(last["predictor_eigenvalues"]) == k
    assert last["F_eigenvalues"] == sorted(last["F_eigenvalues"], reverse=True) and last["F_eigenvalues"][-1] >= -1e-9
    assert all(-1 - 1e-9 <= c <= 1 + 1e-9 for c in last["alignment"]) and last["predictor_asymmetry"] > 0


def test_batch_larger_than_the_subset_is_refused(results_dir):
    with pytest.raises(UserError, match="larger than the subset"):
        train(TrainConfig(subset=0.001, batch_size=256, steps=1))
    assert not results_dir.exists()


@pytest.mark.slow
def test_tiny_run_is_stored_and_reused(results_dir, capsys):
    first = train(TINY, progress=False)
    for key in ("run_id", "loss", "weighted_knn_acc", "knn_acc", "linear_acc", "auc", "effective_rank", "pairs_per_s"):
        assert key in first
    run_dir = results_dir / first["run_id"]
    assert json.loads((run_dir / "config.json").read_text())["config"]["steps"] == 3
    assert [m["step"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())][-1] == 3
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["seed"] == 0 and provenance["precision"] in ("torch.float32", "torch.bfloat16")
    assert provenance["machine"]["instruction_sets"] == describe()["instruction_sets"]  # AVX2, AVX-512, AVX512-BF16, AMX
    assert "onednn_max_isa" in provenance["machine"] and "native_bf16" in provenance["machine"]
    assert [r["step"] for r in map(json.loads, (run_dir / "monitor.jsonl").read_text().splitlines())] == [0, 2, 3]
    capsys.readouterr()
    again = train(TINY, progress=False)
    assert again == first and "re-using" in capsys.readouterr().err
    forced = train(TINY, progress=False, force=True)
    assert forced["run_id"] == first["run_id"] and forced["train_seconds"] != first["train_seconds"]


@pytest.mark.slow
def test_stop_after_trains_the_first_steps_of_the_full_schedule(results_dir, tmp_path, monkeypatch):
    """What the replay check compares: the first steps of a run, on the run's own lr schedule, bitwise."""
    from dataclasses import replace

    from ssl_src.store import StoredRun

    cfg = replace(TINY, steps=6)
    full = train(cfg, progress=False, log_every=2, evaluate=False)
    curve = lambda root, run_id: [(m["step"], m["loss"], m["lr"]) for m in StoredRun(root / run_id, run_id).metrics()]
    monkeypatch.setenv("SSL_RESULTS", str(tmp_path / "other"))
    partial = train(cfg, progress=False, log_every=2, stop_after=4)
    assert partial == {"run_id": full["run_id"], "stopped_at": 4}
    assert curve(tmp_path / "other", full["run_id"]) == curve(results_dir, full["run_id"])[:2]
    assert not (tmp_path / "other" / full["run_id"] / "summary.json").exists()  # never mistaken for a finished run


@pytest.mark.slow
def test_run_trained_without_evaluation_is_evaluated_from_its_checkpoint(results_dir):
    bare = train(TINY, evaluate=False, progress=False)
    assert "knn_acc" not in bare
    full = train(TINY, progress=False)
    assert full["run_id"] == bare["run_id"] and 0 <= full["knn_acc"] <= 1


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "basic50", "bottleneck26", "bottleneck26_2x",
                                  "vit_small", "vit_small_d6", "vit_small_d3"])
def test_every_backbone_takes_a_training_step(arch, results_dir):
    cfg = TrainConfig(arch=arch, width=2, steps=1, batch_size=16, subset=0.01, image_size=16, proj_layers=2,
                      monitor_every=0)
    summary = train(cfg, evaluate=False, progress=False)
    assert summary["steps"] == 1 and summary["loss"] == summary["loss"]  # finite, not NaN


@pytest.mark.parametrize("method", ["simsiam", "byol", "nnsiam", "directpred"])
def test_a_train_state_round_trips_through_its_state_dict(method):
    """A state saved after 3 steps and loaded into a freshly built one continues exactly as the original
    (target nets, queue, correlation, optimizer, generators and loss windows all come back)."""
    import io
    from dataclasses import replace

    from ssl_src.train import build_model, new_state, resolved, train_step

    data = datasets.load("fashion_mnist")
    cfg = resolved(replace(TINY, method=method, steps=6, monitor_every=0, queue_size=64 if method == "nnsiam" else 0),
                   len(data.train_images))
    batches = [torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(i))[:32].numpy()
               for i in range(6)]
    fresh = lambda: new_state(cfg, build_model(cfg, data.channels), data, torch.device("cpu"), steps_per_epoch=4)
    original = fresh()
    for idx in batches[:3]:
        original.record(train_step(original, idx))
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)  # through bytes, as a checkpoint file
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    rng = torch.get_rng_state()
    later = [train_step(original, idx) for idx in batches[3:]]
    torch.set_rng_state(rng)
    restored = fresh()
    restored.load_state_dict(checkpoint)
    assert restored.step == 3 and len(restored.epoch_losses) == 3 and len(restored.window) == 3
    assert torch.equal(torch.stack([train_step(restored, idx) for idx in batches[3:]]), torch.stack(later))
    for (name, a), b in zip(original.method.state_dict().items(), restored.method.state_dict().values()):
        assert torch.equal(a, b), name
    assert checkpoint["train_seconds"] >= 0 and checkpoint["generators"][0].dtype == torch.uint8


def test_every_runs_on_multiples_and_at_the_last_step_only_when_asked():
    from ssl_src.train import Every

    log, checkpoint, off = Every(4, print), Every(4, print, last=False), Every(0, print)
    assert [s for s in range(1, 11) if log.due(s, 10)] == [4, 8, 10]
    assert [s for s in range(1, 13) if checkpoint.due(s, 12)] == [4, 8]  # never at the last step, even a multiple
    assert not any(off.due(s, 10) for s in range(1, 11))
