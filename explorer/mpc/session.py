"""Run one private appraisal session for a batch of candidates, in real processes or simulated."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from explorer.appraisers.base import Appraiser, Progress
from explorer.appraisers.batch import CandidateBatch, candidate_batch
from explorer.appraisers.config import MPCOptions
from explorer.errors import Cancelled, ExplorerError
from explorer.ledger import Ledger, fingerprint
from explorer.mpc.crypten_compat import MPCConfig
from explorer.mpc.launcher import (
    LaunchCancelled,
    LaunchError,
    LaunchTimeout,
    run_parties,
    run_simulated,
)
from explorer.mpc.protocol import (
    DATA_OWNER,
    MODEL_OWNER,
    ModelOwnerInput,
    PartyReport,
    SessionSpec,
    appraisal_party,
)

# Newton iterations of the inverse square root in the gradient norm (CrypTen's default is 3).
SQRT_ITERATIONS = 12


@dataclass(frozen=True)
class SessionResult:
    """Revealed values (copies, B) and the session's cost: encrypted seconds (slowest party),
    bytes sent by all parties together, communication rounds (most of any party), and whole
    wall time including process start-up."""

    values: np.ndarray
    private_seconds: float
    bytes: int
    rounds: int
    wall_seconds: float
    reports: tuple[PartyReport, ...]


def mpc_config(precision_bits: int, provider: str) -> MPCConfig:
    return MPCConfig(precision_bits=precision_bits, provider=provider, verbose=True,
                     sqrt_nr_iters=SQRT_ITERATIONS)


def run_session(spec: SessionSpec, model_owner: ModelOwnerInput, data_owner: CandidateBatch,
                mode: str = "parties", provider: str = "TTP", timeout: float = 600.0,
                cancel: threading.Event | None = None,
                on_wait: Callable[[float], None] | None = None) -> SessionResult:
    """Appraise the data owner's candidates against the model owner's inputs under MPC.

    ``cancel`` stops a running session (raising Cancelled); ``on_wait`` receives the elapsed
    seconds several times a second while the parties compute.
    """
    MPCOptions(mode=mode, provider=provider, reveal=spec.reveal,
               precision_bits=spec.precision_bits, timeout=timeout,
               defences=spec.defences)  # validates
    config = mpc_config(spec.precision_bits, provider)
    if cancel is not None and cancel.is_set():
        raise Cancelled("the appraisal was cancelled.")
    try:
        if mode == "simulated":
            start = time.perf_counter()
            report = run_simulated(appraisal_party, {"spec": spec, "input": model_owner,
                                                     "data": data_owner}, config=config)
            reports = (report,)
            wall = time.perf_counter() - start
        else:
            launched = run_parties(appraisal_party,
                                   {MODEL_OWNER: {"spec": spec, "input": model_owner},
                                    DATA_OWNER: {"spec": spec, "input": data_owner}},
                                   config=config, timeout=timeout, cancel=cancel,
                                   on_wait=on_wait)
            reports, wall = tuple(launched.results), launched.wall_s
    except LaunchCancelled as exc:
        raise Cancelled("the private appraisal was cancelled; its processes were stopped.") \
            from exc
    except LaunchTimeout as exc:
        raise ExplorerError(f"the private appraisal did not finish within {timeout:g} s and was "
                            f"stopped; raise the timeout or appraise fewer candidates.") from exc
    except LaunchError as exc:
        raise ExplorerError(f"the private appraisal failed: {exc}") from exc
    values = reports[0].values.numpy()  # (copies, B)
    return SessionResult(values=values, private_seconds=max(r.seconds for r in reports),
                         bytes=sum(r.bytes for r in reports),
                         rounds=max(r.rounds for r in reports), wall_seconds=wall,
                         reports=reports)


def session_inputs(appraiser: Appraiser, candidates: Sequence[tuple],
                   return_shares: bool = False
                   ) -> tuple[SessionSpec, ModelOwnerInput, CandidateBatch]:
    """What a fitted private appraiser's session consists of, for candidates [(X, y), ...]:
    the public spec, the model owner's payload and the data owner's candidate batch."""
    checked = [appraiser.seed_.check_candidate(X, y) for X, y in candidates]
    options: MPCOptions = appraiser.mpc
    public = appraiser.public([len(y) for _, y in checked])
    mo = ModelOwnerInput(appraiser.model_owner_inputs(public), threshold=options.threshold)
    spec = SessionSpec(public, reveal=options.reveal, precision_bits=options.precision_bits,
                       verify=options.verify, return_shares=return_shares,
                       defences=options.defences)
    return spec, mo, candidate_batch(checked, public.n_outputs)


def _ledger(appraiser: Appraiser) -> tuple[Ledger | None, str]:
    """The query ledger of a run between real parties, and the counterparty's fingerprint;
    (None, "") for simulated mode, where one process plays both parties (teaching runs)."""
    if appraiser.mpc.mode != "parties":
        return None, ""
    public = appraiser.public([1])
    # the other side of a local run is known only by the model it appraises against
    return Ledger(), fingerprint({"local": True, "features": public.n_features,
                                  "outputs": public.n_outputs, "seed": public.n_seed,
                                  "test": public.n_test, "lam": public.lam})


# A session is repeated for the candidates whose two copies disagree, at most this often.
RETRIES = 2


def appraise_privately(appraiser: Appraiser, candidates: Sequence[tuple], progress: Progress | None,
                       cancel: threading.Event | None) -> list[dict]:
    """One MPC session for all candidates [(X, y), ...] with the appraiser's own definition;
    per candidate its value and an even share of the sessions' cost (private seconds, bytes
    and rounds). ``progress`` hears from the session several times a second; ``cancel`` stops
    it.

    Verified: every value is computed twice from independent sharings. A candidate whose two
    copies disagree beyond the appraiser's tolerance, or whose value breaks a public invariant,
    is appraised again in a fresh session (fresh randomness), up to RETRIES times; then the run
    fails naming it. No unverified value is returned.
    """
    options: MPCOptions = appraiser.mpc
    n = len(candidates)
    values = np.full(n, np.nan)
    ledger, counterparty = _ledger(appraiser)
    todo = list(range(n))
    cost = {"private": 0.0, "bytes": 0, "rounds": 0, "wall": 0.0, "prep": 0.0, "sessions": 0}
    for _ in range(RETRIES + 1):
        start = time.perf_counter()
        spec, mo, batch = session_inputs(appraiser, [candidates[i] for i in todo])
        cost["prep"] += time.perf_counter() - start
        if ledger is not None:  # both roles are played here: each counts what it reveals
            revealed = {"bits" if options.reveal == "bit" else "values":
                        len(todo) * spec.copies}
            for role_ in ("model owner", "data owner"):
                appraiser.ledger_counts_ = ledger.spend(role_, counterparty, options.budget,
                                                        **revealed)

        def heartbeat(elapsed: float) -> None:
            if progress:
                progress(f"{appraiser.name}: encrypted session, {elapsed:.1f} s", 0, n)

        result = run_session(spec, mo, batch, options.mode, options.provider, options.timeout,
                             cancel=cancel, on_wait=heartbeat)
        for key, field_ in (("private", "private_seconds"), ("bytes", "bytes"),
                            ("rounds", "rounds"), ("wall", "wall_seconds")):
            cost[key] += getattr(result, field_)
        cost["sessions"] += 1
        appraiser.last_session_ = result
        good = appraiser.verified(result.values, options.reveal == "bit")
        for j, i in enumerate(todo):
            if good[j]:
                values[i] = result.values[0, j]
        todo = [i for j, i in enumerate(todo) if not good[j]]
        if not todo:
            break
    if todo and options.reveal == "bit":
        # copies that keep disagreeing on a bit sit within the encrypted noise of the
        # threshold, where either bit is right: take the first copy's
        for j, i in enumerate(todo):
            values[i] = result.values[0, j]
        todo = []
    if todo:
        first = todo[0]
        raise ExplorerError(
            f"the private {appraiser.name} value of candidate {first} could not be verified "
            f"({len(todo)} of {n} candidates failed {RETRIES + 1} sessions: their two "
            f"independently shared copies disagreed, or broke a bound every value obeys); use "
            f"fewer precision bits (16 is the default) or standardised features.")
    if progress:
        progress(appraiser.name, n, n)
    appraiser.session_costs_ = cost
    return [{"value": float(v), "seconds": cost["wall"] / n,
             "plaintext_seconds": (appraiser.setup_seconds_ + cost["prep"]) / n,
             "private_seconds": cost["private"] / n, "bytes": cost["bytes"] / n,
             "rounds": cost["rounds"] / n} for v in values]
