"""One configuration builds appraisers and the runner that runs them, for the command line, the
dashboard, reproduce, the experiments and the benchmarks.

``AppraiserConfig`` nests the private options (explorer.mpc.options.MPCOptions) and the public
reveal defences (explorer.appraisers.reveal.Defences); its defaults are the one table
explorer.constraints.DEFAULTS, and every parameter is checked against the one table of
constraints there, once, when the configuration is made. ``from_options`` takes the same
settings as one flat set of names (the command line's options, the dashboard's controls).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from explorer.appraisers import FAMILIES, Appraisal, Appraiser, PlaintextRunner, definition
from explorer.appraisers.reveal import Defences
from explorer.constraints import (
    ALL_APPRAISER_NAMES,
    CONSTRAINTS,
    DEFAULTS,
    _OneOf,
    check_params,
    parse_appraiser_names,
)
from explorer.errors import ExplorerError
from explorer.mpc.options import MPCOptions
from explorer.progress import Progress
from explorer.seed import LastLayerSeed, NetworkSeed, SeedModel


def reveals_bits(backend: str, reveal: str) -> bool:
    """Whether appraising on ``backend`` with ``reveal`` reveals only the bit value > threshold
    per candidate (bit mode): in plaintext the value itself is computed in the clear."""
    return backend == "crypten" and reveal == "bit"


def _check_extra(extra: Any) -> None:
    """``extra`` maps an appraiser's name to keyword arguments its constructor takes."""
    if not isinstance(extra, Mapping):
        raise ExplorerError(f"extra must map appraiser names to their options, e.g. "
                            f"{{'influence': {{'solver': 'cg'}}}}, got {extra!r}.")
    for name, options in extra.items():
        _OneOf(ALL_APPRAISER_NAMES).check("appraiser", name)
        taken = {p for family in FAMILIES.values() if name in family
                 for p in inspect.signature(family[name]).parameters}
        if not isinstance(options, Mapping) or set(options) - taken:
            raise ExplorerError(f"extra options of {name} must be a mapping with keys among "
                                f"{', '.join(sorted(taken))}, got {options!r}.")


@dataclass(frozen=True)
class AppraiserConfig:
    """Everything needed to build appraisers and run them: names, backend, hyper-parameters
    (fine-tuning's ``lr``, ``steps``, ``batch_size`` (None = full batch) and ``random_state``;
    newton's ``newton_steps`` and ``preconditioner``; a network's ``damping`` of influence's
    solve and newton's preconditioner (explorer.appraisers.network, .network_newton); the
    blog's ``surrogate`` kind, its ``surrogate_size`` and ``surrogate_score``, its distillation
    draws seeded by ``random_state``; ``extra`` constructor arguments by appraiser, e.g.
    influence's solver), the private options ``mpc`` (used with backend crypten) and the public
    reveal ``defences`` (both backends).

    ``build(name)`` makes one appraiser's definition;
    ``runner()`` the runner of the backend; ``appraise(name, seed, candidates)`` all three.
    """

    names: tuple[str, ...] = DEFAULTS["names"]
    backend: str = DEFAULTS["backend"]
    lr: float = DEFAULTS["lr"]
    steps: int = DEFAULTS["steps"]
    batch_size: int | None = DEFAULTS["batch_size"]
    random_state: int = DEFAULTS["random_state"]
    newton_steps: int = DEFAULTS["newton_steps"]
    preconditioner: str = DEFAULTS["preconditioner"]
    damping: float = DEFAULTS["damping"]
    surrogate: str = DEFAULTS["surrogate"]
    surrogate_size: int = DEFAULTS["surrogate_size"]
    surrogate_score: str = DEFAULTS["surrogate_score"]
    mpc: MPCOptions = field(default_factory=MPCOptions)
    defences: Defences = field(default_factory=Defences)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", parse_appraiser_names(self.names))
        _check_extra(self.extra)
        check_params({f.name: getattr(self, f.name) for f in fields(self)
                      if f.name in CONSTRAINTS})
        if not isinstance(self.mpc, MPCOptions):
            raise ExplorerError("mpc must be an explorer.mpc.options.MPCOptions.")
        if not isinstance(self.defences, Defences):
            raise ExplorerError("defences must be an explorer.appraisers.reveal.Defences.")
        if self.defences.weight_bound is not None and set(self.names) != {"influence"}:
            raise ExplorerError("a weight bound (and the noise calibrated with it) is defined "
                                "for the influence appraiser only; appraise with influence "
                                "alone.")
        built = [self.build(name) for name in self.names]  # each checks its own settings
        if self.private:
            self.mpc.check_defences(self.defences)
            for appraiser in built:
                appraiser.check_private()

    # -- one flat set of names, as the command line and the dashboard hold them ------------

    @classmethod
    def from_options(cls, **options) -> AppraiserConfig:
        """The configuration of flat settings: this class's own fields, MPCOptions' (mode,
        provider, reveal, threshold, precision_bits, timeout, verify, sellers, budget) and
        Defences'
        (grid, noise, weight_bound, row_bound); what is not given takes its default."""
        return cls().with_(**options)

    def with_(self, **changes) -> AppraiserConfig:
        """A copy with some settings changed, named flat as in ``from_options`` (validated
        again)."""
        own = {f.name for f in fields(self)}
        mpc = {f.name for f in fields(MPCOptions)}
        defences = {f.name for f in fields(Defences)}
        unknown = sorted(set(changes) - own - mpc - defences)
        if unknown:
            raise ExplorerError(f"unknown AppraiserConfig option {unknown[0]!r}; the options "
                                f"are {', '.join(sorted(own | mpc | defences))}.")
        nested = {}
        if mpc & set(changes):
            nested["mpc"] = replace(changes.get("mpc", self.mpc),
                                    **{k: changes[k] for k in mpc & set(changes)})
        if defences & set(changes):
            nested["defences"] = replace(changes.get("defences", self.defences),
                                         **{k: changes[k] for k in defences & set(changes)})
        return replace(self, **{k: v for k, v in changes.items() if k in own}, **nested)

    # -- what it builds ------------------------------------------------------------------

    @property
    def private(self) -> bool:
        """Whether the appraisers run under MPC (backend crypten)."""
        return self.backend == "crypten"

    @property
    def real_parties(self) -> bool:
        """Whether the appraisers run between real party processes (backend crypten, mode
        parties)."""
        return self.private and self.mpc.mode == "parties"

    @property
    def reveals_bits(self) -> bool:
        """Whether a run reveals only the bit value > threshold per candidate (bit mode)."""
        return reveals_bits(self.backend, self.mpc.reveal)

    def hyper_parameters(self, name: str, family: str = "logistic") -> dict:
        """The constructor arguments of appraiser ``name`` for seed models of ``family``."""
        own = {"finetune": {"lr": self.lr, "steps": self.steps, "batch_size": self.batch_size,
                            "random_state": self.random_state},
               "newton": {"steps": self.newton_steps, "preconditioner": self.preconditioner},
               "surrogate": {"kind": self.surrogate, "size": self.surrogate_size,
                             "score": self.surrogate_score,
                             "random_state": self.random_state}}
        if family == "mlp":  # delta = damping x lam: influence's solve, newton's preconditioner
            own["influence"] = {"damping": self.damping}
            own["newton"]["damping"] = self.damping
        cls = FAMILIES[family].get(name)
        taken = set(inspect.signature(cls).parameters) if cls is not None else set()
        extra = {k: v for k, v in self.extra.get(name, {}).items() if k in taken}
        return {**own.get(name, {}), **extra}

    def build(self, name: str, family: str = "logistic") -> Appraiser:
        """The (unfitted) definition of appraiser ``name`` for seed models of ``family``."""
        (name,) = parse_appraiser_names([name])
        return definition(family, name, **self.hyper_parameters(name, family))

    def runner(self):
        """The runner of this configuration's backend: a PlaintextRunner, or a PrivateRunner
        (explorer.mpc.runner) with the MPC options; both apply the same defences."""
        if not self.private:
            return PlaintextRunner(self.defences)
        from explorer.mpc.runner import PrivateRunner  # only private runs load the MPC layer

        return PrivateRunner(self.mpc, self.defences)

    def appraise(self, name: str, seed: SeedModel | NetworkSeed | LastLayerSeed,
                 candidates: Sequence[tuple], progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> Appraisal:
        """Build appraiser ``name``, fit it to the model owner's ``seed`` model and appraise
        [(X, y), ...] with this configuration's runner."""
        return self.runner().run(self.build(name, seed.family).fit(seed), candidates, progress,
                                 cancel)

    def warm_processes(self):
        """A context in which private sessions between real parties take processes that have
        already imported torch and CrypTen (explorer.mpc.launcher.warm_parties); a no-op for
        the other backends and modes."""
        if not self.real_parties:
            return contextlib.nullcontext()
        from explorer.mpc.session import warm_sessions

        return warm_sessions(self.mpc.provider, self.mpc.sellers)

    def keep_processes(self) -> None:
        """For sessions between real parties: keep party processes for the rest of this
        process's life, each serving one session after another (explorer.mpc.session.
        keep_sessions). Only a process that holds both parties' data anyway (a dashboard
        kernel) may; a no-op for the other backends and modes."""
        if not self.real_parties:
            return
        from explorer.mpc.session import keep_sessions

        keep_sessions()
