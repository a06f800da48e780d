"""Experiments as tidy DataFrames: appraise a market, compare with ground truth by rank."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from explorer.appraisers import Appraiser, make_appraiser
from explorer.market import Candidate, make_market
from explorer.seed import SeedModel, fit_seed_model
from explorer.tasks import load_task
from explorer.utility import ground_truth

Progress = Callable[[str, int, int], None]  # (phase, done, total)

UTILITY_COLUMNS = ["candidate", "kind", "level", "size", "utility", "accuracy_change",
                   "truth_seconds"]
RESULT_COLUMNS = [*UTILITY_COLUMNS, "appraiser", "backend", "value", "seconds",
                  "setup_seconds", "plaintext_seconds", "private_seconds", "bytes", "rounds"]


def market_utilities(seed: SeedModel, candidates: Sequence[Candidate],
                     progress: Progress | None = None) -> pd.DataFrame:
    """Ground truth for each candidate: one row with its utility and accuracy change."""
    rows = []
    for i, c in enumerate(candidates):
        start = time.perf_counter()
        u = ground_truth(seed, c.X, c.y)
        rows.append({"candidate": c.index, "kind": c.kind, "level": c.level, "size": c.size,
                     "utility": u.utility, "accuracy_change": u.accuracy_change,
                     "truth_seconds": time.perf_counter() - start})
        if progress:
            progress("ground truth", i + 1, len(candidates))
    return pd.DataFrame(rows, columns=UTILITY_COLUMNS)


def appraise_market(seed: SeedModel, candidates: Sequence[Candidate],
                    appraisers: Sequence[Appraiser], utilities: pd.DataFrame | None = None,
                    progress: Progress | None = None) -> pd.DataFrame:
    """One row per candidate and appraiser: the value, its cost, and the ground truth.

    ``seconds`` is the wall time to appraise that candidate (for a private batch, the session's
    wall time including process start-up, divided evenly); ``setup_seconds`` the appraiser's
    one-off plaintext work on the model owner's side (e.g. v = H^-1 g_te); ``plaintext_seconds``
    the candidate's share of all plaintext work, ``private_seconds`` of the encrypted
    computation, ``bytes`` and ``rounds`` of the communication (0 in plaintext).
    """
    if utilities is None:
        utilities = market_utilities(seed, candidates, progress)
    truth = utilities.set_index("candidate")
    rows = []
    for appraiser in appraisers:
        appraiser.fit(seed)
        if progress:
            progress(appraiser.name, 0, len(candidates))
        appraised = appraiser.appraise_many([(c.X, c.y) for c in candidates])
        for c, row in zip(candidates, appraised, strict=True):
            rows.append({**truth.loc[c.index].to_dict(), "candidate": c.index,
                         "appraiser": appraiser.name, "backend": appraiser.backend,
                         "setup_seconds": appraiser.setup_seconds_, **row})
        if progress:
            progress(appraiser.name, len(candidates), len(candidates))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def spearman(values: Sequence[float], reference: Sequence[float]) -> float:
    """Spearman's rank correlation; NaN when either side is constant."""
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    if len(values) < 2 or np.ptp(values) == 0 or np.ptp(reference) == 0:
        return float("nan")
    return float(stats.spearmanr(values, reference).statistic)


def rank_correlations(results: pd.DataFrame, against: str = "utility") -> pd.Series:
    """Spearman rho of each appraiser's values against a ground-truth column, by appraiser."""
    return results.groupby("appraiser", sort=False).apply(
        lambda g: spearman(g["value"], g[against]), include_groups=False).rename("spearman")


def repeated_rank_correlations(task_name: str, kind: str, n_candidates: int, size: int,
                               max_level: float, min_level: float = 0.0, runs: int = 5,
                               appraisers: Sequence[str] = ("influence",),
                               task_options: dict | None = None,
                               market_options: dict | None = None,
                               progress: Progress | None = None) -> pd.DataFrame:
    """Spearman rho against utility (and against level) per run and appraiser.

    Run r rebuilds the task (split and, if asked, dropped columns), the seed model and the market
    from seed r. Columns: run, appraiser, spearman, spearman_level, seed_accuracy.
    """
    rows = []
    for run in range(runs):
        task = load_task(task_name, seed=run, **(task_options or {}))
        seed = fit_seed_model(task)
        market = make_market(task, kind, n_candidates, size, max_level, min_level, seed=run,
                             **(market_options or {}))
        results = appraise_market(seed, market, [make_appraiser(a) for a in appraisers])
        by_level = rank_correlations(results, "level")
        for name, rho in rank_correlations(results).items():
            rows.append({"run": run, "appraiser": name, "spearman": rho,
                         "spearman_level": by_level[name],
                         "seed_accuracy": seed.test_accuracy})
        if progress:
            progress(f"{task_name} {kind}", run + 1, runs)
    return pd.DataFrame(rows)
