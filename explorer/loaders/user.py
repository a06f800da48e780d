"""A data owner's own candidate dataset from a CSV or NPZ file, checked at the boundary.

CSV: the task's feature columns in order (raw units, as the task's source data has them) and a
``label`` column holding class indices (0..K-1) or class names. NPZ: arrays ``X`` (m, d) and ``y``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError
from explorer.output import write_atomic


def read_candidate_file(path: str | os.PathLike, n_features: int,
                        class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Features (m, n_features) float64 in raw units and labels (m,) int64 in 0..K-1."""
    path = Path(path)
    if not path.is_file():
        raise ExplorerError(f"candidate file {path} does not exist; check the path.")
    if path.suffix.lower() == ".npz":
        X, labels = _read_npz(path)
    else:
        X, labels = _read_csv(path, n_features)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ExplorerError(f"{path.name} has {X.shape[1] if X.ndim == 2 else 'no'} feature "
                            f"columns but the task has {n_features}; give them all, in the "
                            f"task's order, plus a label column.")
    if len(X) == 0:
        raise ExplorerError(f"{path.name} holds no samples; give at least one row.")
    if not np.isfinite(X).all():
        rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise ExplorerError(f"{path.name} has missing, NaN or infinite feature values (first at "
                            f"data row {rows[0] + 1}); remove or impute them first.")
    return X, _label_indices(labels, class_names, path.name)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z or "y" not in z:
                raise ExplorerError(f"{path.name} must hold arrays named X and y.")
            return np.asarray(z["X"], dtype=np.float64), np.asarray(z["y"])
    except (ValueError, OSError) as exc:
        raise ExplorerError(f"{path.name} is not a readable .npz file ({exc}).") from exc


def _read_csv(path: Path, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ExplorerError(f"{path.name} is not a readable CSV file ({exc}).") from exc
    if "label" not in frame.columns:
        raise ExplorerError(f"{path.name} has no 'label' column; add one holding each row's "
                            f"class.")
    features = frame.drop(columns="label")
    if features.shape[1] != n_features:
        raise ExplorerError(f"{path.name} has {features.shape[1]} feature columns but the task "
                            f"has {n_features}; give them all, in the task's order, plus a "
                            f"label column.")
    try:
        X = features.to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError) as exc:
        raise ExplorerError(f"{path.name} has non-numeric feature values ({exc}); features "
                            f"must be numbers.") from exc
    return X, frame["label"].to_numpy()


def _label_indices(labels: np.ndarray, class_names: tuple[str, ...], name: str) -> np.ndarray:
    """Class indices from indices or names; unknown labels are an error."""
    by_name = {c: i for i, c in enumerate(class_names)}
    out = np.empty(len(labels), dtype=np.int64)
    for j, lab in enumerate(labels):
        lab = lab.item() if isinstance(lab, np.generic) else lab
        if isinstance(lab, str) and lab.strip() in by_name:
            out[j] = by_name[lab.strip()]
            continue
        try:
            value = float(lab)
        except (TypeError, ValueError):
            value = float("nan")
        if not (np.isfinite(value) and value == int(value) and 0 <= value < len(class_names)):
            raise ExplorerError(f"{name} has label {lab!r} (data row {j + 1}) that the model "
                                f"does not know; use 0..{len(class_names) - 1} or one of "
                                f"{', '.join(class_names)}.")
        out[j] = int(value)
    return out


def write_candidate_file(path: str | os.PathLike, X_raw: np.ndarray, y: np.ndarray,
                         feature_names: tuple[str, ...]) -> None:
    """Write a candidate in the CSV format ``read_candidate_file`` reads, atomically."""
    frame = pd.DataFrame(np.asarray(X_raw), columns=list(feature_names))
    frame["label"] = np.asarray(y, dtype=np.int64)
    write_atomic(path, lambda f: frame.to_csv(f, index=False))
