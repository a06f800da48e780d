"""CIFAR-10 from the standard python batches (cifar-10-batches-py), downloaded when online."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from explorer.errors import DataUnavailable, ExplorerError
from explorer.loaders.base import Dataset, RawData, cache_dir
from explorer.loaders.download import download

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def _batch_dir(directory: Path) -> Path | None:
    for d in (directory, directory / "cifar-10-batches-py"):
        if (d / "test_batch").is_file() and any((d / b).is_file() for b in TRAIN_BATCHES):
            return d
    return None


HINT = ("put the CIFAR-10 python batches (data_batch_1..5, test_batch) in a directory and pass "
        "it with --data-dir")


def local_cifar_dir() -> Path | None:
    """The cache's CIFAR-10 batches, or None; looks at file names only, so it answers at once."""
    return _batch_dir(cache_dir("cifar10"))


def download_cifar10() -> Path:
    """Download CIFAR-10's python batches into the cache and unpack them; their directory."""
    cache = cache_dir("cifar10")
    archive = cache / "cifar-10-python.tar.gz"
    try:
        download(os.environ.get("APPRAISAL_EXPLORER_CIFAR_URL", URL), archive, timeout=300)
    except ExplorerError as exc:
        raise DataUnavailable(f"no CIFAR-10 batches found and the download failed "
                              f"({exc.__cause__}); {HINT}, or into {cache}.") from exc
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(cache, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DataUnavailable(f"the downloaded CIFAR-10 archive could not be unpacked ({exc}); "
                              f"{HINT}.") from exc
    finally:
        archive.unlink(missing_ok=True)
    found = _batch_dir(cache)
    if found is None:
        raise DataUnavailable(f"the CIFAR-10 archive did not hold the python batches; {HINT}.")
    return found


def cifar_dir(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """The directory holding data_batch_* and test_batch; download into the cache if needed."""
    if data_dir is not None:
        found = _batch_dir(Path(data_dir))
        if found is None:
            raise DataUnavailable(f"{data_dir} holds no CIFAR-10 python batches; {HINT}.")
        return found
    return CIFAR10.locate(allow_download,
                          f"no CIFAR-10 batches in {cache_dir('cifar10')}; {HINT}.")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: images (n, 3072) uint8 (channel-major), labels (n,) int64."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    try:
        X = np.asarray(batch[b"data"], dtype=np.uint8)
        y = np.asarray(batch[b"labels"], dtype=np.int64)
    except (KeyError, TypeError) as exc:
        raise ExplorerError(f"{path} is not a CIFAR-10 python batch (no data/labels).") from exc
    if X.ndim != 2 or X.shape[1] != 3072 or len(X) != len(y):
        raise ExplorerError(f"{path} has images of shape {X.shape}; CIFAR-10 batches hold "
                            f"(n, 3072) images with n labels.")
    return X, y


def load_cifar10(data_dir: str | os.PathLike | None = None,
                 allow_download: bool = True) -> tuple[RawData, RawData]:
    """(train, test) with 3072 features scaled to [0, 1] and the 10 CIFAR-10 classes."""
    d = cifar_dir(data_dir, allow_download)
    names = tuple(f"{c}_{i // 32}_{i % 32}" for c in "rgb" for i in range(1024))

    def raw(batches):
        parts = [read_batch(d / b) for b in batches if (d / b).is_file()]
        X = np.concatenate([p[0] for p in parts]).astype(np.float64) / 255.0
        return RawData(X, np.concatenate([p[1] for p in parts]), names, CLASSES)

    return raw(TRAIN_BATCHES), raw(("test_batch",))


CIFAR10 = Dataset("CIFAR-10", download_mb=163, find=local_cifar_dir, fetch=download_cifar10)
