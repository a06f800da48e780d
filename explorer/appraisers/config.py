"""One configuration object builds appraisers for the CLI, the dashboard, reproduce, experiments
and benchmarks, and one table of constraints (explorer.constraints, re-exported here) validates
every parameter, once, at the boundary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from explorer.appraisers.reveal import Defences
from explorer.constraints import (  # noqa: F401 - the table and its options, re-exported here
    BACKENDS,
    CONSTRAINTS,
    LABELS,
    MODES,
    PRECONDITIONERS,
    PROVIDERS,
    REVEALS,
    _OneOf,
    check_params,
)
from explorer.errors import ExplorerError
from explorer.ledger import Budget

APPRAISER_NAMES = ("influence", "gradient-norm", "finetune", "newton")
# Fixed-point fractional bits; see the README on why not the paper's 24.
DEFAULT_PRECISION_BITS = 16
# Safeguarded Newton steps of the `newton` appraiser (README: how K was chosen).
DEFAULT_NEWTON_STEPS = 4


def parse_appraiser_names(spec: str | Sequence[str]) -> tuple[str, ...]:
    """'influence,finetune' -> ('influence', 'finetune'), validated and without repeats."""
    if isinstance(spec, str):
        spec = spec.split(",")
    if not isinstance(spec, Sequence) or not all(isinstance(n, str) for n in spec):
        raise ExplorerError(f"name the appraisers as a comma-separated string or a list of "
                            f"names ({', '.join(APPRAISER_NAMES)}), got {spec!r}.")
    names = [n.strip() for n in spec]
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
    defences: Defences = field(default_factory=Defences)  # rounding, noise, their bounds

    def __post_init__(self) -> None:
        check_params({k: v for k, v in asdict(self).items() if k not in ("budget", "defences")})
        if not isinstance(self.budget, Budget):
            raise ExplorerError("budget must be an explorer.ledger.Budget.")
        if not isinstance(self.defences, Defences):
            raise ExplorerError("defences must be an explorer.appraisers.reveal.Defences.")
        if self.mode == "simulated" and self.provider == "TTP":
            raise ExplorerError("simulated mode runs one process and has no dealer; use "
                                "provider TFP or mode parties.")
        grid = self.defences.grid
        if grid > 0 and self.reveal == "bit":
            raise ExplorerError("the grid (--grid) rounds revealed values; bit mode reveals "
                                "bits, so drop one of them.")
        if 0 < grid < 2.0 ** -self.precision_bits:
            raise ExplorerError(f"the grid (--grid) {grid:g} is finer than "
                                f"{self.precision_bits}-bit fixed point resolves; use at least "
                                f"{2.0 ** -self.precision_bits:.3g}.")


def _check_extra(extra: Any) -> None:
    """``extra`` maps an appraiser's name to keyword arguments its constructor takes."""
    import inspect

    from explorer.appraisers import APPRAISERS

    if not isinstance(extra, Mapping):
        raise ExplorerError(f"extra must map appraiser names to their options, e.g. "
                            f"{{'influence': {{'solver': 'cg'}}}}, got {extra!r}.")
    for name, options in extra.items():
        _OneOf(APPRAISER_NAMES).check("appraiser", name)
        taken = set(inspect.signature(APPRAISERS[name]).parameters) - {"backend", "mpc"}
        if not isinstance(options, Mapping) or set(options) - taken:
            raise ExplorerError(f"extra options of {name} must be a mapping with keys among "
                                f"{', '.join(sorted(taken))}, got {options!r}.")


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
    grid: float = 0.0
    noise: float = 0.0
    weight_bound: float | None = None
    row_bound: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. influence's solver

    def __new__(cls, *args, **kwargs):
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(kwargs) - set(names))
        if unknown or len(args) > len(names):
            raise ExplorerError(f"unknown AppraiserConfig option "
                                f"{unknown[0] if unknown else 'beyond ' + names[-1]!r}; the "
                                f"options are {', '.join(names)}.")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", parse_appraiser_names(self.names))
        _check_extra(self.extra)
        check_params({f.name: getattr(self, f.name) for f in fields(self)
                      if f.name in CONSTRAINTS})
        defences = self.defences()  # cross-field rules
        if defences.weight_bound is not None and set(self.names) != {"influence"}:
            raise ExplorerError("a weight bound (and the noise calibrated with it) is defined "
                                "for the influence appraiser only; appraise with influence "
                                "alone.")
        if self.backend == "crypten":
            self.mpc_options()  # cross-field rules
            if self.batch_size is not None and "finetune" in self.names:
                raise ExplorerError("private fine-tuning takes full-batch steps; drop the "
                                    "batch size or use the plaintext backend.")

    def defences(self) -> Defences:
        """The public reveal defences (explorer.appraisers.reveal), for either backend."""
        return Defences(self.grid, self.noise, self.weight_bound, self.row_bound)

    def mpc_options(self):
        return MPCOptions(self.mode, self.precision_bits, self.provider, self.reveal,
                          self.threshold, self.timeout, self.verify, self.budget,
                          defences=self.defences())

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
        appraiser = APPRAISERS[name](**self.hyper_parameters(name), backend=self.backend,
                                     mpc=mpc)
        # plaintext applies the same defences as the protocol (explorer.appraisers.reveal)
        return appraiser if mpc is not None else appraiser.use_defences(self.defences())

    def build_all(self) -> list:
        return [self.build(n) for n in self.names]

    def warm_processes(self):
        """A context in which private sessions between real parties take processes that have
        already imported torch and CrypTen (explorer.mpc.launcher.warm_parties); a no-op for
        the other backends and modes."""
        if self.backend != "crypten" or self.mode != "parties":
            return contextlib.nullcontext()
        from explorer.mpc.session import warm_sessions

        return warm_sessions(self.provider)

    def with_(self, **changes) -> AppraiserConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
