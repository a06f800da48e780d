"""Run one private appraisal session for a batch of candidates, in real processes or simulated:
its inputs (``session_inputs``), the session itself (``run_session``) and its result; the
dealer's rehearsals and each party's draws kept for the next session of the same spec.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from explorer.appraisers.base import Appraiser
from explorer.appraisers.batch import CandidateBatch, candidate_batch
from explorer.appraisers.reveal import Defences
from explorer.constraints import DEFAULTS
from explorer.errors import Cancelled, ExplorerError
from explorer.mpc.crypten_compat import MPCConfig
from explorer.mpc.launcher import (
    HEARTBEAT_SECONDS,
    keep_parties,
    kept_parties,
    run_parties,
    warm_parties,
)
from explorer.mpc.options import MPCOptions
from explorer.mpc.protocol import (
    DATA_OWNER,
    MODEL_OWNER,
    ModelOwnerInput,
    PartyReport,
    SessionSpec,
    appraisal_party,
    public_settings,
)
from explorer.mpc.runs import LaunchCancelled, LaunchError, LaunchTimeout
from explorer.mpc.simulated import run_simulated

# what a party's payload needs imported: a warm process imports it before any payload exists
PARTY_MODULES = ("explorer.mpc.protocol", "explorer.mpc.dealer", "explorer.mpc.masked",
                 "explorer.mpc.owned")


def warm_sessions(provider: str, sellers: int = 1):
    """A context in which sessions between real parties (the model owner, ``sellers`` data
    owners and, for TTP, the dealer) take warm processes: torch, CrypTen and the protocol
    already imported (explorer.mpc.launcher.warm_parties); a no-op while this process keeps
    its own party processes (``keep_sessions``), which serve instead."""
    if kept_parties() is not None:
        return contextlib.nullcontext()
    return warm_parties(1 + sellers + (provider == "TTP"), preload=PARTY_MODULES)


def keep_sessions() -> None:
    """From now until this process exits, sessions between real parties reuse the same party
    processes (explorer.mpc.launcher.keep_parties), started now in the background. Only for a
    process that holds both parties' data anyway, a dashboard kernel (DESIGN.md §8)."""
    keep_parties(3, preload=PARTY_MODULES)


# Newton iterations of the inverse square root in the gradient norm (CrypTen's default is 3).
SQRT_ITERATIONS = 12


@dataclass(frozen=True)
class SessionResult:
    """Revealed values (copies, B) and the session's cost: encrypted seconds (slowest party);
    bytes sent on the wire by the model owner, the data owners and the dealer, each byte counted
    once; rounds of the critical path (the most sequential rounds of any party, see
    explorer.mpc.wire); and whole wall time including process start-up (seconds), of which
    ``startup_seconds`` passed until every process was up with its payload (0 in simulated
    mode) and ``offline_seconds`` from the parties' start until their clocks (the deal awaited,
    shares drawn ahead: the slowest party's)."""

    values: np.ndarray
    private_seconds: float
    bytes: int
    rounds: int
    wall_seconds: float
    reports: tuple[PartyReport, ...]
    dealer_bytes: int = 0  # included in bytes
    startup_seconds: float = 0.0  # included in wall_seconds
    offline_seconds: float = 0.0  # included in wall_seconds

    @classmethod
    def of(cls, reports: Sequence[PartyReport], dealer: dict | None,
           wall_seconds: float, startup_seconds: float = 0.0) -> SessionResult:
        """The session's result from every party's report, the dealer's wire count and the
        seconds until its processes were up."""
        dealer_bytes = int(dealer["bytes"]) if dealer else 0
        return cls(values=reports[0].values.numpy(),
                   private_seconds=max(r.seconds for r in reports),
                   bytes=sum(r.bytes for r in reports) + dealer_bytes,
                   rounds=max(r.rounds for r in reports), wall_seconds=wall_seconds,
                   reports=tuple(reports), dealer_bytes=dealer_bytes,
                   startup_seconds=startup_seconds,
                   offline_seconds=max(r.offline_seconds for r in reports))


def _ticking(on_wait: Callable[[float, int, int], None] | None, stop: threading.Event) -> None:
    """Tick like the launcher's heartbeat where it is silent: a simulated session runs in this
    process, and the launcher says nothing while it boots the processes."""
    start = time.perf_counter()
    while on_wait is not None and not stop.wait(HEARTBEAT_SECONDS):
        on_wait(time.perf_counter() - start, 1, 0)


# the dealer's rehearsed requests by the public settings of the session they were made for:
# another session of the same spec lets its dealer replay them (explorer.mpc.dealer.replay),
# and its parties draw their own random shares ahead from each one's record (explorer.mpc.drawn)
_REHEARSED: dict[str, list] = {}
_DRAWN: dict[str, dict[int, list]] = {}
REHEARSALS_KEPT = 16


def _rehearsal_key(spec: SessionSpec) -> str:
    return repr(sorted(public_settings(spec).items()))


def _keep(cache: dict, key: str, value) -> None:
    """``cache[key] = value``, the oldest entry dropped beyond REHEARSALS_KEPT."""
    cache.pop(key, None)
    if len(cache) >= REHEARSALS_KEPT:
        cache.pop(next(iter(cache)))
    cache[key] = value

def mpc_config(precision_bits: int, provider: str) -> MPCConfig:
    # CrypTen's own counters stay off (verbose): explorer.mpc.wire counts what is sent
    return MPCConfig(precision_bits=precision_bits, provider=provider,
                     sqrt_nr_iters=SQRT_ITERATIONS)


def seller_batches(spec: SessionSpec, batch: CandidateBatch) -> list[CandidateBatch]:
    """The session's batch as its data owners hold it: one CandidateBatch per data owner (its
    block of ``spec.blocks``, padded to the session's public m rows like the whole)."""
    out = []
    for seller in range(1, spec.sellers + 1):
        block = spec.block(seller)
        out.append(CandidateBatch(batch.A[block], batch.Y[block], batch.sizes[block]))
    return out


def run_session(spec: SessionSpec, model_owner: ModelOwnerInput,
                data_owner: CandidateBatch | Sequence[CandidateBatch],
                mode: str = DEFAULTS["mode"], provider: str = DEFAULTS["provider"],
                timeout: float = DEFAULTS["timeout"],
                cancel: threading.Event | None = None,
                on_wait: Callable[[float, int, int], None] | None = None) -> SessionResult:
    """Appraise the data owners' candidates against the model owner's inputs under MPC:
    ``data_owner`` is the one data owner's batch, or with ``spec.blocks`` one batch per data
    owner (``seller_batches``), each entered by its own process (rank j for data owner j).

    ``cancel`` stops a running session (raising Cancelled); ``on_wait`` receives the elapsed
    seconds, how many processes are up and the bytes they have sent on the wire so far, several
    times a second while the parties compute.
    """
    MPCOptions(mode=mode, provider=provider, reveal=spec.reveal,
               precision_bits=spec.precision_bits, timeout=timeout,
               sellers=spec.sellers).check_defences(spec.defences)  # validates
    batches = [data_owner] if isinstance(data_owner, CandidateBatch) else list(data_owner)
    if len(batches) != spec.sellers or not all(isinstance(b, CandidateBatch) for b in batches):
        raise ExplorerError(f"the session has {spec.sellers} data owner"
                            f"{'s' if spec.sellers > 1 else ''}: give one CandidateBatch "
                            f"for each (explorer.mpc.session.seller_batches).")
    data_owner = batches[0] if spec.sellers == 1 else batches
    return launch_session(appraisal_party, spec, model_owner, data_owner, mode=mode,
                          provider=provider, timeout=timeout, cancel=cancel, on_wait=on_wait,
                          what="appraisal", smaller="appraise fewer candidates")


def launch_session(party: Callable, spec: SessionSpec, model_owner, data_owner, *, mode: str,
                   provider: str, timeout: float, cancel: threading.Event | None,
                   on_wait: Callable[[float, int, int], None] | None, what: str, smaller: str,
                   extra: dict | None = None) -> SessionResult:
    """Run ``party`` (the code every party runs: explorer.mpc.protocol.appraisal_party, or
    explorer.mpc.acquisition.acquisition_party) in one private session: simulated in this
    process, or between real party processes with the dealer, which replays its rehearsal of
    an earlier session of the same public settings (and ``extra``, given to every party), as
    each party draws its shares ahead from its record. ``data_owner`` is the data owner's
    input, or a list of each data owner's (ranks 1..k). ``what`` and ``smaller`` name the job
    and what to do about a timeout in the sentence of a failure."""
    config = mpc_config(spec.precision_bits, provider)
    extra = extra or {}
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"the {what} was cancelled.")
    try:
        if mode == "simulated":
            start, stop = time.perf_counter(), threading.Event()
            ticker = threading.Thread(target=_ticking, args=(on_wait, stop), daemon=True)
            ticker.start()
            try:
                report = run_simulated(party, {"spec": spec, "input": model_owner,
                                               "data": data_owner, **extra}, config=config)
            finally:
                stop.set()
                ticker.join()
            reports, dealer, up = (report,), None, 0.0
            wall = time.perf_counter() - start
        else:
            # the launcher is silent while it hands the payloads to processes still importing
            # CrypTen: tick until its own heartbeats begin
            heard, stop = threading.Event(), threading.Event()

            def waited(elapsed: float, up: int, sent: int) -> None:
                heard.set()
                if on_wait is not None:
                    on_wait(elapsed, up, sent)

            def until_heard(elapsed: float, up: int, sent: int) -> None:
                if not heard.is_set() and on_wait is not None:
                    on_wait(elapsed, 0, 0)

            ticker = threading.Thread(target=_ticking, args=(until_heard, stop), daemon=True)
            ticker.start()
            key = f"{party.__name__} {sorted(extra.items())!r} {_rehearsal_key(spec)}"
            drawn = _DRAWN.get(f"{provider} {key}", {})  # the provider decides who draws
            sellers = data_owner if isinstance(data_owner, list) else [data_owner]
            payloads = {MODEL_OWNER: {"spec": spec, "input": model_owner,
                                      "draws": drawn.get(MODEL_OWNER),
                                      "offline": key in _REHEARSED, **extra}}
            for rank, mine in enumerate(sellers, start=DATA_OWNER):  # each only its own
                payloads[rank] = {"spec": spec, "input": mine, "draws": drawn.get(rank),
                                  **extra}
            try:
                launched = run_parties(party, payloads,
                                       config=config, timeout=timeout, cancel=cancel,
                                       on_wait=waited,
                                       dealer_payload={"spec": spec,
                                                       "sequence": _REHEARSED.get(key),
                                                       **extra})
            finally:
                stop.set()
                ticker.join()
            reports, dealer, wall = launched.results, launched.dealer, launched.wall_s
            up = launched.up_s
            if dealer and dealer.get("sequence"):
                _keep(_REHEARSED, key, dealer["sequence"])
            _keep(_DRAWN, f"{provider} {key}", {rank: list(report.draws)
                                               for rank, report in enumerate(reports)})
    except LaunchCancelled as exc:
        raise Cancelled(f"the private {what} was cancelled; its processes were stopped.") \
            from exc
    except LaunchTimeout as exc:
        raise ExplorerError(f"the private {what} did not finish within {timeout:g} s and was "
                            f"stopped; raise the timeout or {smaller}.") from exc
    except LaunchError as exc:
        raise ExplorerError(f"the private {what} failed: {exc}") from exc
    return SessionResult.of(reports, dealer, wall, up)


def session_inputs(appraiser: Appraiser, candidates: Sequence[tuple], options: MPCOptions,
                   defences: Defences | None = None, return_shares: bool = False,
                   blocks: Sequence[int] = ()
                   ) -> tuple[SessionSpec, ModelOwnerInput, CandidateBatch]:
    """What a fitted appraiser's private session consists of, for candidates [(X, y), ...],
    with these options and public defences: the public spec, the model owner's payload and the
    candidate batch (``seller_batches`` splits it among the data owners). ``blocks``: how many
    consecutive candidates each of several data owners holds (empty, or one block: one data
    owner)."""
    checked = appraiser.check_candidates(candidates)
    blocks = tuple(int(n) for n in blocks)
    if len(blocks) > 1 and (sum(blocks) != len(checked) or min(blocks) < 1):
        raise ExplorerError(f"the data owners' blocks {blocks} must be positive and add up to "
                            f"the {len(checked)} candidates.")
    public = appraiser.public([len(y) for _, y in checked])
    mo = ModelOwnerInput(appraiser.model_owner_inputs(public), threshold=options.threshold)
    spec = SessionSpec(public, reveal=options.reveal, precision_bits=options.precision_bits,
                       verify=options.verify, return_shares=return_shares,
                       defences=defences if defences is not None else Defences(),
                       blocks=blocks if len(blocks) > 1 else ())
    return spec, mo, candidate_batch(checked, public.n_outputs)


