"""The one table of parameter constraints and the project's input limits, checked once where
input enters: the command line's argparse types, ``load_task``, ``make_market``,
``fit_seed_model``, ``AppraiserConfig`` and the files a party reads.

The lowest layer: it imports nothing of the project but its error type, so every other module
may use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from explorer.errors import ExplorerError

BACKENDS = ("plaintext", "crypten")
MODES = ("parties", "simulated")
PROVIDERS = {
    "TTP": "a third dealer process deals the multiplication triples; private as long as the "
           "dealer colludes with neither party",
    "TFP": "the model owner's process generates every triple itself: fast, but it could then "
           "recover the data owner's inputs, so use it only for teaching and testing",
}
REVEALS = ("value", "bit")
PRECONDITIONERS = ("auto", "dense", "kfac")
SOLVERS = ("auto", "dense", "cg")
# The appraisers that run in plaintext and under MPC (the paper's three and newton).
APPRAISER_NAMES = ("influence", "gradient-norm", "finetune", "newton")
# The seed model's family: the paper's L2 logistic regression; a small ReLU network; the same
# network with its hidden layers frozen, the head appraised as a logistic model on them.
MODELS = ("logistic", "mlp", "last-layer")
ACTIVATIONS = ("relu", "silu", "square")
# budgeted buying's oracle: every affordable subset (small markets), greedy by utility per price,
# or the first when the market is small enough (explorer.acquisition)
ORACLES = ("auto", "knapsack", "greedy")
# The blog's model-data efficacy: the data owner runs it alone, in the clear, on a surrogate
# the model owner hands over (explorer.appraisers.surrogate); it has no private form.
PLAINTEXT_APPRAISER_NAMES = ("surrogate",)
ALL_APPRAISER_NAMES = (*APPRAISER_NAMES, *PLAINTEXT_APPRAISER_NAMES)
SURROGATE_KINDS = ("tree", "logistic")
SURROGATE_SCORES = ("test-loss", "agreement")


def default_provider(mode: str) -> str:
    """The triple provider a mode runs with unless told otherwise: simulated mode is one process
    with no dealer to ask (TFP); real parties take the dealer (TTP)."""
    return "TFP" if mode == "simulated" else "TTP"


# The one table of defaults: the configuration's fields (explorer.config), the appraisers'
# constructors, the command line and the dashboard's controls all read them here.
DEFAULTS: dict[str, Any] = {
    "names": ("influence", "gradient-norm", "finetune"),
    # the seed model: its family, and a network's hidden widths and activation
    "model": "logistic",
    "hidden": (64,),
    "activation": "silu",
    # influence on a network: delta = damping x lam in (H + delta I) v = g_te
    "damping": 0.1,
    "backend": "plaintext",
    # fine-tuning
    "lr": 0.1,
    "steps": 16,
    "batch_size": None,  # full batch
    "random_state": 0,  # fine-tuning's mini-batch order
    # newton: safeguarded Newton steps K (README: how K was chosen)
    "newton_steps": 4,
    "preconditioner": "auto",
    # influence's Hessian solve
    "solver": "auto",
    # the blog's surrogate: its kind, its public size (tree depth, or logistic projected
    # features) and what the data owner scores (README: how they were chosen)
    "surrogate": "tree",
    "surrogate_size": 4,
    "surrogate_score": "test-loss",
    # private appraisal; fixed-point fractional bits: see the README on why not the paper's 24
    "mode": "parties",
    "precision_bits": 16,
    "provider": default_provider("parties"),
    "reveal": "value",
    "threshold": 0.0,
    "timeout": 600.0,
    "verify": True,  # every value twice, from independent sharings (README)
    "sellers": 1,  # data owners, each its own process with its own candidates
    # defences applied inside the protocol before the reveal
    "grid": 0.0,
    "noise": 0.0,
    "weight_bound": None,
    "row_bound": None,
}

# Limits on what a data owner may bring (README: "Appraising your own data").
# A candidate file larger than this is refused before it is read.
MAX_CANDIDATE_FILE_BYTES = 512 * 2**20
# A candidate feature further than this many seed-set standard deviations from the seed-set mean
# is refused as absurd (a unit or parsing mistake); far below what the fixed-point ring holds.
MAX_STANDARDISED = 1e6
# Data owners in one private session: one process each (README: several data owners).
MAX_SELLERS = 32


def is_whole(value: Any) -> bool:
    """An int (numpy's too), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite int or float (numpy's too), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


@dataclass(frozen=True)
class _Real:
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    words: str | None = None  # how describe() says it, when the bounds alone read badly
    optional: bool = False  # None allowed (a setting that is off)

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if not is_real(value):
            return False
        if self.low is not None and not (value > self.low if self.low_open
                                         else value >= self.low):
            return False
        return self.high is None or value <= self.high

    def check(self, name: str, value: Any) -> None:
        if not self.ok(value):
            raise ExplorerError(f"{name} must be {self.describe()}, got {value!r}.")

    def describe(self) -> str:
        if self.words:
            return self.words
        if self.low is None and self.high is None:
            return "a finite number"
        if self.low is not None and self.high is not None and not self.low_open:
            return f"a number within [{self.low:g}, {self.high:g}]"
        low = "" if self.low is None else (f"above {self.low:g}" if self.low_open
                                           else f"at least {self.low:g}")
        high = "" if self.high is None else f"at most {self.high:g}"
        return "a number " + " and ".join(p for p in (low, high) if p)


@dataclass(frozen=True)
class _Whole:
    low: int
    high: int | None = None
    optional: bool = False

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return is_whole(value) and value >= self.low and (self.high is None
                                                          or value <= self.high)

    def check(self, name: str, value: Any) -> None:
        if not self.ok(value):
            raise ExplorerError(f"{name} must be {self.describe()}, got {value!r}.")

    def describe(self) -> str:
        if self.high is not None:
            rng = f"a whole number between {self.low} and {self.high}"
        elif self.low == 1:
            rng = "a positive integer"
        else:
            rng = f"a whole number at least {self.low}"
        return rng + (" (or None)" if self.optional else "")


@dataclass(frozen=True)
class _Bool:
    def ok(self, value: Any) -> bool:
        return isinstance(value, bool)

    def check(self, name: str, value: Any) -> None:
        if not self.ok(value):
            raise ExplorerError(f"{name} must be True or False, got {value!r}.")

    def describe(self) -> str:
        return "True or False"


@dataclass(frozen=True)
class _OneOf:
    options: Sequence[str]

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options

    def check(self, name: str, value: Any) -> None:
        if not self.ok(value):
            raise ExplorerError(f"unknown {name} {value!r}; choose one of "
                                f"{', '.join(self.options)}.")

    def describe(self) -> str:
        return f"one of {', '.join(self.options)}"


@dataclass(frozen=True)
class _Portion:
    """A fraction of all samples in (0, 1], or a count of at least 1."""

    def ok(self, value: Any) -> bool:
        if is_whole(value):
            return value >= 1
        return is_real(value) and 0.0 < value <= 1.0

    def check(self, name: str, value: Any) -> None:
        if not self.ok(value):
            raise ExplorerError(f"{name} must be {self.describe()}, got {value!r}.")

    def describe(self) -> str:
        return "a fraction of all samples in (0, 1] or a count of at least 1"


CONSTRAINTS: dict[str, Any] = {
    # the seed task and the seed model
    "random_state": _Whole(0, 2**32 - 1),  # every RNG seed: split, market, mini-batches
    "lam": _Real(0.0, 1e6, low_open=True, words="a positive number up to 1e+06"),
    "drop_features": _Whole(0),
    "seed_size": _Portion(),
    "test_size": _Portion(),
    "tol": _Real(0.0, None, low_open=True),
    "max_iter": _Whole(1),
    "model": _OneOf(MODELS),
    "hidden": _Whole(1, 4096),  # each hidden width
    "activation": _OneOf(ACTIVATIONS),
    "damping": _Real(0.0, 1e6, words="a number within [0, 1e+06]"),
    # the candidate market
    "n_candidates": _Whole(1, 100_000),
    "size": _Whole(1),
    "sizes": _Whole(1, 10_000_000),
    "max_level": _Real(0.0, 1.0),
    "min_level": _Real(0.0, 1.0),
    "level": _Real(0.0, 1.0),
    "target_class": _Whole(0),
    # the appraisers
    "backend": _OneOf(BACKENDS),
    "lr": _Real(0.0, None, low_open=True),
    "steps": _Whole(1, 100_000),
    "batch_size": _Whole(1, None, optional=True),
    "newton_steps": _Whole(1, 64),
    "preconditioner": _OneOf(PRECONDITIONERS),
    "solver": _OneOf(SOLVERS),
    "surrogate": _OneOf(SURROGATE_KINDS),
    "surrogate_size": _Whole(1, 10_000),
    "surrogate_score": _OneOf(SURROGATE_SCORES),
    # private appraisal
    "mode": _OneOf(MODES),
    "provider": _OneOf(tuple(PROVIDERS)),
    "reveal": _OneOf(REVEALS),
    "precision_bits": _Whole(8, 28),
    "threshold": _Real(),
    "timeout": _Real(0.0, 7 * 86400.0, low_open=True),
    "verify": _Bool(),
    "sellers": _Whole(1, MAX_SELLERS),
    "budget_count": _Whole(0, None),
    # defences applied inside the protocol before the reveal (explorer.appraisers.reveal)
    "grid": _Real(0.0, 1e6, words="a number within [0, 1e+06] (0: no rounding)"),
    "noise": _Real(0.0, 1e6, words="a number within [0, 1e+06] (0: no noise)"),
    # W <= 1: the check's 1/W keeps its relative encoding error within 2^-17 (reveal.py)
    "weight_bound": _Real(0.0, 1.0, low_open=True, optional=True,
                          words="a positive number up to 1"),
    "row_bound": _Real(0.0, 1e6, low_open=True, optional=True,
                       words="a positive number up to 1e+06"),
    # budgeted buying (explorer.acquisition, explorer.asks): money in currency units
    "budget": _Real(0.0, 1e12, low_open=True, words="a positive number up to 1e+12"),
    "price": _Real(0.0, 1e12, low_open=True, words="a positive number up to 1e+12"),
    "price_per_sample": _Real(0.0, 1e9, low_open=True, words="a positive number up to 1e+09"),
    "price_noise": _Real(0.0, 3.0),
    "random_orders": _Whole(1, 1000),
    "oracle": _OneOf(ORACLES),
}


# How each parameter is named in a message (and its command-line option).
LABELS = {
    "random_state": "the random state (--random-state)",
    "lam": "the L2 strength lam (--lam)",
    "drop_features": "drop_features (--drop-features)",
    "seed_size": "the seed-set size",
    "test_size": "the test-set size",
    "tol": "the fit's tolerance",
    "max_iter": "the fit's iteration limit",
    "model": "seed model (--model)",
    "hidden": "each hidden width (--hidden)",
    "activation": "activation (--activation)",
    "damping": "the network damping (--damping)",
    "n_candidates": "the number of candidates (--candidates)",
    "size": "the candidate size (--size)",
    "sizes": "each candidate size (--sizes)",
    "max_level": "the max-level (--max-level)",
    "min_level": "the min-level (--min-level)",
    "level": "the corruption level (--level)",
    "target_class": "the target class (--target-class)",
    "backend": "backend (--backend)",
    "lr": "the fine-tuning learning rate (--lr)",
    "steps": "the fine-tuning steps (--steps)",
    "batch_size": "the fine-tuning batch size (--batch-size)",
    "newton_steps": "the newton steps (--newton-steps)",
    "preconditioner": "preconditioner (--preconditioner)",
    "solver": "Hessian solver",
    "surrogate": "surrogate kind (--surrogate)",
    "surrogate_size": "the surrogate size (--surrogate-size)",
    "surrogate_score": "surrogate score",
    "mode": "MPC mode (--mode)",
    "provider": "provider (--provider)",
    "reveal": "reveal mode (--reveal)",
    "precision_bits": "the precision bits (--precision-bits)",
    "threshold": "the threshold (--threshold)",
    "timeout": "the timeout (--timeout)",
    "verify": "verify",
    "sellers": "the number of data owners (--sellers)",
    "budget_count": "a ledger budget (--budget-sessions, --budget-values, --budget-bits)",
    "grid": "the rounding grid (--grid)",
    "noise": "the noise level (--noise)",
    "weight_bound": "the weight bound (--weight-bound)",
    "row_bound": "the row bound (--row-bound)",
    "budget": "the budget (--budget)",
    "price": "an asking price (--prices)",
    "price_per_sample": "the asking price per sample (--price-per-sample)",
    "price_noise": "the asking prices' log-normal spread (--price-noise)",
    "random_orders": "the number of random orders (--random-orders)",
    "oracle": "oracle (--oracle)",
}
assert set(LABELS) == set(CONSTRAINTS)


def check_params(params: Mapping[str, Any]) -> None:
    """Validate each named parameter against CONSTRAINTS; one sentence on the first problem."""
    for name, value in params.items():
        CONSTRAINTS[name].check(LABELS[name], value)


def parse_appraiser_names(spec: str | Sequence[str]) -> tuple[str, ...]:
    """'influence,finetune' -> ('influence', 'finetune'), validated and without repeats."""
    if isinstance(spec, str):
        spec = spec.split(",")
    if not isinstance(spec, Sequence) or not all(isinstance(n, str) for n in spec):
        raise ExplorerError(f"name the appraisers as a comma-separated string or a list of "
                            f"names ({', '.join(ALL_APPRAISER_NAMES)}), got {spec!r}.")
    names = [n.strip() for n in spec]
    names = [n for n in names if n]
    if not names:
        raise ExplorerError(f"name at least one appraiser: {', '.join(ALL_APPRAISER_NAMES)}.")
    for n in names:
        _OneOf(ALL_APPRAISER_NAMES).check("appraiser", n)
    return tuple(dict.fromkeys(names))
