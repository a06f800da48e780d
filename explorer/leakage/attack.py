"""Measuring an attack: ``run_attack`` runs one attack under one defence and scores the
attacker's estimates against the truth, as a curve of relative error against the number of
values or bits revealed (``queries_to_reach`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.config import AppraiserConfig
from explorer.appraisers.logistic import gradient_sums
from explorer.appraisers.reveal import clip_rows
from explorer.constraints import REVEALS
from explorer.errors import ExplorerError
from explorer.leakage.data_owner import DEFAULT_COPIES, DEFAULT_DEPTH, data_owner_attack
from explorer.leakage.defences import (
    DEFAULT_GRID,
    DEFAULT_NOISE,
    DEFAULT_ROW_BOUND,
    Policy,
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
class AttackResult:
    """The curve (tidy: ``COLUMNS`` plus the backend), and
    the final error of the main target (theta for the data owner, G for the model owner)."""

    frame: pd.DataFrame
    error: float
    queries: int
    unit: str  # "values" or "bits"


def _backend_label(backend: str, mode: str) -> str:
    return backend if backend == "plaintext" else f"crypten-{mode}"


def run_attack(seed: SeedModel, attacker: str, reveal: str = "value", defence: str = "none",
               backend: str = "plaintext", mode: str = "simulated",
               queries: int | None = None, candidate: tuple | None = None,
               random_state: int = 0, precision_bits: int = 16, timeout: float = 600.0,
               copies: int = DEFAULT_COPIES, depth: int = DEFAULT_DEPTH,
               grid: float = DEFAULT_GRID, noise: float = DEFAULT_NOISE,
               policy: Policy | None = None, weight_bound: float | None = None,
               row_bound: float = DEFAULT_ROW_BOUND) -> AttackResult:
    """Run one attack under one defence and score it against the truth.

    ``candidate`` (X, y) is the data owner's candidate for the model-owner attack. Defence
    ``bit-only`` turns a value-mode run into bit mode. Rounding and noise use the public
    ``weight_bound`` (default: ``public_weight_bound`` of the honest model owner) and noise the
    data owner's ``row_bound``.
    """
    if attacker not in ATTACKERS:
        raise ExplorerError(f"unknown attacker {attacker!r}; choose data-owner or model-owner.")
    if reveal not in REVEALS:
        raise ExplorerError(f"unknown reveal {reveal!r}; choose value or bit.")
    if queries is not None and (isinstance(queries, bool) or not isinstance(queries, int)
                                or queries < 1):
        raise ExplorerError(f"the queries must be a whole number of at least 1, got "
                            f"{queries!r}.")
    rng = np.random.default_rng(random_state)
    honest = AppraiserConfig(names=("influence",)).build("influence").fit(seed)
    bound = weight_bound if weight_bound is not None else public_weight_bound(honest)
    chosen = make_defence(defence, bound, policy, grid, noise, row_bound)
    if chosen.bits_only:
        reveal = "bit"
    if attacker == "data-owner":
        service = build_service(seed, reveal, chosen, backend, mode,
                                precision_bits=precision_bits, timeout=timeout)
        trace = data_owner_attack(service, seed.n_features, seed.theta.shape[1], queries,
                                  copies=copies, depth=depth, rng=rng)
        truth = {"theta": centre_classes(seed.theta.numpy()), "v": honest.weights_.numpy()}
        main = "theta"
    else:
        if candidate is None:
            raise ExplorerError("the model-owner attack needs the data owner's candidate.")
        X, y = candidate
        options = {}
        if backend == "crypten":
            options = {"mode": mode, "provider": "TFP" if mode == "simulated" else "TTP",
                       "precision_bits": precision_bits, "timeout": timeout}
        own = AppraiserConfig(names=("influence",), backend=backend, **options) \
            .build("influence").fit(seed)
        party = DataOwnerParty(seed, X, y, backend, mode, chosen, timeout)
        trace = model_owner_attack(own, party, reveal, queries, chosen)
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
            rows.append({"attacker": attacker, "reveal": reveal, "defence": defence,
                         "queries": q, "target": target,
                         "relative_error": relative_error(value, truth[target]),
                         "backend": _backend_label(backend, mode)})
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
