import gzip
import hashlib
import pickle
import shutil

import numpy as np
import pytest
import torch

from ssl_src import data
from ssl_src.errors import UserError


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_DATA", str(tmp_path))  # the caches are keyed by the data root
    return tmp_path


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trips_a_generated_file(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(data.read_idx(tmp_path / "x.gz"), array)


def test_checksums_are_of_the_decompressed_content(data_dir):
    """A copy re-compressed differently (as Debian does) still verifies; a changed byte does not."""
    spec = data.manifest("fashion_mnist")
    target = data_dir / "fashion_mnist"
    target.mkdir()
    payload = b"\x00\x00\x08\x01" + np.asarray([3], dtype=">i4").tobytes() + bytes([1, 2, 3])
    entry = {"path": "labels.gz", "sha256_uncompressed": hashlib.sha256(payload).hexdigest()}
    small_spec = dict(spec, files={"labels": entry})
    with gzip.GzipFile(target / "labels.gz", "wb", mtime=0, compresslevel=9) as f:
        f.write(payload)
    assert data.check_files(small_spec, target) == []
    with gzip.GzipFile(target / "labels.gz", "wb", mtime=12345, compresslevel=1) as f:
        f.write(payload)
    assert data.check_files(small_spec, target) == []
    with gzip.GzipFile(target / "labels.gz", "wb") as f:
        f.write(payload[:-1] + b"\x09")
    problems = data.check_files(small_spec, target)
    assert len(problems) == 1 and "expected" in problems[0]


def test_fashion_mnist_loads_with_the_documented_shapes():
    d = data.load("fashion_mnist")
    assert d.train_images.shape == (60000, 1, 28, 28) and d.train_images.dtype == torch.uint8
    assert d.test_images.shape == (10000, 1, 28, 28)
    assert sorted(d.train_labels.unique().tolist()) == list(range(10))


def test_verify_accepts_the_installed_copy_and_flags_a_corrupt_one(data_dir):
    source = data.locate("fashion_mnist")
    corrupt = data_dir / "fashion_mnist"
    shutil.copytree(source, corrupt)
    with gzip.open(corrupt / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"not the labels")
    ok, lines = data.verify("fashion_mnist")
    assert ok  # the installed copy is still good
    assert any("t10k-labels" in line and "expected" in line for line in lines)


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(UserError, match="valid: .*fashion_mnist"):
        data.manifest("mnist_typo")


def test_subsets_are_deterministic_nested_prefixes():
    a = data.subset_indices(60000, 0.1)
    assert len(a) == 6000 and len(set(a.tolist())) == 6000
    assert np.array_equal(a, data.subset_indices(60000, 0.1))
    assert np.array_equal(data.subset_indices(60000, 0.01), a[:600])  # 1 % is inside 10 %
    # PCG64 is the same on every machine: pin the first indices of the 10 % subset
    assert a[:5].tolist() == data.data_permutation(60000)[:5].tolist()
    assert not np.array_equal(a, data.subset_indices(60000, 0.1, data_seed=1))


def test_subset_outside_unit_interval_is_refused():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(UserError, match="subset must be in"):
            data.subset_indices(100, bad)


def test_chunks_are_equal_disjoint_pieces_of_the_permutation():
    perm = data.data_permutation(1003)
    parts = data.chunks(perm, 10)
    assert [len(p) for p in parts] == [100] * 10
    assert np.array_equal(np.concatenate(parts), perm[:1000])


def test_cifar10_loader_on_generated_batches(data_dir):
    root = data_dir / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*[(f"data_batch_{i}", 4) for i in range(1, 6)], ("test_batch", 3)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    d = data.load("cifar10")
    assert d.train_images.shape == (20, 3, 32, 32) and d.test_images.shape == (3, 3, 32, 32)
    with open(root / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")[b"data"][0].reshape(3, 32, 32)
    assert np.array_equal(d.train_images[0].numpy(), first)  # channel-major rows, as CIFAR stores them


def test_stl10_loader_transposes_column_major_images(data_dir):
    root = data_dir / "stl10" / "stl10_binary"
    root.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 96, 96), dtype=np.uint8)  # (N, C, H, W)
    for split in ("train", "test"):
        images.transpose(0, 1, 3, 2).tofile(root / f"{split}_X.bin")  # STL stores (N, C, W, H)
        np.array([1, 10], dtype=np.uint8).tofile(root / f"{split}_y.bin")
    (root / "unlabeled_X.bin").write_bytes(b"")
    d = data.load("stl10")
    assert np.array_equal(d.train_images.numpy(), images)
    assert d.train_labels.tolist() == [0, 9]  # 1-based on disk
    assert d.unlabeled_images is None and len(d.pretrain_images) == 2  # an empty unlabelled file: the 2 alone


def test_stl10_pretrains_on_the_unlabelled_images_memory_mapped(data_dir):
    root = data_dir / "stl10" / "stl10_binary"
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    labelled, unlabeled = (rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8) for n in (3, 5))
    for split in ("train", "test"):
        labelled.transpose(0, 1, 3, 2).tofile(root / f"{split}_X.bin")
        np.array([1, 2, 3], dtype=np.uint8).tofile(root / f"{split}_y.bin")
    unlabeled.transpose(0, 1, 3, 2).tofile(root / "unlabeled_X.bin")
    d = data.load("stl10")
    assert isinstance(d.unlabeled_images.base, np.memmap)  # read a batch at a time, never loaded whole
    assert len(d.train_images) == 3 and len(d.pretrain_images) == 8  # evaluation: the labelled 3; training: all 8
    batch = d.pretrain_images[torch.tensor([7, 0, 4, 2, 3])]  # any order, across the two parts
    expected = np.concatenate([labelled, unlabeled])[[7, 0, 4, 2, 3]]
    assert batch.dtype == torch.uint8 and np.array_equal(batch.numpy(), expected)


def test_a_paper_preset_run_on_stl10_draws_from_the_unlabelled_images(data_dir, monkeypatch):
    """The Tian chapters' paper preset counts 105k images per epoch: the schedule spans labelled + unlabelled."""
    from ssl_src.config import TrainConfig
    from ssl_src.train import prepare

    root = data_dir / "stl10" / "stl10_binary"
    root.mkdir(parents=True)
    for split, n in (("train", 4), ("test", 2)):
        np.zeros((n, 3, 96, 96), dtype=np.uint8).tofile(root / f"{split}_X.bin")
        np.ones(n, dtype=np.uint8).tofile(root / f"{split}_y.bin")
    np.zeros((12, 3, 96, 96), dtype=np.uint8).tofile(root / "unlabeled_X.bin")
    cfg, loaded, schedule = prepare(TrainConfig(dataset="stl10", image_size=96, batch_size=4, steps=8, width=4))
    seen = np.concatenate(list(schedule.batches(cfg.seed)))
    assert len(loaded.pretrain_images) == 16 and seen.max() >= 4 and set(seen) == set(range(16))


def test_image_folder_loader_resizes_and_centre_crops(data_dir):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            folder = data_dir / "imagenet" / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40 + 10 * i, 30), color=(10 * i, 100, 200)).save(folder / f"{i}.png")
    d = data.load("imagenet", 16)
    assert d.train_images.shape == (4, 3, 16, 16) and d.test_labels.tolist() == [0, 0, 1, 1]
    assert d.train_images[0][2].float().mean().item() == pytest.approx(200, abs=1)
    # read when indexed, in the file list's order, like a tensor: by a tensor of indices, a slice or an int
    assert d.train_images[torch.tensor([3, 1])].shape == (2, 3, 16, 16)
    assert torch.equal(d.train_images[1:3], torch.stack([d.train_images[1], d.train_images[2]]))
    assert d.train_images[3][0].float().mean().item() == pytest.approx(10, abs=1)  # class n02, image 1


def test_missing_dataset_says_what_to_run(data_dir):
    with pytest.raises(UserError, match="not found under"):
        data.load("cifar10")
