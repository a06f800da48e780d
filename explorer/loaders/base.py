"""The raw-data record every loader returns, and where datasets are cached."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.errors import DataUnavailable


@dataclass(frozen=True)
class RawData:
    """Features (n, d) float64 in natural units, labels (n,) int64 in 0..K-1, and their names."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]

    def subset(self, mask: np.ndarray) -> RawData:
        """The rows selected by a boolean mask or an index array."""
        return RawData(self.X[mask], self.y[mask], self.feature_names, self.class_names)


def cache_dir(name: str) -> Path:
    """The user cache directory for a dataset: $APPRAISAL_EXPLORER_CACHE or ~/.cache/...."""
    root = (os.environ.get("APPRAISAL_EXPLORER_CACHE")
            or Path.home() / ".cache" / "appraisal-explorer")
    return Path(root) / name


@dataclass(frozen=True)
class Dataset:
    """A dataset read from files: where it already is on this machine, and how to download it."""

    name: str
    download_mb: int  # the size of the download
    find: Callable[[], Path | None]  # a local copy (shared folder or cache), by file names only
    fetch: Callable[[], Path]  # download into the cache; DataUnavailable when that fails

    def locate(self, allow_download: bool, missing: str) -> Path:
        """The local copy, else (if allowed) a download into the cache; DataUnavailable saying
        ``missing`` when there is no copy and no download is allowed."""
        found = self.find()
        if found is not None:
            return found
        if not allow_download:
            raise DataUnavailable(missing)
        return self.fetch()
