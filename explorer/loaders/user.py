"""A data owner's own candidate dataset from a CSV or NPZ file, checked at the boundary.

CSV: a header row naming the task's feature columns (in any order; they are matched by name)
and a ``label`` column holding class indices (0..K-1) or class names; features in raw units, as
the task's source data has them. NPZ: arrays ``X`` (m, d), columns in the task's order, and
``y``. Files above ``MAX_CANDIDATE_FILE_BYTES`` are refused unread; with the task's
standardisation given, features further than ``MAX_STANDARDISED`` standard deviations from the
seed-set mean are refused too.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.constraints import MAX_CANDIDATE_FILE_BYTES, MAX_STANDARDISED, is_whole
from explorer.errors import ExplorerError
from explorer.output import write_atomic


def read_candidate_file(path: str | os.PathLike, features: int | Sequence[str],
                        class_names: Sequence[str], *, mean=None,
                        scale=None) -> tuple[np.ndarray, np.ndarray]:
    """Features (m, d) float64 in raw units and labels (m,) int64 in 0..K-1.

    ``features`` is the task's feature names (a CSV's columns are then matched by name and put
    in this order) or, when only their number is known, that number (columns taken in file
    order). With the task's ``mean`` and ``scale`` (d,), absurd magnitudes are refused naming
    the row and column.
    """
    names = _feature_names(features)
    d = names if isinstance(names, int) else len(names)
    if not isinstance(path, (str, os.PathLike)):
        raise ExplorerError(f"name the candidate file by a path, got {path!r}.")
    path = Path(path)
    if path.is_dir():
        raise ExplorerError(f"{path} is a directory; name a candidate file (.csv or .npz).")
    if not path.is_file():
        raise ExplorerError(f"candidate file {path} does not exist; check the path.")
    size = path.stat().st_size
    if size > MAX_CANDIDATE_FILE_BYTES:
        raise ExplorerError(f"{path.name} is {size / 2**20:.0f} MB, above the "
                            f"{MAX_CANDIDATE_FILE_BYTES // 2**20} MB limit for a candidate file; "
                            f"split it into several candidates.")
    if path.suffix.lower() == ".npz":
        X, labels = _read_npz(path)
        column_names = names if not isinstance(names, int) else None
    else:
        X, labels, column_names = _read_csv(path, names)
    if X.ndim != 2 or X.shape[1] != d:
        raise ExplorerError(f"{path.name} has {X.shape[1] if X.ndim == 2 else 'no'} feature "
                            f"columns but the task has {d}; give them all, in the task's "
                            f"order, plus a label column.")
    if len(X) == 0:
        raise ExplorerError(f"{path.name} holds no samples; give at least one row.")
    if len(labels) != len(X):
        raise ExplorerError(f"{path.name} has {len(X)} rows of features but {len(labels)} "
                            f"labels; give one label per row.")
    if not np.isfinite(X).all():
        rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise ExplorerError(f"{path.name} has missing, NaN or infinite feature values (first at "
                            f"data row {rows[0] + 1}); remove or impute them first.")
    if mean is not None and scale is not None:
        check_magnitudes((X - np.asarray(mean, dtype=np.float64))
                         / np.asarray(scale, dtype=np.float64), X, column_names, path.name)
    return X, _label_indices(labels, tuple(class_names), path.name)


def check_magnitudes(Z: np.ndarray, X_raw: np.ndarray | None = None,
                     column_names: Sequence[str] | None = None,
                     source: str = "the candidate") -> None:
    """Refuse standardised features Z (m, d) further than MAX_STANDARDISED seed-set standard
    deviations from the seed-set mean (a unit or parsing mistake, not data)."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~(np.abs(Z) <= MAX_STANDARDISED)
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    if X_raw is None:
        what = f"{source}'s feature {col} of sample {row} (counting from 0)"
    else:
        column = repr(column_names[col]) if column_names is not None else f"column {col + 1}"
        what = f"{source} has {column} = {X_raw[row, col]:.3g} in data row {row + 1}, which"
    raise ExplorerError(f"{what} is {abs(Z[row, col]):.3g} seed-set standard deviations from "
                        f"the mean, beyond the limit of {MAX_STANDARDISED:.0e}; check its units "
                        f"and parsing.")


def _feature_names(features) -> int | tuple[str, ...]:
    if is_whole(features) and features >= 1:
        return int(features)
    if isinstance(features, Sequence) and not isinstance(features, str) and features \
            and all(isinstance(n, str) for n in features) \
            and len(set(features)) == len(features):
        return tuple(features)
    raise ExplorerError(f"give the task's feature names (distinct strings) or their number, "
                        f"got {features!r}.")


def _reason(exc: BaseException) -> str:
    """An exception's message as a short phrase for a one-line error."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise ExplorerError(f"{path.name} is not a .npz file (not a zip archive); write it with "
                            f"numpy.savez(path, X=features, y=labels).")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z or "y" not in z:
                raise ExplorerError(f"{path.name} must hold arrays named X and y; it holds "
                                    f"{', '.join(z.files) or 'none'}.")
            X, y = z["X"], z["y"]
            if not (isinstance(X, np.ndarray) and isinstance(y, np.ndarray)):
                raise ExplorerError(f"{path.name}'s X and y are not numpy arrays; write it with "
                                    f"numpy.savez(path, X=features, y=labels).")
    except ExplorerError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ExplorerError(f"{path.name} is not a readable .npz file ({_reason(exc)}); write "
                            f"it with numpy.savez(path, X=features, y=labels).") from None
    if X.dtype.kind not in "biuf":
        raise ExplorerError(f"{path.name}'s X holds {X.dtype} values; features must be real "
                            f"numbers.")
    if y.ndim != 1:
        raise ExplorerError(f"{path.name}'s y has shape {y.shape}; give one label per row, a "
                            f"1-d array.")
    return X.astype(np.float64), y


def _read_csv(path: Path, names: int | tuple[str, ...]
              ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    try:
        frame = pd.read_csv(path)
    except UnicodeDecodeError as exc:
        raise ExplorerError(f"{path.name} is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                            f"at position {exc.start}); save it as a UTF-8 CSV file.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise ExplorerError(f"{path.name} is not a readable CSV file ({_reason(exc)}).") \
            from None
    columns = [str(c) for c in frame.columns]
    if "label" not in columns:
        raise ExplorerError(f"{path.name} has no 'label' column; add one holding each row's "
                            f"class (the first row must be a header naming the columns).")
    features = frame.drop(columns="label")
    if isinstance(names, int):
        if features.shape[1] != names:
            raise ExplorerError(f"{path.name} has {features.shape[1]} feature columns but the "
                                f"task has {names}; give them all, in the task's order, plus a "
                                f"label column.")
        column_names = None
    else:
        have = [c for c in columns if c != "label"]
        missing = [n for n in names if n not in have]
        unknown = [c for c in have if c not in names]
        if missing or unknown:
            differ = "; ".join(p for p in (_listing("missing", missing),
                                            _listing("unknown", unknown)) if p)
            count = (f"{path.name}'s feature columns are not the task's" if len(have) == len(names)
                     else f"{path.name} has {len(have)} feature columns but the task has "
                          f"{len(names)}")
            raise ExplorerError(f"{count} ({differ}); name the columns exactly as the task does "
                                f"(sample-candidate writes an example).")
        features = features[list(names)]  # the task's order, whatever the file's
        column_names = names
    try:
        X = features.to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError):
        bad = [str(c) for c in features.columns
               if pd.to_numeric(features[c], errors="coerce").isna().ne(
                   features[c].isna()).any()]
        where = f" in column {bad[0]!r}" if bad else ""
        raise ExplorerError(f"{path.name} has non-numeric feature values{where}; features "
                            f"must be numbers.") from None
    return X, frame["label"].to_numpy(), column_names


def _listing(what: str, names: list[str]) -> str:
    if not names:
        return ""
    shown = ", ".join(repr(n) for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{what} {shown}{more}"


def _label_indices(labels: np.ndarray, class_names: tuple[str, ...], name: str) -> np.ndarray:
    """Class indices from whole-number indices or class names; anything else is an error."""
    by_name = {c: i for i, c in enumerate(class_names)}
    known = f"0..{len(class_names) - 1} or one of {', '.join(class_names)}"
    if labels.dtype.kind == "b":
        raise ExplorerError(f"{name} has true/false labels; labels must be whole class indices "
                            f"({known}).")
    out = np.empty(len(labels), dtype=np.int64)
    for j, lab in enumerate(labels):
        lab = lab.item() if isinstance(lab, np.generic) else lab
        if isinstance(lab, str) and lab.strip() in by_name:
            out[j] = by_name[lab.strip()]
            continue
        try:
            value = float(lab) if not isinstance(lab, bool) else float("nan")
        except (TypeError, ValueError):
            value = float("nan")
        if np.isfinite(value) and value != int(value):
            raise ExplorerError(f"{name} has label {lab!r} in data row {j + 1}; labels must be "
                                f"whole class indices or class names ({known}).")
        if not (np.isfinite(value) and 0 <= value < len(class_names)):
            raise ExplorerError(f"{name} has label {lab!r} (data row {j + 1}) that the model "
                                f"does not know; use {known}.")
        out[j] = int(value)
    return out


def write_candidate_file(path: str | os.PathLike, X_raw: np.ndarray, y: np.ndarray,
                         feature_names: tuple[str, ...]) -> None:
    """Write a candidate in the CSV format ``read_candidate_file`` reads, atomically."""
    frame = pd.DataFrame(np.asarray(X_raw), columns=list(feature_names))
    frame["label"] = np.asarray(y, dtype=np.int64)
    write_atomic(path, lambda f: frame.to_csv(f, index=False))
