"""Experiments as tidy DataFrames: appraise a market, compare with ground truth by rank."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from explorer.appraisers import Appraiser, AppraiserConfig
from explorer.appraisers.base import ACQUISITION, Progress
from explorer.errors import AppraisalWarning, Cancelled, ExplorerError
from explorer.market import Candidate, make_market
from explorer.pricing import PricingRule
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


ACQUISITION_COLUMNS = ["run", "strategy", "round", "candidate", "test_loss", "loss_reduction",
                       "relative_reduction"]
# "oracle" buys by utility (retraining on every remaining candidate): a reference line only a
# simulation can draw, since no party may see the other's data.
ACQUISITION_STRATEGIES = ("influence", "random", "oracle")


def _acquire(start: SeedModel, market: Sequence[Candidate], rounds: int, strategy: str,
             rng: np.random.Generator, config: AppraiserConfig,
             cancel: threading.Event | None,
             on_round: Callable[[], None] | None = None) -> list[dict]:
    """One acquisition sequence: rows (round, candidate, test_loss) from round 0.

    ``strategy`` is "influence" (the highest influence under the current model), "random" or
    "oracle" (the highest utility under the current model: ground truth, simulation only).
    ``on_round()`` is called after each round.
    """
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
        elif strategy == "oracle":
            pick = int(np.argmax([ground_truth(current, c.X, c.y).utility for c in remaining]))
        else:
            pick = int(rng.integers(len(remaining)))
        chosen = remaining.pop(pick)
        current = absorb(current, chosen.X, chosen.y)
        rows.append({"round": r, "candidate": chosen.index, "test_loss": current.test_loss})
        if on_round:
            on_round()
    return rows


def _reductions(frame: pd.DataFrame) -> pd.DataFrame:
    """Add loss_reduction (nats: the seed model's test loss minus this round's; positive =
    better) and relative_reduction (that divided by the seed model's test loss: a fixed scale,
    the same for every strategy, round and run)."""
    base = frame.groupby("run").test_loss.transform("first")
    frame["loss_reduction"] = base - frame.test_loss
    frame["relative_reduction"] = frame.loss_reduction / base
    return frame[ACQUISITION_COLUMNS]


def _check_acquisition(rounds: int, n_candidates: int, strategies: Sequence[str]) -> None:
    if rounds < 1 or rounds > n_candidates:
        raise ExplorerError(f"rounds must be between 1 and the number of candidates "
                            f"({n_candidates}), got {rounds}.")
    unknown = [s for s in strategies if s not in ACQUISITION_STRATEGIES]
    if unknown or not strategies:
        raise ExplorerError(f"acquisition strategies must be among "
                            f"{', '.join(ACQUISITION_STRATEGIES)}, got {list(strategies)}.")


def acquisition_curves(task_name: str, kind: str, n_candidates: int, size: int,
                       max_level: float, rounds: int, runs: int = 5, min_level: float = 0.0,
                       task_options: dict | None = None, config: AppraiserConfig = INFLUENCE,
                       first_run: int = 0, progress: Progress | None = None,
                       strategies: Sequence[str] = ("influence", "random")) -> pd.DataFrame:
    """Greedy acquisition by influence versus random acquisition (the paper's Figure 8).

    Each round the model owner appraises the remaining candidates with its current model,
    acquires one (the highest influence, or a random one; "oracle" in ``strategies`` adds
    buying by utility) and refits on everything acquired so far. Columns as
    ACQUISITION_COLUMNS: ``loss_reduction`` is the seed model's test loss minus the current one
    (nats, positive = better), ``relative_reduction`` the same as a fraction of the seed
    model's test loss (round 0 is 0 for every strategy).
    """
    _check_acquisition(rounds, n_candidates, strategies)
    rows = []
    for run in range(first_run, first_run + runs):
        task = load_task(task_name, seed=run, **(task_options or {}))
        start = fit_seed_model(task)
        market = make_market(task, kind, n_candidates, size, max_level, min_level, seed=run)
        rng = np.random.default_rng([run, 5])
        for strategy in strategies:
            rows += [{"run": run, "strategy": strategy, **row} for row in
                     _acquire(start, market, rounds, strategy, rng, config, None)]
        if progress:
            progress("acquisition", run - first_run + 1, runs)
    return _reductions(pd.DataFrame(rows))


def market_acquisition(seed: SeedModel, candidates: Sequence[Candidate], rounds: int,
                       random_orders: int = 5, config: AppraiserConfig = INFLUENCE,
                       random_seed: int = 0, cancel: threading.Event | None = None,
                       oracle: bool = False, progress: Progress | None = None) -> pd.DataFrame:
    """Greedy-by-influence and random acquisition on one given market (the dashboard's view).

    Greedy (and, with ``oracle``, buying by utility: ground truth, simulation only) is one
    sequence with run 0; random is repeated over ``random_orders`` orders, runs 0, 1, ...
    (its band). Columns as ACQUISITION_COLUMNS; every run starts from the same seed model, so
    relative_reduction has the same scale in all of them.

    ``progress("acquisition", done, total)`` is called after every round of every sequence:
    ``done`` rounds made so far of ``total`` = rounds x sequences (greedy, each random order,
    the oracle), so ``done`` only grows.
    """
    strategies = ("influence", "random", *(("oracle",) if oracle else ()))
    _check_acquisition(rounds, len(candidates), strategies)
    sequences = [(strategy, order) for strategy in strategies
                 for order in (range(random_orders) if strategy == "random" else (0,))]
    total, done = rounds * len(sequences), 0

    def on_round() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(ACQUISITION, done, total)

    rows = []
    for strategy, order in sequences:
        rng = np.random.default_rng([random_seed, 6, order])
        rows += [{"run": order, "strategy": strategy, **row} for row in
                 _acquire(seed, candidates, rounds, strategy, rng, config, cancel, on_round)]
    return _reductions(pd.DataFrame(rows))


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


def finetune_steps(budget: float, n_seed: int, size: int) -> int:
    """Full-batch fine-tuning steps that fit in ``budget`` times influence's work on one
    candidate of ``size`` samples, from public sizes only: the same on any machine, at any load.

    Cost model, in per-sample gradient passes (one forward and backward pass of the model on
    one sample, what both appraisers are made of): influence appraises a candidate with one
    pass over its ``size`` samples (its v = H^-1 g_te is the model owner's one-off set-up,
    shared by every candidate of a market, and not charged); a full-batch fine-tuning step
    makes one pass over D_tr ∪ D_a, ``n_seed + size`` samples. Neither fine-tuning's final
    test-loss reading nor influence's dot product with v is charged. At least one step.
    """
    if budget <= 0 or n_seed < 1 or size < 1:
        raise ExplorerError(f"the budget and the sizes must be positive, got budget "
                            f"{budget:g}, n_seed {n_seed}, size {size}.")
    return max(1, int(round(budget * size / (n_seed + size))))


def finetune_budgets(seed: SeedModel, candidates: Sequence[Candidate], utilities: pd.DataFrame,
                     lrs: Sequence[float] = (0.001, 0.1, 10.0),
                     budgets: Sequence[int] = (1, 4, 16)) -> pd.DataFrame:
    """The paper's Table 1: fine-tuning limited to 1x/4x/16x influence's work per candidate
    (``finetune_steps``: a cost model of public sizes, not a clock), at several learning rates.

    Columns: lr, budget, steps, spearman, spearman_level, influence_spearman,
    influence_spearman_level, diverges (a learning rate at which the steps cannot converge is
    not run: its rhos are NaN and ``diverges`` is True). The ``_level`` rhos rank against
    minus the noise level (less noise = more valuable).
    """
    sizes = sorted({c.size for c in candidates})
    if len(sizes) != 1:
        raise ExplorerError(f"finetune_budgets needs candidates of one size (its budget is per "
                            f"candidate), got sizes {sizes}.")
    inf = appraise_market(seed, candidates, INFLUENCE.build_all(), utilities)
    finetune = AppraiserConfig(names=("finetune",))
    rows = []
    for budget in budgets:
        steps = finetune_steps(budget, seed.n_seed, sizes[0])
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
    return results.assign(price=prices, accepted=results.value > rule.threshold,
                          threshold=rule.threshold)[
        ["candidate", "kind", "level", "value", "utility", "accuracy_change", "price",
         "accepted", "threshold"]]


def own_data_thresholds(seed: SeedModel, config: AppraiserConfig, size: int, z: float = 3.0,
                        samples: int = 20, random_state: int = 0) -> dict[str, float]:
    """A bit-mode threshold per appraiser, each on that appraiser's own scale.

    The model owner appraises, in plaintext, ``samples`` random ``size``-sample subsets of its
    own training set (drawn without replacement when size <= n_seed): data it already holds,
    so buying a candidate should beat them. Each threshold is the mean of those values plus
    ``z`` sample standard deviations, in the appraiser's unit (nats for influence, finetune and
    newton; the gradient norm's own unit). One number cannot serve every appraiser: their
    scales differ by orders of magnitude, and the gradient norm's is not a loss at all.
    """
    if size < 1 or samples < 2:
        raise ExplorerError(f"own_data_thresholds needs a positive size and at least two "
                            f"samples, got size {size} and {samples} samples.")
    rng = np.random.default_rng([random_state, 7])
    subsets = []
    for _ in range(samples):
        rows = rng.choice(seed.n_seed, size, replace=size > seed.n_seed)
        subsets.append((seed.X_train[rows].numpy(), seed.y_train[rows].numpy()))
    plain = config.with_(backend="plaintext")
    thresholds = {}
    for name in config.names:
        with warnings.catch_warnings():
            # own data can trip the linearisation and stability notes meant for candidates
            warnings.simplefilter("ignore", AppraisalWarning)
            appraiser = plain.build(name).fit(seed)
            values = np.array([r["value"] for r in appraiser.appraise_many(subsets)])
        thresholds[name] = float(values.mean() + z * values.std(ddof=1))
    return thresholds


def bit_appraisers(config: AppraiserConfig, thresholds: Mapping[str, float]) -> list[Appraiser]:
    """The configuration's appraisers in bit mode, each with its own threshold (e.g. from
    ``own_data_thresholds``): only value > threshold is revealed, per candidate."""
    if config.backend != "crypten":
        raise ExplorerError("bit mode needs the crypten backend: in plaintext the value itself "
                            "is computed in the clear.")
    missing = [n for n in config.names if n not in thresholds]
    if missing:
        raise ExplorerError(f"bit mode needs a threshold for every appraiser; none for "
                            f"{', '.join(missing)}.")
    return [config.with_(reveal="bit", threshold=float(thresholds[n])).build(n)
            for n in config.names]


def bit_prices(results: pd.DataFrame, flat: float, floor: float = 0.0,
               thresholds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Bit-mode results (``value`` is the revealed bit, 1 = value > threshold) with
    ``accepted`` and the flat ``price``: ``flat`` for an accepted candidate, ``floor`` for the
    rest (currency units). A bit that is NaN (not verified) is not accepted. With
    ``thresholds`` (appraiser -> threshold), a ``threshold`` column records each row's."""
    rule = PricingRule(rate=0.0, threshold=0.0, floor=floor, flat=flat)
    bits = results["value"].to_numpy(float)
    accepted = np.nan_to_num(bits, nan=0.0) > 0.5
    out = results.assign(accepted=accepted, price=rule.prices(accepted.astype(float)))
    if thresholds is not None:
        missing = sorted(set(out["appraiser"]) - set(thresholds))
        if missing:
            raise ExplorerError(f"no threshold for {', '.join(missing)}.")
        out = out.assign(threshold=out["appraiser"].map(thresholds).astype(float))
    return out
