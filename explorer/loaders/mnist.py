"""MNIST from IDX files (LeCun's format, optionally gzip-compressed) in a directory."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from explorer.errors import DataUnavailable, ExplorerError
from explorer.loaders.base import Dataset, RawData, cache_dir
from explorer.loaders.download import download

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
SPLITS = ("train", "t10k")
# numpy dtypes of the IDX type codes
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (plain or .gz) into an array of its stored shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise ExplorerError(f"{path} is not an IDX file (bad magic number); "
                            f"use the original MNIST files.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ExplorerError(f"{path} is truncated or corrupt: header says {shape} but the file "
                            f"holds {len(data) - offset} bytes of data; download it again.")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def _find(directory: Path, split: str, kind: str) -> Path | None:
    ndim = 3 if kind == "images" else 1
    for name in (f"{split}-{kind}-idx{ndim}-ubyte.gz", f"{split}-{kind}-idx{ndim}-ubyte",
                 f"{split}-{kind}.idx{ndim}-ubyte"):
        if (directory / name).is_file():
            return directory / name
    return None


def _pairs(directory: Path) -> list[tuple[Path, Path]]:
    found = [(_find(directory, s, "images"), _find(directory, s, "labels")) for s in SPLITS]
    return [(i, lab) for i, lab in found if i is not None and lab is not None]


def default_dirs() -> list[Path]:
    """Where MNIST is looked for when no directory is given, in order."""
    project_root = Path(__file__).resolve().parents[2]
    dirs = [Path.cwd().parent / "shared" / "data" / "mnist",
            project_root.parent / "shared" / "data" / "mnist"]
    if os.environ.get("APPRAISAL_EXPLORER_MNIST"):
        dirs.insert(0, Path(os.environ["APPRAISAL_EXPLORER_MNIST"]))
    return dirs


HINT = ("put t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (and optionally the train- "
        "files) in a directory and pass it with --data-dir")


def local_mnist_dir() -> Path | None:
    """A shared copy of MNIST on this machine, else the cache if it holds MNIST, else None.

    Looks at file names only (nothing is read or downloaded), so it answers at once.
    """
    for d in (*default_dirs(), cache_dir("mnist")):
        if d.is_dir() and _pairs(d):
            return d
    return None


def download_mnist() -> Path:
    """Download MNIST's four files into the cache (a file already there is kept); the cache."""
    cache = cache_dir("mnist")
    base = os.environ.get("APPRAISAL_EXPLORER_MNIST_URL", MIRROR)
    try:
        for split in SPLITS:
            for kind, ndim in (("images", 3), ("labels", 1)):
                name = f"{split}-{kind}-idx{ndim}-ubyte.gz"
                download(base + name, cache / name)
    except ExplorerError as exc:
        raise DataUnavailable(f"no MNIST files found and the download failed ({exc.__cause__}); "
                              f"{HINT}, or into {cache}.") from exc
    return cache


def mnist_dir(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """The directory to read: ``data_dir``, else a shared copy, else the cache (downloading)."""
    if data_dir is not None:
        d = Path(data_dir)
        if not d.is_dir():
            raise DataUnavailable(f"MNIST directory {d} does not exist; {HINT}.")
        if not _pairs(d):
            raise DataUnavailable(f"MNIST directory {d} holds no IDX image/label pair; {HINT}.")
        return d
    return MNIST.locate(allow_download, f"no MNIST files found in {cache_dir('mnist')}; {HINT}.")


def load_mnist(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> RawData:
    """All IDX pairs found (train and/or t10k): 784 grey levels scaled to [0, 1], labels 0-9."""
    d = mnist_dir(data_dir, allow_download)
    Xs, ys = [], []
    for images, labels in _pairs(d):
        X, y = read_idx(images), read_idx(labels)
        if X.ndim != 3 or y.ndim != 1 or len(X) != len(y):
            raise ExplorerError(f"{images.name} and {labels.name} do not match: {X.shape} images "
                                f"and {y.shape} labels.")
        Xs.append(X.reshape(len(X), -1).astype(np.float64) / 255.0)
        ys.append(y.astype(np.int64))
    X, y = np.concatenate(Xs), np.concatenate(ys)
    if y.min() < 0 or y.max() > 9:
        raise ExplorerError(f"MNIST labels must be digits 0-9, found {y.min()}..{y.max()}.")
    side = int(round(np.sqrt(X.shape[1])))
    return RawData(X, y, tuple(f"pixel_{i // side}_{i % side}" for i in range(X.shape[1])),
                   tuple(str(i) for i in range(10)))


MNIST = Dataset("MNIST", download_mb=12, find=local_mnist_dir, fetch=download_mnist)
