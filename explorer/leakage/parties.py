"""The honest counterparts the attackers meet: the model owner's appraisal as a data owner
meets it (``AppraisalService``, ``build_service``), and the data owner as a model owner meets
it (``DataOwnerParty``). Each enforces the public policy on what it can see."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explorer.appraisers.base import Appraiser
from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.reveal import compute_defended
from explorer.config import AppraiserConfig
from explorer.constraints import DEFAULTS, REVEALS, default_provider
from explorer.errors import ExplorerError
from explorer.leakage.defences import Defence, Refused
from explorer.mpc.protocol import ModelOwnerInput, SessionSpec, definition
from explorer.seed import SeedModel


def _has_repeated_rows(X) -> bool:
    X = np.asarray(X, dtype=np.float64)
    return len(np.unique(X, axis=0)) < len(X)


# -- the model owner's side, as the data owner meets it ------------------------------------------


class AppraisalService:
    """The model owner's appraisal as a data owner meets it: submit candidates (standardised
    X, labels y), receive one revealed value or bit each, or a Refused under the public policy.

    ``appraiser`` is a fitted influence appraiser and ``runner`` runs it (plaintext or private,
    both built by AppraiserConfig, with the defence's reveal defences); a private runner in bit
    mode reveals bits itself, in plaintext the bit ``value > threshold`` is taken here as the
    protocol would.
    """

    def __init__(self, appraiser: Appraiser, runner, reveal: str = "value",
                 threshold: float = 0.0, defence: Defence | None = None):
        if reveal not in REVEALS:
            raise ExplorerError(f"unknown reveal {reveal!r}; choose value or bit.")
        self.appraiser, self.runner = appraiser, runner
        self.reveal = reveal
        self.threshold = float(threshold)
        self.defence = defence or Defence()
        self.sessions = 0
        mpc = getattr(runner, "options", None)  # a private runner's MPCOptions
        self._bits_inside = mpc is not None and mpc.bits
        if self._bits_inside and (reveal != "bit" or mpc.threshold != self.threshold):
            raise ExplorerError("a private appraiser that reveals bits serves bit mode at its "
                                "own threshold.")
        if runner.defences != self.defence.defences:
            raise ExplorerError("the appraiser's reveal defences are not the service's.")

    def appraise(self, candidates: Sequence[tuple]) -> np.ndarray:
        sizes = [len(y) for _, y in candidates]
        policy = self.defence.policy
        if policy is not None:
            policy.check_session(sizes, self.sessions)
            # stand-in for the MPC equality check (one revealed bit per candidate)
            if policy.distinct_rows and any(_has_repeated_rows(X) for X, _ in candidates):
                raise Refused("the policy forbids repeated rows within a candidate.")
        values = self.runner.run(self.appraiser, list(candidates)).values.astype(np.float64)
        self.sessions += 1
        if self._bits_inside:
            return values
        if self.reveal == "bit":
            return (values > self.threshold).astype(np.float64)
        return values


def build_service(seed: SeedModel, reveal: str, defence: Defence, backend: str = "plaintext",
                  mode: str = "simulated", threshold: float = 0.0,
                  precision_bits: int = DEFAULTS["precision_bits"],
                  timeout: float = DEFAULTS["timeout"]) -> AppraisalService:
    """The model owner's appraisal service for this defence, on a fitted influence appraiser
    that applies the defence's reveal defences (in plaintext or inside MPC)."""
    if reveal == "bit" and defence.defences.grid > 0:
        raise ExplorerError("the rounding defence rounds revealed values; bit mode reveals "
                            "bits.")
    options = {}
    if backend == "crypten":
        options = {"mode": mode, "provider": default_provider(mode),
                   "precision_bits": precision_bits, "timeout": timeout,
                   "reveal": reveal, "threshold": threshold}
    config = AppraiserConfig.from_options(names=("influence",), backend=backend,
                                          defences=defence.defences, **options)
    return AppraisalService(config.build("influence").fit(seed), config.runner(), reveal,
                            threshold, defence)


# -- the data owner's side, as the model owner meets it ------------------------------------------


class DataOwnerParty:
    """An honest data owner: it enters its candidate, as it is, into each session the model
    owner opens (until its ledger's budget, the policy's ``max_sessions``, is spent) and sees
    the revealed values. ``backend`` plaintext runs the session's definition with its reveal
    defences in the clear (``compute_defended``); crypten runs a real session
    (``explorer.mpc.session.run_session``). It joins only sessions with the agreed defences."""

    def __init__(self, seed_check: SeedModel, X, y, backend: str = "plaintext",
                 mode: str = "simulated", defence: Defence | None = None,
                 timeout: float = DEFAULTS["timeout"]):
        self._candidate = seed_check.check_candidate(X, y)  # validated like any candidate
        self.backend = backend
        self.mode = mode
        self.provider = default_provider(mode)
        self.defence = defence or Defence()
        self.timeout = timeout
        self.sessions = 0

    @property
    def sizes(self) -> tuple[int, ...]:
        """Public: the candidate's number of rows."""
        return (len(self._candidate[1]),)

    def session(self, spec: SessionSpec, mo: ModelOwnerInput) -> np.ndarray:
        """One session with the model owner's payload ``mo``; the revealed values (or bits)."""
        policy = self.defence.policy
        if policy is not None and self.sessions >= policy.max_sessions:
            raise Refused(f"the data owner's ledger allows {policy.max_sessions} sessions for "
                          f"this candidate and they are spent.")
        if spec.public.sizes != self.sizes:
            raise Refused("the session's sizes are not this candidate's.")
        if spec.defences != self.defence.defences:
            raise Refused("the session's reveal defences are not the agreed ones.")
        self.sessions += 1
        batch = candidate_batch([self._candidate], spec.public.n_outputs)
        if self.backend == "plaintext":
            values = compute_defended(definition(spec.public), mo.inputs, batch.A, batch.Y,
                                      spec.public, spec.defences).numpy()
            if spec.reveal == "bit":
                values = (values > mo.threshold).astype(np.float64)
        else:
            from explorer.mpc.session import run_session

            values = run_session(spec, mo, batch, self.mode, self.provider,
                                 self.timeout).values[0]  # the first of the verified copies
        return np.asarray(values, dtype=np.float64)
