"""Acquisition: buying candidates one round at a time, greedily by influence, at random, or by
the oracle of retraining (the paper's Figure 8 and the dashboard's acquisition view)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from explorer.config import AppraiserConfig
from explorer.errors import Cancelled, ExplorerError
from explorer.experiments import INFLUENCE
from explorer.market import Candidate, make_market
from explorer.progress import ACQUISITION, Progress
from explorer.seed import SeedModel, fit_seed_model
from explorer.tasks import load_task
from explorer.utility import absorb, ground_truth

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
    ``on_round()`` is called after each round. With a private ``config`` greedy acquisition
    runs all its rounds in one private session (explorer.mpc.acquisition), which returns the
    picks; the rounds are then replayed here in the clear for their test losses.
    """
    current, remaining = start, list(market)
    rows = [{"round": 0, "candidate": -1, "test_loss": start.test_loss}]
    picks = None
    if strategy == "influence" and config.private:
        picks = config.runner().acquire(config.build("influence").fit(start),
                                        [(c.X, c.y) for c in market], rounds, cancel).picks
    for r in range(1, rounds + 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the acquisition was cancelled.")
        if picks is not None:
            # by identity: a Candidate holds tensors, which == compares elementwise
            pick = next(i for i, c in enumerate(remaining) if c is market[picks[r - 1]])
        elif strategy == "influence":
            values = config.appraise("influence", current, [(c.X, c.y) for c in remaining],
                                     cancel=cancel).values
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
        task = load_task(task_name, random_state=run, **(task_options or {}))
        start = fit_seed_model(task)
        market = make_market(task, kind, n_candidates, size, max_level, min_level, random_state=run)
        rng = np.random.default_rng([run, 5])
        for strategy in strategies:
            rows += [{"run": run, "strategy": strategy, **row} for row in
                     _acquire(start, market, rounds, strategy, rng, config, None)]
        if progress:
            progress("acquisition", run - first_run + 1, runs)
    return _reductions(pd.DataFrame(rows))


def market_acquisition(seed: SeedModel, candidates: Sequence[Candidate], rounds: int,
                       random_orders: int = 5, config: AppraiserConfig = INFLUENCE,
                       random_state: int = 0, cancel: threading.Event | None = None,
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
        rng = np.random.default_rng([random_state, 6, order])
        rows += [{"run": order, "strategy": strategy, **row} for row in
                 _acquire(seed, candidates, rounds, strategy, rng, config, cancel, on_round)]
    return _reductions(pd.DataFrame(rows))
