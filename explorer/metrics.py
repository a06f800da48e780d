"""How well values rank: Spearman's rank correlation against ground truth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def spearman(values: Sequence[float], reference: Sequence[float]) -> float:
    """Spearman's rank correlation (scipy, ties averaged); NaN when fewer than two points or
    either side is constant."""
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    if len(values) < 2 or np.ptp(values) == 0 or np.ptp(reference) == 0:
        return float("nan")
    return float(stats.spearmanr(values, reference).statistic)


def fig6_ranges(frame: pd.DataFrame) -> dict[str, float]:
    """Spearman rho of values against utility overall and in the paper's Fig. 6 zooms on the car
    rate (our ``level`` is the plane share, so car rate = 1 - level)."""
    cars = 1.0 - frame.level
    low, high = frame[cars <= 0.45 + 1e-9], frame[cars >= 0.55 - 1e-9]
    return {"overall": spearman(frame.value, frame.utility),
            "cars 0-0.45": spearman(low.value, low.utility),
            "cars 0.55-1": spearman(high.value, high.utility)}


def rank_correlations(results: pd.DataFrame, against: str = "utility") -> pd.Series:
    """Spearman rho of each appraiser's values against a ground-truth column, by appraiser."""
    return results.groupby("appraiser", sort=False).apply(
        lambda g: spearman(g["value"], g[against]), include_groups=False).rename("spearman")


def model_correlations(results: pd.DataFrame, against: str = "utility") -> pd.DataFrame:
    """Spearman rho of each appraiser's values against a ground-truth column, per seed model
    (the ``model`` column; ``description`` too when present), in the frame's order. Columns:
    model, (description,) appraiser, spearman, candidates."""
    keys = ["model", *(["description"] if "description" in results else []), "appraiser"]
    rows = [{**dict(zip(keys, key, strict=True)), "spearman": spearman(g["value"], g[against]),
             "candidates": len(g)}
            for key, g in results.groupby(keys, sort=False)]
    return pd.DataFrame(rows, columns=[*keys, "spearman", "candidates"])
