"""The command line: its happy paths and its one-line errors (exit 2, no traceback, nothing written)."""
import json

import pytest

from conftest import run_cli
from ssl_src.cli import main

TINY = ["--width", "4", "--steps", "2", "--batch-size", "32", "--subset", "0.01", "--image-size", "16",
        "--proj-layers", "2", "--no-progress"]

CHAPTER = ["chapter", "capacity_vs_data", "--scale", "smoke", "-p"]
ERROR_CASES = [
    (["train", "--method", "simclr"], "unknown method 'simclr'; valid: byol, directcopy, directpred, distill, mocov3"),
    (["train", "--arch", "resnet19"], "unknown arch 'resnet19'; valid: resnet18"),
    (["train", "--dataset", "mnist"], "unknown dataset 'mnist'; valid: cifar10"),
    (["train", "--width", "0"], "width must be a positive integer, got 0"),
    (["train", "--batch-size", "-4"], "batch_size must be a positive integer, got -4"),
    (["train", "--steps", "-1"], "steps must be >= 0, got -1"),
    (["train", "--subset", "1.5"], "subset must be in (0, 1], got 1.5"),
    (["train", "--subset", "0"], "subset must be in (0, 1], got 0.0"),
    (["train", "--subset", "0.001", "--batch-size", "256"], "larger than the subset"),
    (["train", "--stem", "vit"], "unknown stem 'vit'; valid: cifar, imagenet"),
    (["train", "--precision", "fp8"], "unknown precision 'fp8'; valid: auto, bf16, fp32"),
    (["train", "--steps", "many"], "invalid int value: 'many'"),
    (["train", "--ordering", "shuffled"], "unknown ordering 'shuffled'; valid: iid, subset, single"),
    (["train", "--ordering", "single", "--chunks", "1000"], "a chunk holds 60 images, fewer than the batch size 256"),
    (["train", "--optimizer", "adam"], "unknown optimizer 'adam'; valid: sgd, lars, adamw"),
    (["train", "--method", "distill"], "distill needs a teacher"),
    (["train", "--method", "distill", "--teacher", "0123456789ab"], "teacher run '0123456789ab' not found"),
    (["train", "--method", "byol", "--no-stop-grad"], "--no-stop-grad applies to simsiam only"),
    (["train", "--method", "nnsiam", "--queue-size", "16"], "queue size 16 must be at least the batch size 256"),
    (["train", "--predictor", "deep"], "unknown predictor 'deep'; valid: mlp, linear"),
    (["train", "--arch", "vit_small", "--stem", "imagenet"], "--stem applies to ResNets only"),
    (["data", "verify", "mnist"], "unknown dataset 'mnist'"),
    (["chapter", "no_such_chapter", "--scale", "smoke"], "unknown chapter 'no_such_chapter'; valid: what_is_collapse, choosing_a_scale, capacity_vs_data"),
    (["chapter", "capacity_vs_data", "--scale", "huge"], "unknown scale 'huge'; valid: smoke, quick, paper"),
    (["chapter", "capacity_vs_data", "--scale", "smoke", "-p", "stepz", "3"], "unknown parameter(s) stepz; valid:"),
    (["chapter", "capacity_vs_data", "--scale", "smoke", "-p", "scale", "quick"], "pass the scale with --scale"),
    (["train", "--bn-views", "both"], "unknown bn_views 'both'; valid: joint, per_view"),
    (["train", "--checkpoint-every", "-5"], "checkpoint_every must be >= 0 (0 = never), got -5"),
    (CHAPTER + ["subsets", "[0]"], "subset must be in (0, 1], got 0"),
    (CHAPTER + ["subsets", "[0.5, 1.5]"], "subset must be in (0, 1], got 1.5"),
    (CHAPTER + ["subsets", "0.5"], "parameter subsets must be a non-empty list like [0.01, 1.0], got 0.5"),
    (CHAPTER + ["seeds", "[]"], "parameter seeds must be a non-empty list"),
    (CHAPTER + ["seeds", "[0.5]"], "parameter seeds: every item must be int, got [0.5]"),
    (CHAPTER + ["steps", "abc"], "parameter steps must be int like 4, got 'abc'"),
    (CHAPTER + ["steps", "-3"], "steps must be >= 0, got -3"),
    (CHAPTER + ["widths", "[0]"], "width must be a positive integer, got 0"),
    (CHAPTER + ["batch_size", "4096"], "batch size 4096 is larger than the subset (600 images)"),
    (CHAPTER + ["archs", "[resnet9]"], "unknown arch 'resnet9'; valid: resnet18"),
    (CHAPTER + ["dataset", "mnist"], "unknown dataset 'mnist'; valid: cifar10"),
    (CHAPTER + ["dataset", "imagenet"], "dataset 'imagenet' not found under"),
    (CHAPTER + ["bn_views", "both"], "unknown bn_views 'both'; valid: joint, per_view"),
    (CHAPTER + ["lr", "fast"], "parameter lr must be float like 0.05, got 'fast'"),
    (CHAPTER + ["steps", "[1"], "parameter steps: cannot read value '[1'"),
    (["chapter", "performance", "--scale", "smoke", "-p", "widths", "[0]"], "parameter widths must hold positive integers"),
    (["chapter", "performance", "--scale", "smoke", "-p", "rounds", "0"], "parameter rounds must be a positive integer"),
    (["book", "--scale", "huge"], "unknown scale 'huge'"),
    (["book", "--scale", "smoke", "--cell-time-limit", "0"], "the cell time limit must be a positive number of seconds, got 0"),
    (CHAPTER[:-1] + ["--cell-time-limit", "-5"], "the cell time limit must be a positive number of seconds, got -5"),
    (["probe-convs", "--batch", "0"], "--time-limit, --batch, --size, --channels, --kernels, --strides and --threads must be positive"),
    (["probe-convs", "--strides", "0"], "--strides and --threads must be positive"),
    (["probe-convs", "--precisions", "fp16"], "invalid choice: 'fp16'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (CHAPTER[:-1] + ["--jobs", "-1"], "--jobs must be >= 0 (0 = the default), got -1"),
    (["runs", "learning_dynamics", "--scale", "smoke"], "chapter learning_dynamics trains no stored runs"),
    (["runs", "capacity_vs_data", "--scale", "smoke", "-p", "colour", "red"], "unknown parameter(s) colour"),
    (["runs", "capacity_vs_data", "--scale", "smoke", "--jobs", "-2"], "jobs must be at least 1, got -2"),
    (["replay", "--run", "nope"], "quick run nope is not published"),
    (["claims", "--scale", "huge"], "unknown scale 'huge'; valid: smoke, quick, paper"),
    (["claims", "--scale", "smoke"], "no chapter has been rendered at scale smoke: python -m ssl_src book --scale smoke"),
]


def run_main(args, capsys):
    """The CLI entry point in-process (the table below would take minutes in subprocesses)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, message, results):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert "Traceback" not in err
    assert not results.exists()  # validated before any work: no run, no chapter results, no notebook executed


@pytest.mark.parametrize("args, message", ERROR_CASES, ids=[" ".join(a) for a, _ in ERROR_CASES])
def test_bad_input_is_one_line_with_exit_2(args, message, results_dir, capsys):
    code, out, err = run_main(args, capsys)
    assert_one_line_error(code, err, message, results_dir)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [ERROR_CASES[0], ERROR_CASES[11], (CHAPTER + ["subsets", "[0]"], "subset must be in (0, 1]")])
def test_a_real_process_prints_one_line_and_exits_2(args, message, tmp_path):
    results = tmp_path / "results"
    code, out, err = run_cli(*args, env={"SSL_RESULTS": str(results)})
    assert_one_line_error(code, err, message, results)


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simsiam", "byol", "mocov3", "nnsiam", "directpred", "directcopy", "distill"])
def test_every_method_trains_from_the_cli(method, tmp_path):
    env = {"SSL_RESULTS": str(tmp_path)}
    extra = []
    if method == "distill":  # the teacher is a stored run (here a 0-step resnet50)
        code, out, err = run_cli("train", *TINY, "--arch", "resnet50", "--steps", "0", "--no-eval", env=env)
        extra = ["--teacher", json.loads(out.strip().splitlines()[-1])["run_id"]]
    code, out, err = run_cli("train", *TINY, "--method", method, "--no-eval", "--monitor-every", "1", *extra, env=env)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["method"] == method and summary["loss"] is not None
    assert len((tmp_path / summary["run_id"] / "monitor.jsonl").read_text().splitlines()) == 3  # steps 0 (initialisation), 1 and 2


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tmp_path):
    """gloo DDP, 2 processes x 32 images vs 1 process x 64: finite, close loss; one summary printed."""
    import subprocess
    import sys

    from conftest import REPO

    args = ["train", "--method", "byol", "--width", "4", "--steps", "4", "--batch-size", "64", "--subset", "0.05",
            "--image-size", "16", "--no-progress", "--no-eval", "--monitor-every", "0", "--checkpoint-every", "2"]
    env = dict(__import__("os").environ, SSL_RESULTS=str(tmp_path), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
                           "-m", "ssl_src", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # rank 0 alone reports
    code, out, err = run_cli(*args, env={"SSL_RESULTS": str(tmp_path)})
    single = json.loads(out.strip().splitlines()[-1])
    assert single["run_id"] != summaries[0]["run_id"]  # the split is part of the run's identity
    assert abs(summaries[0]["loss"] - single["loss"]) < 0.1 * abs(single["loss"])
    provenance = json.loads((tmp_path / summaries[0]["run_id"] / "provenance.json").read_text())
    assert provenance["data_parallel_processes"] == 2


@pytest.mark.slow
def test_data_verify_passes_on_the_installed_copy():
    code, out, err = run_cli("data", "verify", "fashion_mnist")
    assert code == 0 and "all checksums match" in out


@pytest.mark.slow
def test_data_verify_fails_without_any_copy(tmp_path):
    code, out, err = run_cli("data", "verify", "cifar10", env={"SSL_DATA": str(tmp_path)})
    assert code == 1 and "data fetch cifar10" in err


@pytest.mark.slow
def test_help_lists_every_command():
    code, out, _ = run_cli("--help")
    assert code == 0 and all(cmd in out for cmd in ("train", "data", "chapter", "book", "runs", "claims", "diagnose", "replay",
                                          "bench", "probe-convs"))
