"""Datasets that ship with scikit-learn: WDBC (breast cancer) and the 8x8 digits."""

from __future__ import annotations

import numpy as np
from sklearn import datasets

from explorer.loaders.base import RawData


def load_wdbc() -> RawData:
    """569 biopsies, 30 features; labels 0 = malignant, 1 = benign (scikit-learn's coding)."""
    bunch = datasets.load_breast_cancer()
    return RawData(bunch.data.astype(np.float64), bunch.target.astype(np.int64),
                   tuple(str(n) for n in bunch.feature_names),
                   tuple(str(n) for n in bunch.target_names))


def load_digits() -> RawData:
    """1,797 8x8 grey-level digits (values 0-16), 64 features, 10 classes."""
    bunch = datasets.load_digits()
    return RawData(bunch.data.astype(np.float64), bunch.target.astype(np.int64),
                   tuple(f"pixel_{i // 8}_{i % 8}" for i in range(64)),
                   tuple(str(i) for i in range(10)))
