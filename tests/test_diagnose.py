"""`python -m ssl_src diagnose`: the report on matrices with known spectra, on a run, its weights and its
checkpoint, and one-line errors on bad input."""
import json

import numpy as np
import pytest
import torch

from ssl_src.cli import main
from ssl_src.config import TrainConfig
from ssl_src.diagnose import COMPLETE_SPREAD, PARTIAL_RANK_FRACTION, diagnose
from ssl_src.train import train


def with_spectrum(sigma, n=200, seed=0):
    """An n x d matrix whose centred singular values are exactly `sigma`: orthonormal columns orthogonal to the
    all-ones vector (centring leaves them alone), scaled, then rotated in feature space."""
    d = len(sigma)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), a]))
    u = q[:, 1 : d + 1]
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return u @ np.diag(sigma) @ v.T


def analytic(sigma):
    s = np.asarray(sigma, dtype=float)
    p = s / s.sum()
    return {"auc": float(np.mean(np.cumsum(s) / s.sum())), "rank": float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))}


@pytest.mark.parametrize("sigma, expected", [
    ([1.0] * 32, "healthy"),  # flat: AUC (d + 1) / 2d, effective rank d
    ([8.0, 4.0, 2.0, 1.0] + [0.0] * 28, "partial collapse"),  # four directions of 32
    ([1.0] + [0.0] * 31, "complete collapse"),  # rank one: AUC 1, effective rank 1
])
def test_known_spectra(sigma, expected, tmp_path):
    path = tmp_path / "features.npy"
    np.save(path, with_spectrum(sigma))
    report = diagnose(path)
    truth = analytic(sigma)
    assert report["singular_values"] == pytest.approx(sigma, abs=1e-9)
    assert report["auc"] == pytest.approx(truth["auc"], abs=1e-9)
    assert report["effective_rank"] == pytest.approx(truth["rank"], rel=1e-4)  # RankMe's eps moves the 5th digit
    assert report["dim"] == 32 and report["samples"] == 200
    assert report["reading"] == expected


def test_a_big_endian_matrix_is_read(tmp_path):
    path = tmp_path / "features.npy"
    np.save(path, with_spectrum([2.0] * 4).astype(">f8"))
    assert diagnose(path)["effective_rank"] == pytest.approx(4.0, rel=1e-5)


def test_flat_spectrum_values_by_hand(tmp_path):
    path = tmp_path / "features.pt"
    torch.save(torch.from_numpy(with_spectrum([2.0] * 4)), path)
    report = diagnose(path)
    assert report["auc"] == pytest.approx((0.25 + 0.5 + 0.75 + 1.0) / 4)
    assert report["effective_rank"] == pytest.approx(4.0, rel=1e-5)
    assert report["effective_rank_fraction"] == pytest.approx(1.0, rel=1e-5)


def test_identical_outputs_with_a_noise_floor_are_complete_collapse(tmp_path):
    """The spectrum of rounding noise is flat (AUC and effective rank read healthy); the spread of the
    normalised outputs is what shows that every sample maps to the same point."""
    rng = np.random.default_rng(1)
    path = tmp_path / "collapsed.npy"
    np.save(path, np.ones((300, 16)) + 1e-9 * rng.standard_normal((300, 16)))
    report = diagnose(path)
    assert report["effective_rank_fraction"] > PARTIAL_RANK_FRACTION
    assert report["normalised_std"] * 4 < COMPLETE_SPREAD
    assert report["reading"] == "complete collapse"


def test_json_and_plot(tmp_path, capsys):
    path, figure = tmp_path / "features.npy", tmp_path / "spectrum.png"
    np.save(path, with_spectrum([3.0, 2.0, 1.0, 1.0]))
    assert main(["diagnose", str(path), "--json", "--plot", str(figure)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reading"] == "healthy" and report["dim"] == 4 and "thresholds" in report
    assert figure.stat().st_size > 10_000
    assert main(["diagnose", str(path)]) == 0
    out = capsys.readouterr().out
    rank = analytic([3.0, 2.0, 1.0, 1.0])["rank"]  # 3.59
    assert "reading: HEALTHY" in out and f"effective rank: {rank:.2f} of d = 4" in out and "thresholds:" in out


def write(tmp_path, name, obj):
    path = tmp_path / name
    if isinstance(obj, str):
        path.write_text(obj)
    elif name.endswith(".npy"):
        np.save(path, obj)
    else:
        torch.save(obj, path)
    return str(path)


@pytest.mark.parametrize("name, obj, message", [
    ("vector.npy", np.ones(5), "expected an N x d feature matrix, got shape (5,)"),
    ("cube.pt", torch.ones(2, 3, 4), "expected an N x d feature matrix, got shape (2, 3, 4)"),
    ("one.npy", np.ones((1, 4)), "need at least 2 samples and 1 dimension"),
    ("nan.npy", np.full((4, 3), np.nan), "the matrix holds NaN or infinite values"),
    ("text.npy", "not an array", "not a NumPy array file"),
    ("text.pt", "not a tensor", "not a PyTorch file"),
    ("list.pt", [1, 2, 3], "holds a list, not a feature matrix"),
    ("weights.pt", {"head.weight": torch.ones(2)}, "neither a feature matrix nor the weights of a supported method"),
    ("fake_checkpoint.pt", {"payload": "text", "sha256": "0"}, "an unreadable training checkpoint"),
    ("strings.npy", np.array([["a", "b"], ["c", "d"]]), "expected numbers"),
    ("features.csv", "1,2\n3,4\n", "expected a run directory, a .npy or .pt feature matrix"),
])
def test_bad_input_is_one_line_with_exit_2(name, obj, message, tmp_path, capsys):
    code = main(["diagnose", write(tmp_path, name, obj)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_missing_path_and_a_model_without_its_config(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "nowhere.npy")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    path = write(tmp_path, "model.pt", {"backbone.conv1.weight": torch.ones(1)})
    assert main(["diagnose", path]) == 2
    assert "no readable run config" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["diagnose", str(tmp_path / "empty")]) == 2
    assert "without a finished run, weights or a checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_its_weights_and_its_checkpoint(results_dir, monkeypatch):
    """A checkpoint mid-run, then the finished run: the stored evaluation and the weights re-embedded on the
    same training images (by default those of the run's evaluation) agree."""
    cfg = TrainConfig(width=4, batch_size=32, image_size=16, steps=4, proj_layers=2, eval_train_images=400,
                      eval_test_images=100, monitor_every=0)
    stopped = train(cfg, progress=False, checkpoint_every=2, stop_after=2)
    run_dir = results_dir / stopped["run_id"]
    mid = diagnose(run_dir)
    assert mid["source"].endswith("checkpoint.pt") and mid["dim"] == 32 and mid["samples"] == 400
    summary = train(cfg, progress=False)
    stored = diagnose(run_dir)
    assert "stored evaluation" in stored["source"] and stored["auc"] == summary["auc"]
    weights = diagnose(run_dir / "model.pt")
    assert weights["samples"] == 400 and weights["auc"] == pytest.approx(summary["auc"], abs=1e-6)
    assert weights["effective_rank"] == pytest.approx(summary["effective_rank"], rel=1e-5)
    assert weights["arch"] == "resnet18" and weights["method"] == "simsiam"
    assert mid["auc"] != pytest.approx(weights["auc"], abs=1e-6)  # two steps of training moved it
    resampled = diagnose(run_dir, images=300)  # another sample: the weights embedded again
    assert resampled["source"].endswith("model.pt") and resampled["samples"] == 300
    monkeypatch.chdir(run_dir)
    assert diagnose(".")["auc"] == summary["auc"]  # a run directory named by a relative path
    elsewhere = results_dir / "elsewhere.pt"
    elsewhere.write_bytes((run_dir / "model.pt").read_bytes())
    assert diagnose(elsewhere, config_file=run_dir / "config.json")["auc"] == weights["auc"]


@pytest.mark.slow
def test_a_run_trained_without_evaluation_is_read_from_its_weights(results_dir):
    cfg = TrainConfig(width=4, batch_size=32, image_size=16, steps=2, proj_layers=2, eval_train_images=300,
                      monitor_every=0)
    summary = train(cfg, progress=False, evaluate=False)
    report = diagnose(results_dir / summary["run_id"])
    assert report["source"].endswith("model.pt") and report["samples"] == 300
