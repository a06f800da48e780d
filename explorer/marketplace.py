"""The blog's table, measured (McAteer, "Private ML Marketplaces"): every way of appraising a
candidate that the project can run, on one market, by what it leaks of the data and of the
model, what it costs and how fairly it prices.

The market: WDBC, candidates of 30 rows with labels flipped at levels spread over [0, 1/2],
and candidates that are copies of the model owner's own seed set (duplicates). Both parties
may choose their inputs freely (the paper's §6) and see as many values (or bits) as one
appraisal of this market reveals: Q = the number of candidates. The approaches:

- ``give up the data``: the data owner hands its candidates over; the model owner appraises
  them with influence in the clear and reports the values.
- ``give up the model``: the model owner hands theta_hat and v over; the data owner computes
  influence in the clear and reports the values.
- ``MPC, value revealed`` and ``MPC, bit revealed``: influence in a private session (CrypTen)
  revealing each value, or only the bit value > the calibrated price threshold.
- ``surrogate: tree`` and ``surrogate: logistic``: the blog's model-data efficacy
  (explorer.appraisers.surrogate): the data owner appraises against the handed-over surrogate
  and reports the values.

Columns (``measure_marketplace``'s ``table``):

- data leakage: ``data_error``, the relative L2 error of the model owner's best
  reconstruction of a 5-row candidate's G(D_a) (its summed gradient at theta_hat, which for one
  row is the row itself) after ``data_revealed`` values or bits (explorer.leakage): 0 = all;
  NaN = not measured (``data_note`` says why). Bit mode's attacks run at explorer.leakage's
  threshold 0 (the data owner's reads signs; the model owner sets its own), not at the
  market's price threshold.
- model leakage: ``model_error``, the relative L2 error of the data owner's best
  reconstruction of theta_hat (explorer.leakage: its crafted candidates; for a surrogate, the
  model rebuilt from it, with ``model_cosine`` and ``model_test_agreement``).
- practicality: ``seconds`` (the whole appraisal of the market: set-up and every value; for
  MPC the sessions' wall time, processes started included) and ``bytes`` (handed over in the
  clear, or sent on the wire by every party; NaN in simulated mode, where one process sends
  nothing).
- fairness: ``rho_values`` and ``rho_prices``, Spearman's rho of the values and of the prices
  against the retrained utility over the label-noise candidates; ``duplicate_price`` (mean)
  and ``duplicates_paid`` (how many are paid above the floor).

Prices: ``price = max(RATE x (value - threshold), 0)``, the threshold calibrated on the model
owner's own data (explorer.pricing: influence's exact own-data baseline + 3 sd; for a
surrogate, explorer.market_prices.own_data_thresholds with OWN_DATA_SUBSETS subsets, on its
own scale); bit mode pays FLAT for an accepted candidate.

Levels (the blog's words, from the measured numbers, by the public rules ``leak_level``,
``practicality_level`` and ``fairness_level``) are set beside the blog's ratings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.appraisers.result import Appraisal
from explorer.config import AppraiserConfig
from explorer.experiments import market_utilities
from explorer.leakage.attack import Attack, run_attack
from explorer.leakage.data_owner import DEFAULT_DEPTH
from explorer.leakage.surrogate import (
    candidate_gradient,
    model_owner_surrogate_attack,
    surrogate_reveal,
)
from explorer.leakage.trace import relative_error
from explorer.market import Candidate, make_market
from explorer.market_prices import own_data_thresholds
from explorer.metrics import spearman
from explorer.pricing import PRICE_THRESHOLD_SD, PricingRule
from explorer.progress import Progress
from explorer.seed import SeedModel, fit_seed_model
from explorer.tasks import load_task

# The blog's table, row by row: D leakage, T leakage, practicality, fairness.
BLOG_RATINGS: dict[str, tuple[str, str, str, str]] = {
    "Giving up data": ("High", "Low", "High", "Low"),
    "Giving up model": ("Low", "High", "High", "Low"),
    "Escrow smart contract": ("Medium", "Medium", "Low", "High"),
    "Encrypting the Model": ("High", "Low", "Low", "N/A"),
    "Encrypting the Data": ("Medium", "Low", "Low", "Medium"),
    "Federated Learning": ("Low", "Low", "Low", "High"),
    "Model-Data Efficacy": ("Low", "Low", "Medium", "High"),
}
CRITERIA = ("data leakage", "model leakage", "practicality", "fairness")
# Each approach the project runs, with the blog's row it is set beside: MPC plays the trusted
# escrow (both inputs enter, only the price comes out), the surrogate is the blog's own.
APPROACHES: tuple[tuple[str, str], ...] = (
    ("give up the data", "Giving up data"),
    ("give up the model", "Giving up model"),
    ("MPC, value revealed", "Escrow smart contract"),
    ("MPC, bit revealed", "Escrow smart contract"),
    ("surrogate: tree", "Model-Data Efficacy"),
    ("surrogate: logistic", "Model-Data Efficacy"),
)

TASK = "wdbc"
SIZE = 30  # rows of every candidate
MAX_LEVEL = 0.5  # label-noise levels spread over [0, MAX_LEVEL]
TARGET_ROWS = 5  # rows of the candidate the model owner's attack reconstructs
RATE = 1000.0  # price per nat of predicted test-loss reduction beyond the threshold
FLAT = 10.0  # bit mode's price of an accepted candidate
OWN_DATA_SUBSETS = 50  # own-data subsets that calibrate a surrogate's threshold

# Rules from measured numbers to the blog's words. Leakage: the relative error of the best
# reconstruction (0.1 is where explorer.leakage counts an attack as successful).
LEAK_HIGH, LEAK_MEDIUM = 0.1, 0.5
# Practicality: the whole market's appraisal within these seconds and bytes. The bytes tell
# the approaches apart (kilobytes handed over against megabytes on the wire); the seconds are
# generous because wall time on a shared machine varies several-fold with its load.
PRACTICAL_HIGH = (10.0, 1e6)
PRACTICAL_MEDIUM = (600.0, 1e9)
# Fairness: Spearman's rho of prices against utility.
FAIR_HIGH, FAIR_MEDIUM = 0.7, 0.4

TABLE_COLUMNS = ["approach", "blog_row", "data_error", "data_revealed", "data_note",
                 "model_error", "model_revealed", "model_cosine", "model_test_agreement",
                 "seconds", "bytes", "bytes_note", "rho_values", "rho_prices",
                 "duplicate_price", "duplicates_paid", "duplicates", "threshold",
                 "data leakage", "model leakage", "practicality", "fairness",
                 *(f"blog {c}" for c in CRITERIA), "disagree",
                 *(f"{c} measured" for c in CRITERIA)]
PRICE_COLUMNS = ["approach", "candidate", "kind", "level", "utility", "value", "price"]


def leak_level(error: float) -> str:
    """How much leaks, in the blog's words, from the relative error of the best
    reconstruction: High at most LEAK_HIGH, Medium at most LEAK_MEDIUM, else Low."""
    if not math.isfinite(error):
        return "not measured"
    return "High" if error <= LEAK_HIGH else "Medium" if error <= LEAK_MEDIUM else "Low"


def practicality_level(seconds: float, nbytes: float) -> str:
    """High within PRACTICAL_HIGH (seconds, bytes), Medium within PRACTICAL_MEDIUM, else Low;
    "not measured" without bytes (simulated MPC: one process, no wire, so its seconds are not
    the protocol's either)."""
    if not math.isfinite(nbytes):
        return "not measured"

    def within(limit: tuple[float, float]) -> bool:
        return seconds <= limit[0] and nbytes <= limit[1]

    return "High" if within(PRACTICAL_HIGH) else "Medium" if within(PRACTICAL_MEDIUM) \
        else "Low"


def fairness_level(rho_prices: float, duplicates_paid: int) -> str:
    """High when prices rank as utility does (rho >= FAIR_HIGH) and no duplicate of the
    model owner's data is paid; Medium from FAIR_MEDIUM; Low below. Paying for duplicates
    lowers the level by one."""
    rho = rho_prices if math.isfinite(rho_prices) else -1.0
    levels = ("Low", "Medium", "High")
    level = 2 if rho >= FAIR_HIGH else 1 if rho >= FAIR_MEDIUM else 0
    return levels[max(level - (duplicates_paid > 0), 0)]


@dataclass(frozen=True)
class Marketplace:
    """What ``measure_marketplace`` measured: the ``table`` (one row per approach,
    TABLE_COLUMNS), the ``prices`` (one row per approach and candidate, PRICE_COLUMNS), the
    number of values or bits each attacker could see (``queries``) and how the MPC rows ran
    (``mpc_mode``: simulated or parties; the attacks always run simulated)."""

    table: pd.DataFrame
    prices: pd.DataFrame
    queries: int
    mpc_mode: str
    seed: SeedModel


def _market(task, n_noise: int, n_duplicates: int, random_state: int) -> list[Candidate]:
    noisy = make_market(task, "label-noise", n_noise, SIZE, MAX_LEVEL, 0.0,
                        random_state=random_state)
    copies = make_market(task, "duplicates", n_duplicates, SIZE, 1.0, 1.0,
                         random_state=random_state + 1)
    return [Candidate(i, c.X, c.y, c.kind, c.level, c.details)
            for i, c in enumerate([*noisy, *copies])]


def _seconds(appraisal: Appraisal) -> float:
    """The appraisal's whole wall time: the model owner's set-up and every value."""
    return float(appraisal.setup_seconds + appraisal.costs["seconds"].sum())


def _private_config(config: AppraiserConfig) -> AppraiserConfig:
    """Influence under MPC: the configuration's own private options when it is private (real
    parties by default), else simulated mode."""
    if config.private:
        return config.with_(names=("influence",), reveal="value")
    return config.with_(names=("influence",), backend="crypten", mode="simulated",
                        provider="TFP", reveal="value")


def _attack(seed: SeedModel, attacker: str, reveal: str, backend: str, queries: int,
            target: Candidate, random_state: int) -> tuple[float, int]:
    """One attack of explorer.leakage with at most ``queries`` values or bits; CrypTen runs
    simulated. The data owner's bisection is as deep as the bits allow rounds (deeper
    bisects no further within the budget, and costs 2^depth rows a candidate)."""
    depth = min(DEFAULT_DEPTH, queries // (seed.n_features + 1) + 1)
    result = run_attack(seed, Attack(attacker, reveal, backend=backend, mode="simulated",
                                     queries=queries, depth=max(depth, 1),
                                     random_state=random_state), (target.X, target.y))
    return result.error, result.queries


def measure_marketplace(config: AppraiserConfig | None = None, quick: bool = False,
                        random_state: int = 0, progress: Progress | None = None
                        ) -> Marketplace:
    """Measure every approach on one WDBC market (see the module's docstring).

    ``config`` gives the MPC rows' private options when it is private (``--backend crypten``:
    real parties by default), and the surrogates' kinds' sizes (``surrogate_size``); otherwise
    the MPC rows run in simulated mode. ``quick``: 30 label-noise candidates and 5 duplicates
    instead of 100 and 10.
    """
    config = config or AppraiserConfig()
    n_noise, n_duplicates = (30, 5) if quick else (100, 10)
    task = load_task(TASK, random_state=random_state)
    seed = fit_seed_model(task)
    market = _market(task, n_noise, n_duplicates, random_state)
    (target,) = make_market(task, "none", 1, TARGET_ROWS, random_state=random_state + 2)
    queries = len(market)
    pairs = [(c.X, c.y) for c in market]
    private = _private_config(config)
    steps = iter(range(1, len(APPROACHES) + 2))

    def step(label: str) -> None:
        if progress:
            progress(f"marketplace: {label}", next(steps), len(APPROACHES) + 1)

    with private.warm_processes():  # real parties import while the ground truth is computed
        truth = market_utilities(seed, market)
        step("ground truth")
        if not private.real_parties:
            # the first session in a process imports CrypTen: a one-candidate session pays
            # that before the measured ones, as warm party processes have for real parties
            private.appraise("influence", seed, pairs[:1])
        plain = AppraiserConfig(names=("influence",)).appraise("influence", seed, pairs)
        rule = PricingRule.calibrated(seed, SIZE, RATE, z=PRICE_THRESHOLD_SD)
        valued = private.appraise("influence", seed, pairs)
        bits = private.with_(reveal="bit", threshold=rule.threshold).appraise(
            "influence", seed, pairs)
    rows, priced = [], []

    def record(approach: str, values, prices, threshold: float, measured: dict) -> None:
        frame = truth.assign(approach=approach, value=np.asarray(values, float),
                             price=np.asarray(prices, float))
        priced.append(frame[PRICE_COLUMNS])
        noisy, copies = frame[frame.kind == "label-noise"], frame[frame.kind == "duplicates"]
        rows.append({"approach": approach, "threshold": threshold,
                     "rho_values": spearman(noisy.value, noisy.utility),
                     "rho_prices": spearman(noisy.price, noisy.utility),
                     "duplicate_price": float(copies.price.mean()),
                     "duplicates_paid": int((copies.price > 0).sum()),
                     "duplicates": len(copies), **measured})

    # the data owner's own rows: what it holds besides the handed-over model or surrogate
    G = candidate_gradient(seed, target.X, target.y)
    plain_bytes = float(sum(np.asarray(X, np.float64).nbytes + 8 * len(y) for X, y in pairs))
    model_error, model_q = _attack(seed, "data-owner", "value", "plaintext", queries, target,
                                   random_state)
    record("give up the data", plain.values, rule.prices(plain.values), rule.threshold,
           {"data_error": relative_error(G, G), "data_revealed": SIZE * len(market),
            "data_note": "the model owner holds every row", "model_error": model_error,
            "model_revealed": model_q, "seconds": _seconds(plain), "bytes": plain_bytes,
            "bytes_note": "the candidates, float64"})
    step("give up the data")
    data_error, data_q = _attack(seed, "model-owner", "value", "plaintext", queries, target,
                                 random_state)
    handed = 2 * seed.theta.numel() * 8  # theta_hat and v, float64
    record("give up the model", plain.values, rule.prices(plain.values), rule.threshold,
           {"data_error": data_error, "data_revealed": data_q, "model_error": 0.0,
            "model_revealed": 0, "model_cosine": 1.0, "model_test_agreement": 1.0,
            "seconds": _seconds(plain), "bytes": float(handed),
            "bytes_note": "theta_hat and v, float64"})
    step("give up the model")
    real = private.real_parties
    wire = "sent on the wire by every process" if real else \
        "not measured: simulated mode runs one process (--backend crypten runs real parties)"
    for approach, reveal, appraisal in (("MPC, value revealed", "value", valued),
                                        ("MPC, bit revealed", "bit", bits)):
        data_error, data_q = _attack(seed, "model-owner", reveal, "crypten", queries, target,
                                     random_state)
        model_error, model_q = _attack(seed, "data-owner", reveal, "crypten", queries, target,
                                       random_state)
        bit = reveal == "bit"
        prices = PricingRule(rate=0.0, threshold=0.5, flat=FLAT).prices(
            np.nan_to_num(appraisal.values)) if bit else rule.prices(appraisal.values)
        record(approach, appraisal.values, prices, rule.threshold,
               {"data_error": data_error, "data_revealed": data_q,
                "model_error": model_error, "model_revealed": model_q,
                "seconds": _seconds(appraisal),
                "bytes": float(appraisal.costs["bytes"].sum()) if real else math.nan,
                "bytes_note": wire})
        step(approach)
    probe = np.vstack([c.X for c in market])  # the data owner's own rows
    for approach, kind in (("surrogate: tree", "tree"), ("surrogate: logistic", "logistic")):
        surrogate = config.with_(names=("surrogate",), backend="plaintext", surrogate=kind)
        appraiser = surrogate.build("surrogate").fit(seed)  # priced and measured alike
        appraisal = surrogate.runner().run(appraiser, pairs)
        threshold = own_data_thresholds(seed, surrogate, SIZE, samples=OWN_DATA_SUBSETS,
                                        random_state=random_state)["surrogate"]
        reveal = surrogate_reveal(seed, appraiser, probe)
        measured = {"model_error": reveal["relative_error"], "model_revealed": 0,
                    "model_cosine": reveal["cosine"],
                    "model_test_agreement": reveal["test_agreement"],
                    "seconds": _seconds(appraisal), "bytes": float(reveal["bytes"]),
                    "bytes_note": f"the surrogate (size {appraiser.size}), float64"}
        if kind == "logistic":
            trace = model_owner_surrogate_attack(seed, appraiser, target.X, target.y, queries)
            q, estimate = trace.points[-1]
            measured.update(data_error=relative_error(estimate["G"], G), data_revealed=q)
        else:
            measured.update(data_error=math.nan, data_revealed=0,
                            data_note="not measured: a tree's value depends on the candidate "
                            "only through its label counts per leaf")
        record(approach, appraisal.values, PricingRule(RATE, threshold).prices(
            appraisal.values), threshold, measured)
        step(approach)
    table = pd.DataFrame(rows)
    table.insert(1, "blog_row", [dict(APPROACHES)[a] for a in table.approach])
    table["data leakage"] = [leak_level(e) for e in table.data_error]
    table["model leakage"] = [leak_level(e) for e in table.model_error]
    table["practicality"] = [practicality_level(s, b) for s, b in zip(table.seconds, table.bytes,
                                                                       strict=True)]
    table["fairness"] = [fairness_level(r, p) for r, p in zip(table.rho_prices,
                                                              table.duplicates_paid, strict=True)]
    for i, criterion in enumerate(CRITERIA):
        table[f"blog {criterion}"] = [BLOG_RATINGS[r][i] for r in table.blog_row]
    table["disagree"] = [", ".join(c for c in CRITERIA if row[c] != row[f"blog {c}"])
                         for _, row in table.iterrows()]
    texts = [_cell_texts(row) for row in table.to_dict("records")]
    for i, criterion in enumerate(CRITERIA):
        table[f"{criterion} measured"] = [t[i] for t in texts]
    return Marketplace(table=table.reindex(columns=TABLE_COLUMNS),
                       prices=pd.concat(priced, ignore_index=True), queries=queries,
                       mpc_mode=private.mpc.mode, seed=seed)


def table_lines(measured: Marketplace) -> list[str]:
    """One line per approach: each criterion measured, its level, and the blog's rating
    beside it ("≠" where they disagree)."""
    lines = []
    for row in measured.table.to_dict("records"):
        cells = []
        for criterion in CRITERIA:
            level, blog = row[criterion], row[f"blog {criterion}"]
            cells.append(f"{criterion} {row[f'{criterion} measured']}: {level} "
                         f"{'=' if level == blog else '≠'} blog {blog}")
        lines.append(f"marketplace {row['approach']} (blog row {row['blog_row']}): "
                     + "; ".join(cells))
    return lines


def _cell_texts(row: Mapping) -> list[str]:
    """The measured numbers of each criterion, in words."""
    def error(e: float, revealed: int, what: str) -> str:
        if not math.isfinite(e):
            return "not measured"
        return f"error {e:.2g}" + (f" after {revealed} {what}" if revealed else "")

    unit = "bits" if "bit" in row["approach"] else "values"
    data = error(row["data_error"], row["data_revealed"],
                 "rows" if row["approach"] == "give up the data" else unit)
    model = error(row["model_error"], row["model_revealed"], unit)
    if math.isfinite(row["model_cosine"]) and row["approach"].startswith("surrogate"):
        model += (f", cosine {row['model_cosine']:.3f}, test agreement "
                  f"{row['model_test_agreement']:.3f}")
    nbytes = row["bytes"]
    practical = f"{row['seconds']:.3g} s, " + (_bytes_text(nbytes) if math.isfinite(nbytes)
                                                else "simulated: one process, no wire")
    rho = row["rho_prices"]
    fair = (f"price rho {'n/a' if not math.isfinite(rho) else f'{rho:+.2f}'} (values "
            f"{row['rho_values']:+.2f}), duplicates paid {row['duplicates_paid']} of "
            f"{row['duplicates']}")
    return [data, model, practical, fair]


def _bytes_text(nbytes: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes:.0f} B"
