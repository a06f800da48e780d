"""Acquisition: buying candidates one round at a time, greedily by influence, at random, or by
the oracle of retraining (the paper's Figure 8 and the dashboard's acquisition view); and the
budgeted buyer, who pays each seller's asking price (explorer.asks) out of a budget and buys by
appraised value per price (``budgeted_acquisition``)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from explorer.asks import check_prices
from explorer.config import AppraiserConfig
from explorer.constraints import check_params, parse_appraiser_names
from explorer.errors import Cancelled, ExplorerError
from explorer.experiments import INFLUENCE
from explorer.market import Candidate, make_market
from explorer.progress import ACQUISITION, Progress
from explorer.seed import LOGISTIC, AnySeed, SeedChoice
from explorer.tasks import load_task
from explorer.utility import absorb, check_absorbs, ground_truth

ACQUISITION_COLUMNS = ["run", "strategy", "round", "candidate", "test_loss", "loss_reduction",
                       "relative_reduction"]
# "oracle" buys by utility (retraining on every remaining candidate): a reference line only a
# simulation can draw, since no party may see the other's data.
ACQUISITION_STRATEGIES = ("influence", "random", "oracle")

BUDGET_COLUMNS = ["strategy", "method", "run", "round", "candidate", "value", "price", "spent",
                  "test_loss", "budget"]
BUYING = "buying within budget"  # the budgeted buyer's progress phase
# The knapsack oracle retrains once per affordable subset: "auto" takes it up to this many.
KNAPSACK_MAX_SUBSETS = 1024


def _acquire(start: AnySeed, market: Sequence[Candidate], rounds: int, strategy: str,
             rng: np.random.Generator, config: AppraiserConfig,
             cancel: threading.Event | None,
             on_round: Callable[[], None] | None = None, appraiser: str = "influence",
             prices: np.ndarray | None = None, budget: float | None = None) -> list[dict]:
    """One acquisition sequence: rows (round, candidate, value, price, spent, test_loss) from
    round 0, at most ``rounds`` purchases.

    ``strategy`` is "influence" (greedy: the highest ``appraiser`` value under the current
    model, which is re-appraised after every purchase), "random" or "oracle" (the highest
    utility under the current model: ground truth, simulation only). ``on_round()`` is called
    after each round. With a private ``config`` unbudgeted greedy acquisition by influence runs
    all its rounds in one private session (explorer.mpc.acquisition), which returns the picks;
    the rounds are then replayed here in the clear for their test losses.

    With ``prices`` (one per candidate of ``market``, currency units) and a ``budget`` the
    buyer is budgeted: each round only the candidates not yet bought whose price fits what is
    left of the budget are eligible (exactly: the sum of the prices paid never passes it);
    greedy and the oracle appraise those alone, skip a value <= 0 and buy the highest value per
    price (ties: the first in market order); random buys any eligible one. The sequence ends
    when nothing eligible is left. A budgeted private buyer appraises in one session per round:
    the one-session protocol buys the highest value, not value per price. ``value`` is the
    bought candidate's value when it was bought (NaN for random).
    """
    check_absorbs(start.family)
    current, remaining = start, list(range(len(market)))
    rows = [{"round": 0, "candidate": -1, "value": float("nan"), "price": 0.0, "spent": 0.0,
             "test_loss": start.test_loss}]
    paid: list[float] = []
    session = None
    if strategy == "influence" and config.private and prices is None:
        session = config.runner().acquire(config.build("influence", start.family).fit(start),
                                          [(c.X, c.y) for c in market], rounds, cancel)
    for r in range(1, rounds + 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the acquisition was cancelled.")
        eligible = remaining if prices is None else \
            [i for i in remaining if math.fsum([*paid, prices[i]]) <= budget]
        if not eligible:
            break
        if session is not None:
            pick = session.picks[r - 1]
            value = float(session.values[r - 1, pick])
        elif strategy == "random":
            pick, value = eligible[int(rng.integers(len(eligible)))], float("nan")
        else:
            pairs = [(market[i].X, market[i].y) for i in eligible]
            if strategy == "influence":
                values = np.asarray(config.appraise(appraiser, current, pairs,
                                                    cancel=cancel).values, dtype=np.float64)
            else:
                values = np.array([ground_truth(current, X, y).utility for X, y in pairs])
            score = values
            if prices is not None:  # value per price, among the candidates worth buying
                score = np.where(values > 0, values / prices[eligible], -np.inf)
                if not (values > 0).any():
                    break
            k = int(np.argmax(score))
            pick, value = eligible[k], float(values[k])
        remaining.remove(pick)
        chosen = market[pick]
        price = 0.0 if prices is None else float(prices[pick])
        paid.append(price)
        current = absorb(current, chosen.X, chosen.y)
        rows.append({"round": r, "candidate": chosen.index, "value": value, "price": price,
                     "spent": math.fsum(paid), "test_loss": current.test_loss})
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
                       strategies: Sequence[str] = ("influence", "random"),
                       seed_choice: SeedChoice = LOGISTIC) -> pd.DataFrame:
    """Greedy acquisition by influence versus random acquisition (the paper's Figure 8).

    Each round the model owner appraises the remaining candidates with its current model,
    acquires one (the highest influence, or a random one; "oracle" in ``strategies`` adds
    buying by utility) and refits on everything acquired so far. Columns as
    ACQUISITION_COLUMNS: ``loss_reduction`` is the seed model's test loss minus the current one
    (nats, positive = better), ``relative_reduction`` the same as a fraction of the seed
    model's test loss (round 0 is 0 for every strategy). ``seed_choice`` says which seed model each
    run fits (explorer.seed.SeedChoice; acquisition refits the whole model, so not last-layer).
    """
    _check_acquisition(rounds, n_candidates, strategies)
    if not isinstance(seed_choice, SeedChoice):
        raise ExplorerError("seed_choice must be an explorer.seed.SeedChoice.")
    check_absorbs(seed_choice.model)
    rows = []
    for run in range(first_run, first_run + runs):
        task = load_task(task_name, random_state=run, **(task_options or {}))
        start = seed_choice.fit(task)
        market = make_market(task, kind, n_candidates, size, max_level, min_level, random_state=run)
        rng = np.random.default_rng([run, 5])
        for strategy in strategies:
            rows += [{"run": run, "strategy": strategy, **row} for row in
                     _acquire(start, market, rounds, strategy, rng, config, None)]
        if progress:
            progress("acquisition", run - first_run + 1, runs)
    return _reductions(pd.DataFrame(rows))


def market_acquisition(seed: AnySeed, candidates: Sequence[Candidate], rounds: int,
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
    check_absorbs(seed.family)
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


def _affordable_subsets(prices: np.ndarray, budget: float, limit: int) -> int:
    """How many subsets of the candidates (the empty one included) cost at most ``budget``,
    counted up to ``limit + 1`` (enough to tell that there are more than ``limit``)."""
    order = np.sort(prices)
    count = 0

    def visit(start: int, paid: list[float]) -> None:
        nonlocal count
        count += 1
        for j in range(start, len(order)):
            if count > limit or math.fsum([*paid, order[j]]) > budget:
                return  # dearer ones do not fit either
            visit(j + 1, [*paid, order[j]])

    visit(0, [])
    return count


def _knapsack(start: AnySeed, market: Sequence[Candidate], prices: np.ndarray, budget: float,
              cancel: threading.Event | None) -> list[dict]:
    """The exact oracle: the model retrained on every affordable subset of the candidates (the
    empty one too), and the subset of lowest test loss (ties: the first found). Its rows buy
    that subset in the order that lowers the test loss most at each step among its own
    subsets (all affordable, all retrained already), so its last row is the optimum; ``value``
    is each purchase's true test-loss reduction at that step (nats)."""
    order = [int(i) for i in np.argsort(prices, kind="stable")]
    loss: dict[frozenset, float] = {frozenset(): start.test_loss}

    def visit(k: int, model: AnySeed, bought: frozenset, paid: list[float]) -> None:
        for position, j in enumerate(order[k:], start=k):
            if math.fsum([*paid, prices[j]]) > budget:
                return  # in price order: dearer ones do not fit either
            if cancel is not None and cancel.is_set():
                raise Cancelled("the acquisition was cancelled.")
            child = absorb(model, market[j].X, market[j].y)  # warm-started at the parent's
            loss[bought | {j}] = child.test_loss
            visit(position + 1, child, bought | {j}, [*paid, prices[j]])

    visit(0, start, frozenset(), [])
    best = min(loss, key=loss.__getitem__)
    rows = [{"round": 0, "candidate": -1, "value": float("nan"), "price": 0.0, "spent": 0.0,
             "test_loss": start.test_loss}]
    held: frozenset = frozenset()
    paid: list[float] = []
    for r in range(1, len(best) + 1):
        j = min(sorted(best - held), key=lambda i: loss[held | {i}])
        paid.append(float(prices[j]))
        rows.append({"round": r, "candidate": market[j].index,
                     "value": loss[held] - loss[held | {j}], "price": float(prices[j]),
                     "spent": math.fsum(paid), "test_loss": loss[held | {j}]})
        held = held | {j}
    return rows


def budgeted_acquisition(seed: AnySeed, candidates: Sequence[Candidate], prices,
                         budget: float, appraiser: str = "influence",
                         config: AppraiserConfig = INFLUENCE, random_orders: int = 5,
                         oracle: str = "auto", random_state: int = 0,
                         cancel: threading.Event | None = None,
                         progress: Progress | None = None) -> pd.DataFrame:
    """The budgeted buyer against random buying and the oracle, on one market.

    ``prices`` are the sellers' asking prices, one per candidate (currency units; e.g.
    explorer.asks.asking_prices), ``budget`` what the model owner may spend in all. Three
    strategies, each buying a candidate at most once, paying its price, refitting on what it
    bought, and never spending past the budget (``_acquire``):

    - "greedy": re-appraises the affordable candidates with ``appraiser`` under ``config``
      (plaintext or private) and its current model after every purchase, skips values <= 0
      and buys the highest value per price (ties: the first in market order); it stops when
      no affordable candidate is worth buying.
    - "random": any affordable candidate, uniformly, until none is affordable; runs
      0 .. ``random_orders`` - 1, each its own order.
    - "oracle" (ground truth, simulation only): ``oracle="knapsack"`` retrains on every
      affordable subset and buys the one of lowest test loss, which no strategy within the
      budget can beat; ``"greedy"`` buys by true utility (retraining) per price, as greedy
      does by its value; ``"auto"`` is the knapsack up to KNAPSACK_MAX_SUBSETS affordable
      subsets, greedy beyond.

    Columns as BUDGET_COLUMNS, one row per purchase and a round-0 row (the seed model) per
    run: ``method`` says how the strategy chose; ``value`` is the bought candidate's value
    when bought (the appraiser's unit; the oracle's in nats of test loss; NaN for random),
    ``price`` what was paid, ``spent`` the total paid so far, ``test_loss`` the model's mean
    test cross-entropy after the purchase (nats, lower is better). ``progress(BUYING, done,
    total)`` is called after each sequence (greedy, each random order, the oracle).
    """
    if not candidates or not all(isinstance(c, Candidate) for c in candidates):
        raise ExplorerError("budgeted buying needs a market: a non-empty list of Candidates "
                            "(explorer.market.make_market).")
    check_absorbs(seed.family)
    prices = check_prices(prices, len(candidates))
    check_params({"budget": budget, "random_orders": random_orders, "oracle": oracle,
                  "random_state": random_state})
    (appraiser,) = parse_appraiser_names([appraiser])
    if not isinstance(config, AppraiserConfig):
        raise ExplorerError("appraise with an AppraiserConfig (explorer.config).")
    if config.reveals_bits:
        raise ExplorerError("the budgeted buyer ranks candidates by value per price, which a "
                            "bit cannot say; reveal values.")
    if oracle != "greedy":
        subsets = _affordable_subsets(prices, budget, KNAPSACK_MAX_SUBSETS)
        if subsets > KNAPSACK_MAX_SUBSETS:
            if oracle == "knapsack":
                raise ExplorerError(f"the knapsack oracle retrains on every affordable subset, "
                                    f"and more than {KNAPSACK_MAX_SUBSETS} fit this budget; use "
                                    f"a smaller market or budget, or the greedy oracle.")
            oracle = "greedy"
        else:
            oracle = "knapsack"
    sequences = [("greedy", f"{appraiser} value per price", 0)]
    sequences += [("random", "uniform among affordable", order) for order in range(random_orders)]
    sequences += [("oracle", "knapsack: every affordable subset" if oracle == "knapsack"
                   else "utility per price (ground truth)", 0)]
    rows = []
    for done, (strategy, method, run) in enumerate(sequences, start=1):
        if strategy == "oracle" and oracle == "knapsack":
            bought = _knapsack(seed, candidates, prices, budget, cancel)
        else:
            rng = np.random.default_rng([random_state, 6, run])  # market_acquisition's orders
            inner = "influence" if strategy == "greedy" else strategy  # _acquire's name for it
            bought = _acquire(seed, candidates, len(candidates), inner, rng, config, cancel,
                              appraiser=appraiser, prices=prices, budget=budget)
        rows += [{"strategy": strategy, "method": method, "run": run, **row, "budget": budget}
                 for row in bought]
        if progress:
            progress(BUYING, done, len(sequences))
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def budget_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per strategy of a ``budgeted_acquisition`` frame, where each run ended: ``runs``, the
    mean and sample sd over runs (sd 0 with one run) of ``bought`` (candidates), ``spent``
    (currency units) and ``test_loss`` (nats), and ``method``, in the frame's order."""
    last = frame.sort_values("round").groupby(["strategy", "run"], sort=False).tail(1)
    last = last.assign(bought=last["round"])
    out = last.groupby("strategy", sort=False).agg(
        method=("method", "first"), runs=("run", "nunique"),
        **{f"{c}_{s}": (c, s) for c in ("bought", "spent", "test_loss") for s in ("mean", "std")})
    order = list(dict.fromkeys(frame["strategy"]))
    return out.reindex(order).fillna({f"{c}_std": 0.0 for c in ("bought", "spent", "test_loss")})
