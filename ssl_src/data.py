"""Data sets described by `data_manifest/*.json`, loaded into memory as uint8 tensors, or (an ImageFolder such
as ImageNet, STL-10's unlabelled images) read from disk a batch at a time.

The manifest is the single source of truth: where a data set may be found (in order of
preference), the checksum of every file, its licence and citation. Loading verifies the
checksums once per process, so a corrupt file fails with one line, not a wrong result.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

MANIFEST_DIR = Path(__file__).resolve().parent.parent / "data_manifest"


def data_root() -> Path:
    """Where fetched data sets live: `$SSL_DATA`, else `./data`."""
    return Path(os.environ.get("SSL_DATA", "data")).expanduser()


def dataset_names() -> list[str]:
    return sorted(p.stem for p in MANIFEST_DIR.glob("*.json"))


def manifest(name: str) -> dict:
    path = MANIFEST_DIR / f"{name}.json"
    if not path.exists():
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(dataset_names())}")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- files


def _content_sha256(path: Path) -> str:
    """sha256 of the file's content, decompressing .gz (sources re-compress differently)."""
    opener = gzip.open if path.suffix == ".gz" else open
    digest = hashlib.sha256()
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _candidate_dirs(spec: dict) -> list[tuple[str, Path]]:
    dirs = []
    for source in spec["sources"]:
        if source["kind"] == "data_dir":
            dirs.append(("SSL_DATA", data_root() / spec["name"]))
        elif source["kind"] == "directory":
            dirs.append((f"Debian package {source['debian_package']}", Path(source["path"])))
    return dirs


def check_files(spec: dict, directory: Path) -> list[str]:
    """Problems with the data set's files in `directory` (empty list = every checksum matches)."""
    problems = []
    for key, entry in spec["files"].items():
        path = directory / entry["path"]
        if not path.exists():
            problems.append(f"{path} is missing")
        elif "sha256_uncompressed" not in entry:
            problems.append(f"{path}: the manifest records no checksum for it ({key})")
        else:
            try:
                actual = _content_sha256(path)
            except (OSError, EOFError, zlib.error) as exc:
                problems.append(f"{path} is unreadable ({exc})")
                continue
            if actual != entry["sha256_uncompressed"]:
                problems.append(f"{path} has sha256 {actual[:12]}..., expected {entry['sha256_uncompressed'][:12]}...")
    return problems


def _files_present(spec: dict, directory: Path) -> bool:
    return all((directory / e["path"]).exists() for e in spec["files"].values())


def locate(name: str) -> Path:
    """The first source directory that holds the data set with matching checksums."""
    return _locate(name, data_root())


@functools.lru_cache(maxsize=None)
def _locate(name: str, root: Path) -> Path:
    spec = manifest(name)
    tried = []
    for label, directory in _candidate_dirs(spec):
        if not _files_present(spec, directory):
            tried.append(f"{directory} ({label}): missing")
            continue
        problems = check_files(spec, directory)
        if not problems:
            return directory
        tried.append(f"{directory} ({label}): {problems[0]}")
    raise UserError(
        f"dataset {name!r} not available ({'; '.join(tried)}); run `python -m ssl_src data fetch {name}`"
    )


def verify(name: str) -> tuple[bool, list[str]]:
    """(ok, report lines) for every source directory that holds the data set."""
    spec = manifest(name)
    lines, ok = [], False
    for label, directory in _candidate_dirs(spec):
        if not directory.exists():
            lines.append(f"{directory} ({label}): not present")
            continue
        problems = check_files(spec, directory)
        if problems:
            lines.extend(f"{directory} ({label}): {p}" for p in problems)
        else:
            ok = True
            lines.append(f"{directory} ({label}): {len(spec['files'])} files, all checksums match")
    return ok, lines


def _download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, tmp)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, target)


def _located(name: str) -> Path | None:
    _locate.cache_clear()
    try:
        return locate(name)
    except UserError:
        return None


def _apt_install(package: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env)  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env)


def fetch(name: str, log=print) -> Path:
    """Make the data set available: re-use a verified copy, else apt-get (as root), else download."""
    spec = manifest(name)
    checksummed = all("sha256_uncompressed" in e for e in spec["files"].values())
    found = _located(name) if checksummed else None
    for source in spec["sources"]:
        if found:
            break
        if source["kind"] == "directory" and shutil.which("apt-get") and os.geteuid() == 0:
            log(f"{name}: installing Debian package {source['debian_package']}")
            _apt_install(source["debian_package"])
        elif source["kind"] == "url" and checksummed:
            for entry in spec["files"].values():
                url = source["base"] + entry["path"]
                log(f"{name}: downloading {url}")
                try:
                    _download(url, data_root() / name / entry["path"])
                except OSError as exc:
                    log(f"{name}: download failed ({exc})")
                    break
        else:
            continue
        found = _located(name)
    if found:
        log(f"{name}: verified copy at {found}")
        return found
    if not checksummed:
        raise UserError(
            f"dataset {name!r} is not fetched automatically; place it under {data_root() / name} "
            f"as described in data_manifest/{name}.json ({spec['archive']['file']}, md5 {spec['archive']['md5']})"
        )
    return locate(name)  # raises the one-line error naming every source tried


# ----------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class ImageData:
    """A labelled train/test split: images uint8 (N, C, H, W) (tensors, or FolderImages read when indexed),
    labels int64."""

    name: str
    train_images: torch.Tensor | FolderImages
    train_labels: torch.Tensor
    test_images: torch.Tensor | FolderImages
    test_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    unlabeled_images: np.ndarray | None = None  # (N, C, H, W), memory-mapped: STL-10's 100k

    @property
    def pretrain_images(self) -> "ImagePool":
        """What self-supervised training draws from: the training images, then the unlabelled ones where the data
        set has them (STL-10: 5k + 100k, as Tian et al. train); evaluation uses the labelled ones only."""
        if self.unlabeled_images is None:
            return ImagePool(self.train_images)
        return ImagePool(self.train_images, self.unlabeled_images)

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]


class ImagePool:
    """Parts of uint8 (N, C, H, W) images, in memory (tensors) or memory-mapped (arrays), indexed as one: a batch
    from a part on disk reads only its own images, so memory is bounded by the batch, not the data set."""

    def __init__(self, *parts):
        self.parts = parts
        self.offsets = np.cumsum([0, *(len(part) for part in parts)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        if len(self.parts) == 1:
            return self.parts[0][idx]
        idx = np.asarray(idx)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        out = torch.empty((len(idx), *self.parts[0].shape[1:]), dtype=torch.uint8)
        for k, part in enumerate(self.parts):
            rows = np.flatnonzero(which == k)
            if len(rows):
                local = idx[rows] - self.offsets[k]
                taken = part[torch.from_numpy(local)] if isinstance(part, torch.Tensor) else torch.from_numpy(
                    np.ascontiguousarray(part[local]))
                out[torch.from_numpy(rows)] = taken
        return out


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): big-endian dims header, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_idx(directory: Path, files: dict) -> tuple[np.ndarray, ...]:
    arrays = [read_idx(directory / files[k]["path"]) for k in ("train_images", "train_labels", "test_images", "test_labels")]
    arrays[0], arrays[2] = arrays[0][:, None], arrays[2][:, None]
    return tuple(arrays)


def _load_cifar_pickle(directory: Path, files: dict) -> tuple[np.ndarray, ...]:
    def read(paths):
        images, labels = [], []
        for path in paths:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        return np.concatenate(images), np.concatenate(labels)

    train = sorted((directory / files["train_batches"]["path"]).glob(files["train_batches"]["glob"]))
    if len(train) != files["train_batches"]["count"]:
        raise UserError(f"{directory}: found {len(train)} CIFAR training batches, expected {files['train_batches']['count']}")
    return (*read(train), *read([directory / files["test_batch"]["path"]]))


def _load_stl_binary(directory: Path, files: dict) -> tuple[np.ndarray, ...]:
    """The labelled splits in memory, then the 100k unlabelled images memory-mapped (None if that file is absent
    or empty: 2.8 GB that training reads a batch at a time)."""
    def images(key):  # stored column-major: (N, C, W, H)
        raw = np.fromfile(directory / files[key]["path"], dtype=np.uint8)
        return raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)

    def labels(key):  # 1-based on disk
        return np.fromfile(directory / files[key]["path"], dtype=np.uint8).astype(np.int64) - 1

    unlabeled_path = directory / files["unlabeled_images"]["path"]
    unlabeled = (np.memmap(unlabeled_path, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
                 if unlabeled_path.exists() and unlabeled_path.stat().st_size else None)
    return images("train_images"), labels("train_labels"), images("test_images"), labels("test_labels"), unlabeled


def centre_crop(path: Path, size: int) -> np.ndarray:
    """One image file as evaluation sees it: RGB, the shorter side resized to `size`, the centre crop; (3, size, size)."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = size / min(img.size)
        img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BILINEAR)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        return np.asarray(img.crop((left, top, left + size, top + size))).transpose(2, 0, 1)


class FolderImages:
    """An ImageFolder split read on demand: the sorted file list in memory, each image decoded and centre-cropped
    to `size` when indexed (by threads: PIL decodes outside the GIL). Indexed like a uint8 (N, 3, size, size)
    tensor, so memory is bounded by what is indexed at once, not by the data set (ImageNet: 190 GB decoded)."""

    dtype = torch.uint8

    def __init__(self, paths: list[Path], size: int):
        self.paths, self.size = paths, size
        self.shape = (len(paths), 3, size, size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)):
            return self[[idx]][0]
        rows = range(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx).reshape(-1)
        from concurrent.futures import ThreadPoolExecutor

        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for i, image in enumerate(pool.map(lambda row: centre_crop(self.paths[row], self.size), rows)):
                out[i] = image
        return torch.from_numpy(out)


def image_folder_files(split_dir: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """A split's files in a fixed order (class, then file name) and their labels: subsets and orderings index it."""
    paths, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (split_dir / cls).iterdir() if p.is_file())
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def _load_image_folder(directory: Path, files: dict, image_size: int) -> tuple:
    """ImageFolder layout: both splits as FolderImages (decoded when indexed), their labels in memory."""
    train_dir, val_dir = directory / files["train"]["path"], directory / files["val"]["path"]
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    (train, train_labels), (val, val_labels) = (image_folder_files(d, classes) for d in (train_dir, val_dir))
    return FolderImages(train, image_size), train_labels, FolderImages(val, image_size), val_labels


def _find_unverified(spec: dict) -> Path:
    """Data sets whose manifest records no per-file checksum: the first directory holding them."""
    for _, directory in _candidate_dirs(spec):
        if _files_present(spec, directory):
            return directory
    raise UserError(
        f"dataset {spec['name']!r} not found under {data_root() / spec['name']}; see data_manifest/{spec['name']}.json"
    )


def load(name: str, image_size: int | None = None) -> ImageData:
    """The whole data set in memory (cached per process and data root)."""
    return _load(name, image_size, data_root())


@functools.lru_cache(maxsize=4)
def _load(name: str, image_size: int | None, root: Path) -> ImageData:
    spec = manifest(name)
    checked = all("sha256_uncompressed" in e for e in spec["files"].values())
    directory = locate(name) if checked else _find_unverified(spec)
    if spec["format"] == "idx":
        arrays = _load_idx(directory, spec["files"])
    elif spec["format"] == "cifar_pickle":
        arrays = _load_cifar_pickle(directory, spec["files"])
    elif spec["format"] == "stl_binary":
        arrays = _load_stl_binary(directory, spec["files"])
    elif spec["format"] == "image_folder":
        arrays = _load_image_folder(directory, spec["files"], image_size or spec["image_size"])
    else:
        raise UserError(f"dataset {name!r}: unknown format {spec['format']!r}")
    unlabeled = arrays[4] if len(arrays) > 4 else None  # memory-mapped, never copied
    tensors = [a if isinstance(a, FolderImages) else torch.from_numpy(np.array(a, copy=True))  # writable, contiguous
               for a in arrays[:4]]
    return ImageData(
        name=name,
        train_images=tensors[0],
        train_labels=tensors[1].long(),
        test_images=tensors[2],
        test_labels=tensors[3].long(),
        mean=tuple(spec["mean"]),
        std=tuple(spec["std"]),
        num_classes=spec["num_classes"],
        unlabeled_images=unlabeled,
    )


# ----------------------------------------------------------------------------- subsets and orderings


def evaluation_view(data: ImageData, train_images: int = 0, test_images: int = 0) -> ImageData:
    """The first n images of the fixed permutations of each split (0 = all): cheaper evaluation at smoke scale."""
    def cut(images, labels, n):
        if not n or n >= len(images):
            return images, labels
        idx = torch.from_numpy(data_permutation(len(images))[:n])
        return images[idx], labels[idx]

    train = cut(data.train_images, data.train_labels, train_images)
    test = cut(data.test_images, data.test_labels, test_images)
    return replace(data, train_images=train[0], train_labels=train[1], test_images=test[0], test_labels=test[1])



def data_permutation(n: int, data_seed: int = 0) -> np.ndarray:
    """The fixed permutation that subsets and chunks are cut from (PCG64: same on every machine)."""
    return np.random.default_rng(data_seed).permutation(n)


def subset_indices(n: int, fraction: float, data_seed: int = 0) -> np.ndarray:
    """The first round(fraction * n) images of the fixed permutation: `--subset 0.1` is the same 10 %."""
    if not 0 < fraction <= 1:
        raise UserError(f"subset must be in (0, 1], got {fraction}")
    return data_permutation(n, data_seed)[: max(1, round(fraction * n))]


def chunks(indices: np.ndarray, num_chunks: int) -> list[np.ndarray]:
    """Equal chunks of a permutation (the remainder, fewer than num_chunks images, is dropped)."""
    size = len(indices) // num_chunks
    return [indices[i * size : (i + 1) * size] for i in range(num_chunks)]
