"""Experiments as tidy DataFrames: appraise a market, compare with ground truth by rank."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from explorer.appraisers import Appraiser, AppraiserConfig
from explorer.appraisers.base import Progress
from explorer.errors import AppraisalWarning, Cancelled, ExplorerError
from explorer.market import Candidate, make_market
from explorer.seed import SeedModel, fit_seed_model
from explorer.tasks import load_task
from explorer.utility import absorb, ground_truth

UTILITY_COLUMNS = ["candidate", "kind", "level", "size", "utility", "accuracy_change",
                   "truth_grad_norm", "truth_seconds"]
RESULT_COLUMNS = [*UTILITY_COLUMNS, "appraiser", "backend", "value", "diagnostic", "seconds",
                  "setup_seconds", "plaintext_seconds", "private_seconds", "bytes", "rounds"]


def market_utilities(seed: SeedModel, candidates: Sequence[Candidate],
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


def appraise_market(seed: SeedModel, candidates: Sequence[Candidate],
                    appraisers: Sequence[Appraiser], utilities: pd.DataFrame | None = None,
                    progress: Progress | None = None,
                    cancel: threading.Event | None = None,
                    on_appraiser: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """One row per candidate and appraiser: the value, its cost, and the ground truth.

    ``seconds`` is the wall time to appraise that candidate (for a private batch, the session's
    wall time including process start-up, divided evenly); ``setup_seconds`` the appraiser's
    one-off plaintext work on the model owner's side (e.g. v = H^-1 g_te); ``plaintext_seconds``
    the candidate's share of all plaintext work, ``private_seconds`` of the encrypted
    computation, ``bytes`` sent on the wire (by both parties and the dealer, each byte once)
    and ``rounds`` of the communication's critical path (0 in plaintext).
    ``on_appraiser`` receives the rows so far each time an appraiser finishes (live figures);
    setting ``cancel`` stops the job with Cancelled.
    """
    if utilities is None:
        utilities = market_utilities(seed, candidates, progress, cancel)
    truth = utilities.set_index("candidate")
    rows = []
    for appraiser in appraisers:
        appraiser.fit(seed)
        if progress:
            progress(appraiser.name, 0, len(candidates))
        appraised = appraiser.appraise_many([(c.X, c.y) for c in candidates], progress, cancel)
        notes = [""] * len(appraised) if getattr(appraiser.mpc, "reveal", "value") == "bit" \
            else appraiser.diagnose([r["value"] for r in appraised])
        _warn_diagnostics(appraiser.name, notes)
        for c, row, note in zip(candidates, appraised, notes, strict=True):
            rows.append({**truth.loc[c.index].to_dict(), "candidate": c.index,
                         "appraiser": appraiser.name, "backend": appraiser.backend,
                         "setup_seconds": appraiser.setup_seconds_, "diagnostic": note,
                         **row})
        if on_appraiser:
            on_appraiser(pd.DataFrame(rows, columns=RESULT_COLUMNS))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _warn_diagnostics(name: str, notes: Sequence[str]) -> None:
    for note, count in pd.Series([n for n in notes if n]).value_counts().items():
        warnings.warn(f"{count} of {len(notes)} {name} values: {note}.", AppraisalWarning,
                      stacklevel=3)


def spearman(values: Sequence[float], reference: Sequence[float]) -> float:
    """Spearman's rank correlation; NaN when either side is constant."""
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


INFLUENCE = AppraiserConfig(names=("influence",))


def repeated_rank_correlations(task_name: str, kind: str, n_candidates: int, size: int,
                               max_level: float, min_level: float = 0.0, runs: int = 5,
                               config: AppraiserConfig = INFLUENCE,
                               task_options: dict | None = None,
                               market_options: dict | None = None, first_run: int = 0,
                               progress: Progress | None = None) -> pd.DataFrame:
    """Spearman rho against utility (and against level) per run and appraiser.

    Run r (first_run, first_run + 1, ...) rebuilds the task (split and, if asked, dropped
    columns), the seed model and the market from seed r. Columns: run, appraiser, backend,
    spearman, spearman_level, seed_accuracy.
    """
    rows = []
    backend = config.backend
    for run in range(first_run, first_run + runs):
        task = load_task(task_name, seed=run, **(task_options or {}))
        seed = fit_seed_model(task)
        market = make_market(task, kind, n_candidates, size, max_level, min_level, seed=run,
                             **(market_options or {}))
        results = appraise_market(seed, market, config.build_all())
        by_level = rank_correlations(results, "level")
        for name, rho in rank_correlations(results).items():
            rows.append({"run": run, "appraiser": name, "backend": backend, "spearman": rho,
                         "spearman_level": by_level[name],
                         "seed_accuracy": seed.test_accuracy})
        if progress:
            progress(f"{task_name} {kind}", run - first_run + 1, runs)
    return pd.DataFrame(rows)


def repeated_markets(seed: SeedModel, task, kind: str, n_candidates: int, size: int,
                     max_level: float, min_level: float = 0.0, repeats: int = 5,
                     config: AppraiserConfig = INFLUENCE, market_options: dict | None = None,
                     first_run: int = 0, progress: Progress | None = None) -> pd.DataFrame:
    """The paper's Figure 6 protocol: one seed model, ``repeats`` freshly sampled markets
    (market seeds first_run, first_run + 1, ...).

    Rows as ``appraise_market`` plus a ``run`` column (the market's seed).
    """
    frames = []
    for run in range(first_run, first_run + repeats):
        market = make_market(task, kind, n_candidates, size, max_level, min_level, seed=run,
                             **(market_options or {}))
        frame = appraise_market(seed, market, config.build_all())
        frames.append(frame.assign(run=run))
        if progress:
            progress("markets", run - first_run + 1, repeats)
    return pd.concat(frames, ignore_index=True)


ACQUISITION_COLUMNS = ["run", "strategy", "round", "candidate", "test_loss", "loss_change",
                       "normalised_change"]


def _acquire(start: SeedModel, market: Sequence[Candidate], rounds: int, strategy: str,
             rng: np.random.Generator, config: AppraiserConfig,
             cancel: threading.Event | None) -> list[dict]:
    """One acquisition sequence: rows (round, candidate, test_loss) from round 0."""
    current, remaining = start, list(market)
    rows = [{"round": 0, "candidate": -1, "test_loss": start.test_loss}]
    for r in range(1, rounds + 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the acquisition was cancelled.")
        if strategy == "influence":
            appraiser = config.build("influence").fit(current)
            values = [a["value"] for a in
                      appraiser.appraise_many([(c.X, c.y) for c in remaining], cancel=cancel)]
            pick = int(np.argmax(values))
        else:
            pick = int(rng.integers(len(remaining)))
        chosen = remaining.pop(pick)
        current = absorb(current, chosen.X, chosen.y)
        rows.append({"round": r, "candidate": chosen.index, "test_loss": current.test_loss})
    return rows


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """Add loss_change (vs round 0) and normalised_change (by random's best mean reduction
    in the run; by the largest |change| if random never reduced the loss)."""
    base = frame.groupby("run").test_loss.transform("first")
    frame["loss_change"] = frame.test_loss - base
    random = frame[frame.strategy == "random"]
    best = -random.groupby(["run", "round"]).loss_change.mean().groupby("run").min()
    scale = frame.run.map(best.where(best > 0, frame.loss_change.abs().max() or 1.0))
    frame["normalised_change"] = frame.loss_change / scale
    return frame[ACQUISITION_COLUMNS]


def _check_rounds(rounds: int, n_candidates: int) -> None:
    if rounds < 1 or rounds > n_candidates:
        raise ExplorerError(f"rounds must be between 1 and the number of candidates "
                            f"({n_candidates}), got {rounds}.")


def acquisition_curves(task_name: str, kind: str, n_candidates: int, size: int,
                       max_level: float, rounds: int, runs: int = 5, min_level: float = 0.0,
                       task_options: dict | None = None, config: AppraiserConfig = INFLUENCE,
                       first_run: int = 0, progress: Progress | None = None) -> pd.DataFrame:
    """Greedy acquisition by influence versus random acquisition (the paper's Figure 8).

    Each round the model owner appraises the remaining candidates with its current model,
    acquires one (the highest influence, or a random one) and refits on everything acquired so
    far. ``loss_change`` is the test loss minus the seed model's (negative = better);
    ``normalised_change`` divides it by the largest test-loss reduction the random strategy
    reached in that run, so that random's best is -1.
    """
    _check_rounds(rounds, n_candidates)
    rows = []
    for run in range(first_run, first_run + runs):
        task = load_task(task_name, seed=run, **(task_options or {}))
        start = fit_seed_model(task)
        market = make_market(task, kind, n_candidates, size, max_level, min_level, seed=run)
        rng = np.random.default_rng([run, 5])
        for strategy in ("influence", "random"):
            rows += [{"run": run, "strategy": strategy, **row} for row in
                     _acquire(start, market, rounds, strategy, rng, config, None)]
        if progress:
            progress("acquisition", run - first_run + 1, runs)
    return _normalised(pd.DataFrame(rows))


def market_acquisition(seed: SeedModel, candidates: Sequence[Candidate], rounds: int,
                       random_orders: int = 5, config: AppraiserConfig = INFLUENCE,
                       random_seed: int = 0,
                       cancel: threading.Event | None = None) -> pd.DataFrame:
    """Greedy-by-influence and random acquisition on one given market (the dashboard's view).

    Greedy is one sequence; random is repeated over ``random_orders`` orders (its band). All
    rows share run 0 for the normalisation; columns as ACQUISITION_COLUMNS plus ``order``.
    """
    _check_rounds(rounds, len(candidates))
    rows = [{"strategy": "influence", "order": 0, **row} for row in
            _acquire(seed, candidates, rounds, "influence", np.random.default_rng(0), config,
                     cancel)]
    for order in range(random_orders):
        rng = np.random.default_rng([random_seed, 6, order])
        rows += [{"strategy": "random", "order": order, **row} for row in
                 _acquire(seed, candidates, rounds, "random", rng, config, cancel)]
    frame = pd.DataFrame(rows).assign(run=0)
    orders = frame.order
    return _normalised(frame).assign(run=orders)


BREAKDOWN_COLUMNS = ["appraiser", "backend", "candidates", "plaintext_seconds",
                     "private_seconds", "seconds", "bytes", "rounds"]


def runtime_breakdown(seed: SeedModel, candidates: Sequence[Candidate],
                      appraisers: Sequence[Appraiser]) -> pd.DataFrame:
    """Cost of appraising a market, per appraiser: plaintext seconds (set-up included),
    encrypted seconds, whole wall seconds, bytes sent on the wire and rounds of the critical
    path, summed over candidates (so over the sessions, which run one after another)."""
    rows = []
    for appraiser in appraisers:
        appraiser.fit(seed)
        appraised = pd.DataFrame(appraiser.appraise_many([(c.X, c.y) for c in candidates]))
        rows.append({"appraiser": appraiser.name, "backend": appraiser.backend,
                     "candidates": len(candidates),
                     **appraised[["plaintext_seconds", "private_seconds", "seconds", "bytes",
                                  "rounds"]].sum().to_dict()})
    return pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)


def finetune_grid(seed: SeedModel, candidates: Sequence[Candidate], utilities: pd.DataFrame,
                  batch_sizes: Sequence[int | None], epochs: Sequence[int],
                  lr: float = 0.1) -> pd.DataFrame:
    """The paper's Figure 3: fine-tuning's rank correlation and runtime over batch size x
    epochs (``None`` = full batch). Columns: batch_size, epochs, steps, spearman, seconds."""
    n_union = seed.n_seed + max(c.size for c in candidates)
    rows = []
    for batch in batch_sizes:
        per_epoch = 1 if batch is None else -(-n_union // batch)
        for ep in epochs:
            ft = AppraiserConfig(names=("finetune",), lr=lr, steps=ep * per_epoch,
                                 batch_size=batch).build("finetune")
            frame = appraise_market(seed, candidates, [ft], utilities)
            rows.append({"batch_size": batch, "epochs": ep, "steps": ep * per_epoch,
                         "spearman": spearman(frame.value, frame.utility),
                         "seconds": frame.seconds.sum()})
    return pd.DataFrame(rows)


def finetune_budgets(seed: SeedModel, candidates: Sequence[Candidate], utilities: pd.DataFrame,
                     lrs: Sequence[float] = (0.001, 0.1, 10.0),
                     budgets: Sequence[int] = (1, 4, 16)) -> pd.DataFrame:
    """The paper's Table 1: fine-tuning limited to 1x/4x/16x influence's runtime per
    candidate, at several learning rates. Columns: lr, budget, steps, spearman,
    spearman_level, influence_spearman, influence_spearman_level, diverges (a learning rate at
    which the steps cannot converge is not run: its rhos are NaN and ``diverges`` is True)."""
    inf = appraise_market(seed, candidates, INFLUENCE.build_all(), utilities)
    per_candidate = (inf.seconds.sum() + inf.setup_seconds.iloc[0]) / len(candidates)
    finetune = AppraiserConfig(names=("finetune",))
    one_step = appraise_market(seed, candidates, [finetune.with_(steps=1).build("finetune")],
                               utilities)
    step_seconds = one_step.seconds.mean()
    rows = []
    for budget in budgets:
        steps = max(1, int(round(budget * per_candidate / step_seconds)))
        for lr in lrs:
            row = {"lr": lr, "budget": budget, "steps": steps,
                   "influence_spearman": spearman(inf.value, inf.utility),
                   "influence_spearman_level": spearman(inf.value, -inf.level)}
            tuned = finetune.with_(lr=lr, steps=steps).build("finetune")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", AppraisalWarning)  # past the bound: known
                    frame = appraise_market(seed, candidates, [tuned], utilities)
            except ExplorerError:  # the learning rate diverges (FineTune says why)
                rows.append({**row, "spearman": np.nan, "spearman_level": np.nan,
                             "diverges": True})
                continue
            rows.append({**row, "spearman": spearman(frame.value, frame.utility),
                         "spearman_level": spearman(frame.value, -frame.level),
                         "diverges": False})
    return pd.DataFrame(rows)


PRICE_KINDS = (("none", 0.0), ("label-noise", 1.0), ("duplicates", 1.0), ("feature-noise", 1.0))


def priced_market(seed: SeedModel, task, rule, n_per_kind: int = 5, size: int = 30,
                  kinds: Sequence[tuple[str, float]] = PRICE_KINDS,
                  market_seed: int = 0) -> pd.DataFrame:
    """A market mixing clean, harmful (labels flipped), duplicate and noisy candidates, priced
    by ``rule`` (a pricing.PricingRule) from their influence values.

    Columns: candidate, kind, level, value, utility, accuracy_change, price, accepted.
    """
    market: list[Candidate] = []
    for i, (kind, level) in enumerate(kinds):
        for c in make_market(task, kind, n_per_kind, size, level, level, seed=market_seed + i):
            market.append(Candidate(len(market), c.X, c.y, c.kind, c.level, c.details))
    results = appraise_market(seed, market, INFLUENCE.build_all())
    prices = rule.prices(results.value)
    return results.assign(price=prices, accepted=results.value > rule.threshold)[
        ["candidate", "kind", "level", "value", "utility", "accuracy_change", "price",
         "accepted"]]
