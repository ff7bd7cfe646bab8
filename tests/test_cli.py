"""The command line: its happy paths and its one-line errors (exit 2, no traceback, nothing written)."""
import json

import pytest

from conftest import run_cli

TINY = ["--width", "4", "--steps", "2", "--batch-size", "32", "--subset", "0.01", "--image-size", "16",
        "--proj-layers", "2", "--no-progress"]

ERROR_CASES = [
    (["train", "--method", "simclr"], "unknown method 'simclr'; valid: simsiam"),
    (["train", "--arch", "resnet19"], "unknown arch 'resnet19'; valid: resnet18"),
    (["train", "--dataset", "mnist"], "unknown dataset 'mnist'; valid: cifar10"),
    (["train", "--width", "0"], "width must be a positive integer, got 0"),
    (["train", "--batch-size", "-4"], "batch_size must be a positive integer, got -4"),
    (["train", "--steps", "-1"], "steps must be >= 0, got -1"),
    (["train", "--subset", "1.5"], "subset must be in (0, 1], got 1.5"),
    (["train", "--subset", "0"], "subset must be in (0, 1], got 0.0"),
    (["train", "--subset", "0.001", "--batch-size", "256"], "larger than the subset"),
    (["train", "--stem", "vit"], "unknown stem 'vit'; valid: cifar, imagenet"),
    (["train", "--precision", "fp8"], "invalid choice: 'fp8'"),
    (["train", "--steps", "many"], "invalid int value: 'many'"),
    (["data", "verify", "mnist"], "unknown dataset 'mnist'"),
    (["chapter", "no_such_chapter", "--scale", "smoke"], "unknown chapter 'no_such_chapter'; valid: capacity_vs_data"),
    (["chapter", "capacity_vs_data", "--scale", "huge"], "unknown scale 'huge'; valid: smoke, quick, paper"),
    (["chapter", "capacity_vs_data", "--scale", "smoke", "-p", "stepz", "3"], "unknown parameter(s) stepz; valid:"),
    (["chapter", "capacity_vs_data", "--scale", "smoke", "-p", "scale", "quick"], "pass the scale with --scale"),
    (["book", "--scale", "huge"], "unknown scale 'huge'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("args, message", ERROR_CASES, ids=[" ".join(a) for a, _ in ERROR_CASES])
def test_bad_input_is_one_line_with_exit_2(args, message, tmp_path):
    results = tmp_path / "results"
    code, out, err = run_cli(*args, env={"SSL_RESULTS": str(results)})
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert "Traceback" not in err
    assert not results.exists()


def test_train_prints_a_json_summary_last(tmp_path):
    code, out, err = run_cli("train", *TINY, "--eval-train-images", "600", "--eval-test-images", "200",
                             env={"SSL_RESULTS": str(tmp_path)})
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    for key in ("run_id", "loss", "knn_acc", "linear_acc", "auc", "effective_rank", "pairs_per_s"):
        assert key in summary
    assert (tmp_path / summary["run_id"] / "summary.json").exists()
    code, out, err = run_cli("train", *TINY, "--eval-train-images", "600", "--eval-test-images", "200",
                             env={"SSL_RESULTS": str(tmp_path)})
    assert "re-using" in err and json.loads(out.strip().splitlines()[-1])["run_id"] == summary["run_id"]


def test_data_verify_passes_on_the_installed_copy():
    code, out, err = run_cli("data", "verify", "fashion_mnist")
    assert code == 0 and "all checksums match" in out


def test_data_verify_fails_without_any_copy(tmp_path):
    code, out, err = run_cli("data", "verify", "cifar10", env={"SSL_DATA": str(tmp_path)})
    assert code == 1 and "data fetch cifar10" in err


def test_help_lists_every_command():
    code, out, _ = run_cli("--help")
    assert code == 0 and all(cmd in out for cmd in ("train", "data", "chapter", "book"))
