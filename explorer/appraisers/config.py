"""One configuration object builds appraisers for the CLI, the dashboard, reproduce, experiments
and benchmarks, and one table of constraints validates every parameter, once, at the boundary.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from explorer.errors import ExplorerError
from explorer.ledger import Budget

APPRAISER_NAMES = ("influence", "gradient-norm", "finetune", "newton")
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
# Fixed-point fractional bits; see the README on why not the paper's 24.
DEFAULT_PRECISION_BITS = 16
# Safeguarded Newton steps of the `newton` appraiser (README: how K was chosen).
DEFAULT_NEWTON_STEPS = 4


@dataclass(frozen=True)
class _Real:
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def check(self, name: str, value: Any) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value <= self.high
        if not ok:
            raise ExplorerError(f"{name} must be {self.describe()}, got {value!r}.")

    def describe(self) -> str:
        if self.low is None and self.high is None:
            return "a finite number"
        low = "" if self.low is None else (f"above {self.low:g}" if self.low_open
                                           else f"at least {self.low:g}")
        high = "" if self.high is None else f"at most {self.high:g}"
        return "a number " + " and ".join(p for p in (low, high) if p)


@dataclass(frozen=True)
class _Whole:
    low: int
    high: int | None = None
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= self.low \
            and (self.high is None or value <= self.high)
        if not ok:
            top = f" and {self.high}" if self.high is not None else ""
            rng = f"between {self.low}{top}" if top else f"at least {self.low}"
            none = " (or None)" if self.optional else ""
            raise ExplorerError(f"{name} must be a whole number {rng}{none}, got {value!r}.")


@dataclass(frozen=True)
class _OneOf:
    options: Sequence[str]

    def check(self, name: str, value: Any) -> None:
        if value not in self.options:
            raise ExplorerError(f"unknown {name} {value!r}; choose one of "
                                f"{', '.join(self.options)}.")


CONSTRAINTS: dict[str, Any] = {
    "backend": _OneOf(BACKENDS),
    "lr": _Real(0.0, None, low_open=True),
    "steps": _Whole(1, 100_000),
    "batch_size": _Whole(1, None, optional=True),
    "batch_seed": _Whole(0),
    "newton_steps": _Whole(1, 64),
    "preconditioner": _OneOf(PRECONDITIONERS),
    "solver": _OneOf(("auto", "dense", "cg")),
    "mode": _OneOf(MODES),
    "provider": _OneOf(tuple(PROVIDERS)),
    "reveal": _OneOf(REVEALS),
    "precision_bits": _Whole(8, 28),
    "threshold": _Real(),
    "timeout": _Real(0.0, 7 * 86400.0, low_open=True),
    "verify": _OneOf((True, False)),
}


# How each parameter is named in a message (and its command-line option).
LABELS = {
    "backend": "backend (--backend)",
    "lr": "the fine-tuning learning rate (--lr)",
    "steps": "the fine-tuning steps (--steps)",
    "batch_size": "the fine-tuning batch size (--batch-size)",
    "batch_seed": "the mini-batch seed",
    "newton_steps": "the newton steps (--newton-steps)",
    "preconditioner": "preconditioner (--preconditioner)",
    "solver": "Hessian solver",
    "mode": "MPC mode (--mode)",
    "provider": "provider (--provider)",
    "reveal": "reveal mode (--reveal)",
    "precision_bits": "the precision bits (--precision-bits)",
    "threshold": "the threshold (--threshold)",
    "timeout": "the timeout (--timeout)",
    "verify": "verify",
}


def check_params(params: Mapping[str, Any]) -> None:
    """Validate each named parameter against CONSTRAINTS; one sentence on the first problem."""
    for name, value in params.items():
        CONSTRAINTS[name].check(LABELS[name], value)


def parse_appraiser_names(spec: str | Sequence[str]) -> tuple[str, ...]:
    """'influence,finetune' -> ('influence', 'finetune'), validated and without repeats."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    if not names:
        raise ExplorerError(f"name at least one appraiser: {', '.join(APPRAISER_NAMES)}.")
    for n in names:
        _OneOf(APPRAISER_NAMES).check("appraiser", n)
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class MPCOptions:
    """How a private appraisal runs: processes, fixed point, triple provider, what is revealed
    (with the model owner's threshold in bit mode) and the whole session's deadline (s)."""

    mode: str = "parties"
    precision_bits: int = DEFAULT_PRECISION_BITS
    provider: str = "TTP"
    reveal: str = "value"
    threshold: float = 0.0
    timeout: float = 600.0
    verify: bool = True  # every value twice, from independent sharings (README)
    budget: Budget = field(default_factory=Budget)  # the query ledger's limits (real parties)

    def __post_init__(self) -> None:
        check_params({k: v for k, v in asdict(self).items() if k != "budget"})
        if not isinstance(self.budget, Budget):
            raise ExplorerError("budget must be an explorer.ledger.Budget.")
        if self.mode == "simulated" and self.provider == "TTP":
            raise ExplorerError("simulated mode runs one process and has no dealer; use "
                                "provider TFP or mode parties.")


@dataclass(frozen=True)
class AppraiserConfig:
    """Everything needed to build appraisers: names, backend, hyper-parameters, MPC options.

    ``build(name)`` makes one appraiser, ``build_all()`` every named one. Fine-tuning takes
    ``lr``, ``steps``, ``batch_size`` (None = full batch) and ``batch_seed``; ``newton`` takes
    ``newton_steps`` and ``preconditioner``; the MPC fields matter only with backend crypten.
    """

    names: tuple[str, ...] = ("influence", "gradient-norm", "finetune")
    backend: str = "plaintext"
    lr: float = 0.1
    steps: int = 16
    batch_size: int | None = None
    batch_seed: int = 0
    newton_steps: int = DEFAULT_NEWTON_STEPS
    preconditioner: str = "auto"
    mode: str = "parties"
    precision_bits: int = DEFAULT_PRECISION_BITS
    provider: str = "TTP"
    reveal: str = "value"
    threshold: float = 0.0
    timeout: float = 600.0
    verify: bool = True
    budget: Budget = field(default_factory=Budget)
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. influence's solver

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", parse_appraiser_names(self.names))
        check_params({f.name: getattr(self, f.name) for f in fields(self)
                      if f.name in CONSTRAINTS})
        if self.backend == "crypten":
            self.mpc_options()  # cross-field rules
            if self.batch_size is not None and "finetune" in self.names:
                raise ExplorerError("private fine-tuning takes full-batch steps; drop the "
                                    "batch size or use the plaintext backend.")

    def mpc_options(self):
        return MPCOptions(self.mode, self.precision_bits, self.provider, self.reveal,
                          self.threshold, self.timeout, self.verify, self.budget)

    def hyper_parameters(self, name: str) -> dict:
        """The constructor arguments of appraiser ``name`` (besides backend and MPC)."""
        own = {"finetune": {"lr": self.lr, "steps": self.steps, "batch_size": self.batch_size,
                            "batch_seed": self.batch_seed},
               "newton": {"steps": self.newton_steps, "preconditioner": self.preconditioner}}
        return {**own.get(name, {}), **self.extra.get(name, {})}

    def build(self, name: str):
        from explorer.appraisers import APPRAISERS

        (name,) = parse_appraiser_names([name])
        mpc = self.mpc_options() if self.backend == "crypten" else None
        return APPRAISERS[name](**self.hyper_parameters(name), backend=self.backend, mpc=mpc)

    def build_all(self) -> list:
        return [self.build(n) for n in self.names]

    def warm_processes(self):
        """A context in which private sessions between real parties take processes that have
        already imported torch and CrypTen (explorer.mpc.launcher.warm_parties); a no-op for
        the other backends and modes."""
        if self.backend != "crypten" or self.mode != "parties":
            return contextlib.nullcontext()
        from explorer.mpc.launcher import warm_parties

        return warm_parties(3 if self.provider == "TTP" else 2)

    def with_(self, **changes) -> AppraiserConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
