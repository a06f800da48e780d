"""The experiment pipeline as tidy DataFrames: a market's ground truth and its appraisal by one
or more configurations (explorer.config), with every value's cost; the same market under
several seed models (``compare_seed_models``).

Rank correlations are in explorer.metrics; acquisition in explorer.acquisition; repeated runs
and hyper-parameter sweeps in explorer.sweeps; prices and bit-mode thresholds in
explorer.market_prices.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Sequence

import pandas as pd

from explorer.appraisers import FAMILIES
from explorer.appraisers.result import Appraisal
from explorer.config import AppraiserConfig
from explorer.errors import AppraisalWarning, Cancelled, ExplorerError
from explorer.market import Candidate
from explorer.progress import Progress
from explorer.seed import AnySeed, SeedChoice, model_description
from explorer.tasks import Task
from explorer.timeline import GROUND_TRUTH, Timeline
from explorer.utility import ground_truth

UTILITY_COLUMNS = ["candidate", "kind", "level", "size", "utility", "accuracy_change",
                   "truth_grad_norm", "truth_seconds"]
RESULT_COLUMNS = [*UTILITY_COLUMNS, "model", "appraiser", "backend", "value", "diagnostic",
                  "seconds",
                  "setup_seconds", "plaintext_seconds", "private_seconds", "bytes", "rounds"]
BREAKDOWN_COLUMNS = ["appraiser", "backend", "candidates", "plaintext_seconds",
                     "private_seconds", "seconds", "bytes", "rounds"]

# one configuration, or several run in order (e.g. bit mode: each appraiser its own threshold)
Configs = AppraiserConfig | Sequence[AppraiserConfig]

INFLUENCE = AppraiserConfig(names=("influence",))


def config_list(configs: Configs) -> list[AppraiserConfig]:
    """The configurations to run, one sentence when they are not configurations."""
    listed = [configs] if isinstance(configs, AppraiserConfig) else list(configs)
    if not listed or not all(isinstance(c, AppraiserConfig) for c in listed):
        raise ExplorerError("appraise with an AppraiserConfig (explorer.config) or a list of "
                            "them.")
    return listed


def market_utilities(seed: AnySeed, candidates: Sequence[Candidate],
                     progress: Progress | None = None,
                     cancel: threading.Event | None = None) -> pd.DataFrame:
    """Ground truth for each candidate: one row with its utility and accuracy change."""
    rows = []
    for i, c in enumerate(candidates):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the ground truth was cancelled.")
        start = time.perf_counter()
        u = ground_truth(seed, c.X, c.y)
        rows.append({"candidate": c.index, "kind": c.kind, "level": c.level, "size": c.size,
                     "utility": u.utility, "accuracy_change": u.accuracy_change,
                     "truth_grad_norm": u.grad_norm, "truth_seconds": time.perf_counter() - start})
        if progress:
            progress("ground truth", i + 1, len(candidates))
    return pd.DataFrame(rows, columns=UTILITY_COLUMNS)


def appraise_market(seed: AnySeed, candidates: Sequence[Candidate], configs: Configs,
                    utilities: pd.DataFrame | None = None, progress: Progress | None = None,
                    cancel: threading.Event | None = None,
                    on_appraisal: Callable[[pd.DataFrame, Appraisal], None] | None = None,
                    timeline: Timeline | None = None) -> pd.DataFrame:
    """One row per candidate and appraiser: the value, its cost, and the ground truth. Each
    configuration's appraisers run with its own runner (explorer.config), in order, each the
    definition of the seed model's family (``model``: logistic, mlp or last-layer).

    ``seconds`` is the wall time to appraise that candidate (for a private batch, the session's
    wall time including process start-up, divided evenly); ``setup_seconds`` the appraiser's
    one-off plaintext work on the model owner's side (e.g. v = H^-1 g_te); ``plaintext_seconds``
    the candidate's share of all plaintext work, ``private_seconds`` of the encrypted
    computation, ``bytes`` sent on the wire (by both parties and the dealer, each byte once)
    and ``rounds`` of the communication's critical path (0 in plaintext).
    ``on_appraisal`` receives the rows so far and the appraiser's whole Appraisal (its session
    account, ledger counts) each time an appraiser finishes (live figures); setting ``cancel``
    stops the job with Cancelled. ``timeline`` (explorer.timeline) receives the wall seconds
    of the ground truth (when computed here) and of each appraiser's parts.
    """
    if utilities is None:
        with timeline.phase(GROUND_TRUTH, count=len(candidates)) if timeline is not None \
                else contextlib.nullcontext():
            utilities = market_utilities(seed, candidates, progress, cancel)
    truth = utilities.set_index("candidate")
    rows = []
    pairs = [(c.X, c.y) for c in candidates]
    for config in config_list(configs):
        runner = config.runner()
        for name in config.names:
            start = time.perf_counter()
            appraiser = config.build(name, seed.family).fit(seed)
            fitted = time.perf_counter() - start
            if progress:
                progress(name, 0, len(candidates))
            appraisal = runner.run(appraiser, pairs, progress, cancel)
            notes = [""] * len(appraisal) if config.reveals_bits \
                else appraiser.diagnose(appraisal.values)
            _warn_diagnostics(name, notes)
            if timeline is not None:
                timeline.add_appraisal(appraisal, fitted, time.perf_counter() - start)
            for c, row, note in zip(candidates, appraisal.rows(), notes, strict=True):
                rows.append({**truth.loc[c.index].to_dict(), "candidate": c.index,
                             "model": seed.family, "appraiser": name, "backend": appraisal.backend,
                             "setup_seconds": appraisal.setup_seconds, "diagnostic": note,
                             **row})
            if on_appraisal:
                on_appraisal(pd.DataFrame(rows, columns=RESULT_COLUMNS), appraisal)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _warn_diagnostics(name: str, notes: Sequence[str]) -> None:
    for note, count in pd.Series([n for n in notes if n]).value_counts().items():
        warnings.warn(f"{count} of {len(notes)} {name} values: {note}.", AppraisalWarning,
                      stacklevel=3)


def runtime_breakdown(seed: AnySeed, candidates: Sequence[Candidate],
                      configs: Configs) -> pd.DataFrame:
    """Cost of appraising a market, per appraiser: plaintext seconds (set-up included),
    encrypted seconds, whole wall seconds, bytes sent on the wire and rounds of the critical
    path, summed over candidates (so over the sessions, which run one after another)."""
    rows = []
    for config in config_list(configs):
        for name in config.names:
            appraisal = config.appraise(name, seed, [(c.X, c.y) for c in candidates])
            appraised = pd.DataFrame(appraisal.rows())
            rows.append({"appraiser": name, "backend": appraisal.backend,
                         "candidates": len(candidates),
                         **appraised[["plaintext_seconds", "private_seconds", "seconds",
                                      "bytes", "rounds"]].sum().to_dict()})
    return pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)


def compare_seed_models(task: Task, market: Sequence[Candidate], choices: Sequence[SeedChoice],
                        config: AppraiserConfig = INFLUENCE, progress: Progress | None = None,
                        cancel: threading.Event | None = None) -> pd.DataFrame:
    """The same market under each seed model of ``choices`` (explorer.seed.SeedChoice): each
    fitted on ``task``, its own ground truth (retraining that model), and every appraiser of
    ``config`` its family defines (explorer.appraisers.FAMILIES; the others are left out for
    that family). Rows as ``appraise_market`` (``model`` the family) plus ``description``
    (``model_description``: family and widths); the rank correlations per model and appraiser
    are ``metrics.model_correlations``."""
    choices = list(choices)
    if not choices or not all(isinstance(c, SeedChoice) for c in choices):
        raise ExplorerError("compare seed models given as a non-empty list of SeedChoice "
                            "(explorer.seed).")
    listed = config_list(config)
    if any(c.reveals_bits for c in listed):
        raise ExplorerError("comparing seed models ranks their values, which bits cannot; "
                            "reveal values.")
    frames = []
    for choice in choices:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the comparison was cancelled.")
        seed = choice.fit(task)
        defined = [c.with_(names=names) for c in listed
                   if (names := tuple(n for n in c.names if n in FAMILIES[choice.model]))]
        if not defined:
            continue
        frame = appraise_market(seed, market, defined, progress=progress, cancel=cancel)
        frames.append(frame.assign(description=model_description(seed)))
    if not frames:
        models = ", ".join(dict.fromkeys(c.model for c in choices))
        raise ExplorerError(f"none of the appraisers {', '.join(listed[0].names)} is defined "
                            f"for the {models} seed model; choose among "
                            f"{', '.join(FAMILIES[choices[0].model])}.")
    return pd.concat(frames, ignore_index=True)
