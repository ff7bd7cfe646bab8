"""The paper scale's ImageFolder path: crops from the full image in DataLoader workers, seeded per view, batches
that follow the run's schedule over file indices, and training whose memory does not grow with the data."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from ssl_src import data
from ssl_src.augment import AugmentConfig
from ssl_src.bench import write_image_folder
from ssl_src.orderings import Schedule
from ssl_src.streaming import CropViews, crop_loader, random_resized_crop_box, step_keys


def test_the_crop_box_is_torchvisions():
    rng = np.random.default_rng(0)
    assert random_resized_crop_box(50, 50, (1, 1), (1, 1), rng) == (0, 0, 50, 50)  # the whole square image
    # no crop of the whole area fits a 100 x 20 image: the central crop of the nearest ratio (4/3), as torchvision
    from torchvision.transforms import RandomResizedCrop

    top, left, h, w = RandomResizedCrop.get_params(torch.zeros(3, 20, 100), [1.0, 1.0], [3 / 4, 4 / 3])
    assert random_resized_crop_box(100, 20, (1, 1), (3 / 4, 4 / 3), rng) == (left, top, w, h) == (36, 0, 27, 20)
    for _ in range(300):
        left, top, w, h = random_resized_crop_box(100, 60, (0.2, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= left and left + w <= 100 and 0 <= top and top + h <= 60
        assert 0.2 * 6000 * 0.9 <= w * h <= 6000 and 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


@pytest.fixture
def folder(tmp_path):
    """An ImageFolder of 2 classes x 6 files, each 96 x 32: black, with a red band in the 8 leftmost columns that
    a centre crop never sees."""
    paths = []
    for cls in ("n01", "n02"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(6):
            pixels = np.zeros((32, 96, 3), dtype=np.uint8)
            pixels[:, :8, 0] = 255
            Image.fromarray(pixels).save(tmp_path / "train" / cls / f"{i}.png")
            Image.fromarray(pixels).save(tmp_path / "val" / cls / f"{i}.png")
    paths, _ = data.image_folder_files(tmp_path / "train", ["n01", "n02"])
    return paths


def test_views_are_cut_from_the_full_image_not_its_centre(folder):
    views = CropViews(folder, 16, AugmentConfig(), seed=0)
    red = [views[(step, 0, 0)][:, 0].float().mean().item() > 20 for step in range(40)]
    assert any(red) and not all(red)  # some crops reach the left edge
    assert data.centre_crop(folder[0], 16)[0].max() == 0  # the centre crop never does
    assert views[(0, 0, 0)].shape == (2, 3, 16, 16) and views[(0, 0, 0)].dtype == torch.uint8


def test_a_view_depends_on_seed_step_and_slot_only(folder):
    views = CropViews(folder, 16, AugmentConfig(), seed=0)
    assert torch.equal(views[(3, 5, 1)], views[(3, 5, 1)])
    assert not torch.equal(views[(3, 5, 1)], views[(3, 6, 1)]) and not torch.equal(views[(3, 5, 1)], views[(4, 5, 1)])
    assert not torch.equal(views[(3, 5, 1)], CropViews(folder, 16, AugmentConfig(), seed=1)[(3, 5, 1)])
    first, second = views[(3, 5, 1)]
    assert not torch.equal(first, second)  # two different crops of one image


@pytest.mark.parametrize("ordering, chunks", [("iid", 0), ("single", 0), ("cumulative", 3), ("hybrid", 3)])
def test_the_loader_follows_the_schedule_over_file_indices(ordering, chunks):
    schedule = Schedule(data.subset_indices(60, 0.5), 60, 8, 12, ordering, chunks)
    expected = list(schedule.batches(seed=0, start_step=4))
    keys = list(step_keys(schedule.batches(seed=0, start_step=4), 4, slice(None)))
    assert [[index for _, _, index in step] for step in keys] == [b.tolist() for b in expected]
    assert [step[0][0] for step in keys] == list(range(4, 12))
    # two data-parallel processes take the two halves of each global batch, keeping their global slots
    halves = [list(step_keys(schedule.batches(seed=0, start_step=4), 4, slice(r * 4, (r + 1) * 4))) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == keys


def test_the_batches_do_not_depend_on_the_number_of_workers(folder):
    batches = lambda: iter([np.array([0, 3, 7, 11]), np.array([2, 2, 5, 9])])
    load = lambda workers: list(crop_loader(folder, 16, AugmentConfig(), 0, batches(), 0, slice(None), False, workers))
    serial, parallel = load(0), load(2)
    assert len(serial) == 2 and serial[0].shape == (4, 2, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))


def write_jpegs(root, files: int, side: int = 256):
    """`files` JPEGs of random colour blocks in 10 classes (`bench.write_image_folder`), and a 10-file val split."""
    write_image_folder(root / "imagenet", files, size=(side, side * 3 // 4))


PEAK_RSS = """
import json, resource, sys
from dataclasses import replace
from ssl_src.chapters import capacity_vs_data as capacity, resolve_parameters
from ssl_src.train import train
paper = capacity.config(resolve_parameters(capacity.PRESETS, "paper"), "resnet18", 64, 1.0, 0, 3)
summary = train(replace(paper, **json.loads(sys.argv[1])), progress=False, evaluate=sys.argv[2] == "evaluate")
print(json.dumps({"steps": summary["steps"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss_of_a_run(data_root, results, evaluate=True, **overrides) -> float:
    """Peak RSS of a paper-preset run (the capacity chapter's ResNet-18 at width 64, 224 px, ImageNet recipe) cut
    to 3 steps of 4 images, its evaluation to 84 images, without the live monitor (which holds its probe of 1024
    images decoded: bounded as well, and minutes of CPU at this width). The peak falls in a backward pass, whose
    activations vary by tens of MB from run to run at 4 images (by 200 MB at 16): a small batch keeps that noise
    well below what holding the data would add."""
    overrides = dict(dict(batch_size=4, eval_train_images=64, eval_test_images=20, precision="fp32", monitor_every=0),
                     **overrides)
    env = dict(os.environ, SSL_DATA=str(data_root), SSL_RESULTS=str(results), SSL_LOADER_WORKERS="2",
               OMP_NUM_THREADS="1")  # one thread: less allocator noise in the peak (about 40 MB here)
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, json.dumps(overrides), "evaluate" if evaluate else "no"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["steps"] == 3
    return record["peak_rss_mb"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_paper_preset_run_streams_imagenet_in_bounded_memory(tmp_path):
    """3000 JPEGs (431 MB decoded at 224 px, as the old loader held them) against 300: the peak memory of a
    paper-preset run must not grow with the data (a loader holding the images would add all 388 MB of the
    difference; the test allows half); each ordering trains over the file indices."""
    small, large = tmp_path / "small", tmp_path / "large"
    write_jpegs(small, 300)
    write_jpegs(large, 3000)
    decoded_mb = 2700 * 3 * 224 * 224 / 2**20
    peak_small = peak_rss_of_a_run(small, tmp_path / "r1")
    peak_large = peak_rss_of_a_run(large, tmp_path / "r2")
    assert peak_large - peak_small < 0.5 * decoded_mb, (peak_small, peak_large, decoded_mb)
    for ordering in ("single", "cumulative", "hybrid"):
        peak_rss_of_a_run(small, tmp_path / ordering, evaluate=False, ordering=ordering, chunks=3, subset=0.5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_streamed_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    from ssl_src.config import TrainConfig
    from ssl_src.train import train

    write_jpegs(tmp_path, 64, side=64)
    monkeypatch.setenv("SSL_DATA", str(tmp_path))
    monkeypatch.setenv("SSL_LOADER_WORKERS", "1")
    cfg = TrainConfig(dataset="imagenet", stem="imagenet", image_size=32, width=4, batch_size=8, steps=6,
                      monitor_every=0, precision="fp32", eval_train_images=32, eval_test_images=20)
    monkeypatch.setenv("SSL_RESULTS", str(tmp_path / "whole"))
    whole = train(cfg, progress=False)
    monkeypatch.setenv("SSL_RESULTS", str(tmp_path / "resumed"))
    assert train(cfg, progress=False, checkpoint_every=3, stop_after=3)["stopped_at"] == 3
    resumed = train(cfg, progress=False)
    assert resumed["loss"] == whole["loss"] and resumed["linear_acc"] == whole["linear_acc"]
