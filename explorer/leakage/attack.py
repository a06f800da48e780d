"""Measuring an attack: ``run_attack`` runs one attack under one defence and scores the
attacker's estimates against the truth, as a curve of relative error against the number of
values or bits revealed (``queries_to_reach`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.logistic import gradient_sums
from explorer.appraisers.reveal import clip_rows
from explorer.config import AppraiserConfig
from explorer.constraints import DEFAULTS, REVEALS
from explorer.errors import ExplorerError
from explorer.leakage.data_owner import DEFAULT_COPIES, DEFAULT_DEPTH, data_owner_attack
from explorer.leakage.defences import (
    DEFAULT_GRID,
    DEFAULT_NOISE,
    DEFAULT_ROW_BOUND,
    make_defence,
    public_weight_bound,
)
from explorer.leakage.model_owner import model_owner_attack
from explorer.leakage.parties import DataOwnerParty, build_service
from explorer.leakage.trace import centre_classes, relative_error
from explorer.seed import SeedModel

ATTACKERS = ("data-owner", "model-owner")
# Targets: theta (theta_hat, classes centred for softmax), v (the influence weights v / n_seed,
# the same relative error as v), G (G(D_a), the candidate's summed gradient at theta_hat).
COLUMNS = ["attacker", "reveal", "defence", "queries", "target", "relative_error"]


@dataclass(frozen=True)
class Attack:
    """One attack's settings: who attacks (``attacker``, one of ``ATTACKERS``), what is revealed
    (``reveal``: value or bit; defence ``bit-only`` turns a value-mode run into bit mode), under
    which ``defence`` (one of ``DEFENCES``), on which ``backend`` and ``mode``, and how many
    values or bits the attacker may ask for (``queries``; None: what the attack needs).

    ``random_state`` seeds the attacker's own draws (the data owner's jitter and extra rows);
    ``precision_bits`` and ``timeout`` (seconds per private session) apply under CrypTen;
    ``copies`` and ``depth`` are the data owner's copies of each crafted row and its bit-mode
    bisection depth. Rounding and noise use the public ``grid`` or each party's ``noise``
    (nats), the public ``weight_bound`` (None: ``public_weight_bound`` of the honest model
    owner), and noise the data owner's ``row_bound`` (standardised units).
    """

    attacker: str
    reveal: str = "value"
    defence: str = "none"
    backend: str = "plaintext"
    mode: str = "simulated"
    queries: int | None = None
    random_state: int = 0
    precision_bits: int = DEFAULTS["precision_bits"]
    timeout: float = DEFAULTS["timeout"]
    copies: int = DEFAULT_COPIES
    depth: int = DEFAULT_DEPTH
    grid: float = DEFAULT_GRID
    noise: float = DEFAULT_NOISE
    weight_bound: float | None = None
    row_bound: float = DEFAULT_ROW_BOUND

    def __post_init__(self) -> None:
        if self.attacker not in ATTACKERS:
            raise ExplorerError(f"unknown attacker {self.attacker!r}; choose data-owner or "
                                f"model-owner.")
        if self.reveal not in REVEALS:
            raise ExplorerError(f"unknown reveal {self.reveal!r}; choose value or bit.")
        queries = self.queries
        if queries is not None and (isinstance(queries, bool) or not isinstance(queries, int)
                                    or queries < 1):
            raise ExplorerError(f"the queries must be a whole number of at least 1, got "
                                f"{queries!r}.")


@dataclass(frozen=True)
class AttackResult:
    """The curve (tidy: ``COLUMNS`` plus the backend), and
    the final error of the main target (theta for the data owner, G for the model owner)."""

    frame: pd.DataFrame
    error: float
    queries: int
    unit: str  # "values" or "bits"


def _backend_label(backend: str, mode: str) -> str:
    return backend if backend == "plaintext" else f"crypten-{mode}"


def check_logistic(family: str) -> None:
    """Refuse, in one sentence, a seed model the attacks are not defined for: they craft
    candidates against a logistic model's theta_hat and influence weights, whose values are
    linear in them."""
    if family != "logistic":
        raise ExplorerError(f"the leakage attacks reconstruct a logistic model's theta_hat and "
                            f"influence weights; they are defined for the logistic seed model, "
                            f"not {family}.")


def run_attack(seed: SeedModel, attack: Attack, candidate: tuple | None = None
               ) -> AttackResult:
    """Run one attack under one defence and score it against the truth.

    ``seed`` is the model owner's fitted seed model (logistic: ``check_logistic``);
    ``candidate`` (X, y) is the data owner's candidate, which the model-owner attack needs.
    """
    check_logistic(seed.family)
    rng = np.random.default_rng(attack.random_state)
    honest = AppraiserConfig(names=("influence",)).build("influence").fit(seed)
    bound = attack.weight_bound
    if bound is None:
        bound = public_weight_bound(honest)
    chosen = make_defence(attack.defence, bound, grid=attack.grid, noise=attack.noise,
                          row_bound=attack.row_bound)
    reveal = "bit" if chosen.bits_only else attack.reveal
    if attack.attacker == "data-owner":
        service = build_service(seed, reveal, chosen, attack.backend, attack.mode,
                                precision_bits=attack.precision_bits, timeout=attack.timeout)
        trace = data_owner_attack(service, seed.n_features, seed.theta.shape[1],
                                  attack.queries, copies=attack.copies, depth=attack.depth,
                                  rng=rng)
        truth = {"theta": centre_classes(seed.theta.numpy()), "v": honest.weights_.numpy()}
        main = "theta"
    else:
        if candidate is None:
            raise ExplorerError("the model-owner attack needs the data owner's candidate.")
        X, y = candidate
        party = DataOwnerParty(seed, X, y, attack.backend, attack.mode, chosen, attack.timeout)
        # the model owner's own influence appraiser supplies theta_hat and the public sizes
        trace = model_owner_attack(honest, party, reveal, attack.queries, chosen,
                                   precision_bits=attack.precision_bits)
        batch = candidate_batch([seed.check_candidate(X, y)], seed.theta.shape[1])
        # what the data owner enters: its rows clipped to the public row bound, if any
        A = clip_rows(batch.A, chosen.defences.row_bound)
        truth = {"G": gradient_sums(A, batch.Y, seed.theta)[0].numpy()}
        main = "G"
    rows = []
    for q, est in trace.points:
        for target, value in est.items():
            if target not in truth:
                continue
            value = centre_classes(value) if target == "theta" else value
            rows.append({"attacker": attack.attacker, "reveal": reveal,
                         "defence": attack.defence, "queries": q, "target": target,
                         "relative_error": relative_error(value, truth[target]),
                         "backend": _backend_label(attack.backend, attack.mode)})
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "backend"])
    last = frame[frame.target == main]
    return AttackResult(frame=frame, error=float(last.relative_error.iloc[-1]),
                        queries=int(last.queries.iloc[-1]),
                        unit="bits" if reveal == "bit" else "values")


def queries_to_reach(frame: pd.DataFrame, target: str, level: float = 0.1) -> int | None:
    """The fewest revealed values or bits after which the error of ``target`` is at most
    ``level`` (None if never)."""
    hit = frame[(frame.target == target) & (frame.relative_error <= level)]
    return int(hit.queries.min()) if len(hit) else None
