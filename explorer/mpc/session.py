"""Run one private appraisal session for a batch of candidates, in real processes or simulated."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from explorer.appraisers.base import (
    APPRAISE,
    ENCRYPTED,
    Appraiser,
    Progress,
    ProgressEvent,
    report_progress,
)
from explorer.appraisers.batch import CandidateBatch, candidate_batch
from explorer.appraisers.config import PROVIDERS, MPCOptions
from explorer.errors import Cancelled, ExplorerError
from explorer.ledger import Ledger, fingerprint
from explorer.mpc.crypten_compat import MPCConfig
from explorer.mpc.launcher import HEARTBEAT_SECONDS, run_parties, warm_parties
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
PARTY_MODULES = ("explorer.mpc.protocol", "explorer.mpc.dealer", "explorer.mpc.masked")


def warm_sessions(provider: str):
    """A context in which sessions between real parties take warm processes: torch, CrypTen
    and the protocol already imported (explorer.mpc.launcher.warm_parties)."""
    return warm_parties(3 if provider == "TTP" else 2, preload=PARTY_MODULES)


# Newton iterations of the inverse square root in the gradient norm (CrypTen's default is 3).
SQRT_ITERATIONS = 12


@dataclass(frozen=True)
class SessionResult:
    """Revealed values (copies, B) and the session's cost: encrypted seconds (slowest party);
    bytes sent on the wire by the model owner, the data owner and the dealer, each byte counted
    once; rounds of the critical path (the most sequential rounds of any party, see
    explorer.mpc.wire); and whole wall time including process start-up (seconds)."""

    values: np.ndarray
    private_seconds: float
    bytes: int
    rounds: int
    wall_seconds: float
    reports: tuple[PartyReport, ...]
    dealer_bytes: int = 0  # included in bytes

    @classmethod
    def of(cls, reports: Sequence[PartyReport], dealer: dict | None,
           wall_seconds: float) -> SessionResult:
        """The session's result from every party's report and the dealer's wire count."""
        dealer_bytes = int(dealer["bytes"]) if dealer else 0
        return cls(values=reports[0].values.numpy(),
                   private_seconds=max(r.seconds for r in reports),
                   bytes=sum(r.bytes for r in reports) + dealer_bytes,
                   rounds=max(r.rounds for r in reports), wall_seconds=wall_seconds,
                   reports=tuple(reports), dealer_bytes=dealer_bytes)


@dataclass(frozen=True)
class SessionAccount:
    """Who held, encrypted, sent and learned what in an appraiser's private sessions: the public
    spec both parties agreed on, the inputs each party encrypted (name -> shape, each sharing),
    per party its bytes sent on the wire, rounds and encrypted seconds summed over the sessions
    (a run is repeated for candidates whose copies disagree; the dealer: its bytes only, its
    rounds being the model owner's requests), the values or bits revealed (to both parties),
    and the triple provider actually used."""

    spec: SessionSpec
    mode: str  # "parties" | "simulated"
    provider: str  # "TTP" | "TFP"
    threshold: float | None  # the model owner's, encrypted in bit mode
    model_owner_encrypted: dict[str, tuple[int, ...]]
    data_owner_encrypted: dict[str, tuple[int, ...]]
    party_bytes: dict[str, int]
    party_rounds: dict[str, int]
    party_seconds: dict[str, float]
    revealed: int  # values or bits revealed to both parties, over all sessions
    sessions: int

    @property
    def unit(self) -> str:
        return "bits" if self.spec.reveal == "bit" else "values"

    def lines(self) -> list[str]:
        """The account as text, one line per lane (the command line prints these)."""
        def shapes(named: dict[str, tuple[int, ...]]) -> str:
            return ", ".join(f"{k} {tuple(v)}" for k, v in named.items())

        # the dealer's rounds are the model owner's requests, already in its count
        sent = "; ".join(f"{who} {self.party_bytes[who] / 1e6:.2f} MB"
                         + (f", {self.party_rounds[who]} rounds" if who in self.party_rounds
                            else "") for who in self.party_bytes)
        return [f"model owner encrypts {shapes(self.model_owner_encrypted)}",
                f"data owner encrypts {shapes(self.data_owner_encrypted)}",
                f"sent: {sent} ({self.mode}, {self.sessions} session"
                f"{'s' if self.sessions > 1 else ''})",
                f"provider {self.provider}: {PROVIDERS[self.provider]}",
                f"revealed to both: {self.revealed} {self.unit}"]


def _encrypted(spec: SessionSpec, appraiser: Appraiser, threshold: float, masked_once: bool
               ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Each party's encrypted inputs by name and shape, as explorer.mpc.protocol shares them:
    every copy shared afresh, except the features when ``masked_once`` (two parties with the
    dealer: masked and sent once for every copy, explorer.mpc.masked)."""
    public = spec.public
    mo = dict(sorted(appraiser.model_owner_shapes(public).items()))
    if spec.reveal == "bit":
        mo["threshold"] = (1,)
    B, m = public.n_candidates, public.size
    copies = f" ×{spec.copies}" if spec.copies > 1 else ""
    features = "candidate features A" + (
        (f", masked once for {spec.copies} copies" if spec.copies > 1 else ", masked once")
        if masked_once else copies)
    do = {features: (B, m, public.d1),
          f"candidate labels Y{copies}": (B, m, public.n_outputs)}
    if spec.defences.noise > 0:  # each party's own draw, one per value, before the reveal
        mo["noise"] = do["noise"] = (B,)
    return mo, do


def _account(appraiser: Appraiser, spec: SessionSpec, results: list[SessionResult]
             ) -> SessionAccount:
    """The account of an appraiser's sessions (``results``, the first with ``spec``)."""
    options: MPCOptions = appraiser.mpc
    roles = ("model owner", "data owner") if options.mode == "parties" else \
        ("both (one process)",)
    party_bytes = dict.fromkeys(roles, 0)
    party_rounds = dict.fromkeys(roles, 0)
    party_seconds = dict.fromkeys(roles, 0.0)
    for result in results:
        for who, report in zip(roles, result.reports, strict=True):
            party_bytes[who] += report.bytes
            party_rounds[who] += report.rounds
            party_seconds[who] += report.seconds
    if any(r.dealer_bytes for r in results):  # the dealer sends too: its bytes count
        party_bytes["dealer"] = sum(r.dealer_bytes for r in results)
    mo, do = _encrypted(spec, appraiser, options.threshold,
                        masked_once=options.mode == "parties" and options.provider == "TTP")
    return SessionAccount(
        spec=spec, mode=options.mode, provider=options.provider,
        threshold=options.threshold if spec.reveal == "bit" else None,
        model_owner_encrypted=mo, data_owner_encrypted=do, party_bytes=party_bytes,
        party_rounds=party_rounds, party_seconds=party_seconds,
        revealed=sum(r.values.size for r in results), sessions=len(results))


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


def run_session(spec: SessionSpec, model_owner: ModelOwnerInput, data_owner: CandidateBatch,
                mode: str = "parties", provider: str = "TTP", timeout: float = 600.0,
                cancel: threading.Event | None = None,
                on_wait: Callable[[float, int, int], None] | None = None) -> SessionResult:
    """Appraise the data owner's candidates against the model owner's inputs under MPC.

    ``cancel`` stops a running session (raising Cancelled); ``on_wait`` receives the elapsed
    seconds, how many processes are up and the bytes they have sent on the wire so far, several
    times a second while the parties compute.
    """
    MPCOptions(mode=mode, provider=provider, reveal=spec.reveal,
               precision_bits=spec.precision_bits, timeout=timeout,
               defences=spec.defences)  # validates
    config = mpc_config(spec.precision_bits, provider)
    if cancel is not None and cancel.is_set():
        raise Cancelled("the appraisal was cancelled.")
    try:
        if mode == "simulated":
            start, stop = time.perf_counter(), threading.Event()
            ticker = threading.Thread(target=_ticking, args=(on_wait, stop), daemon=True)
            ticker.start()
            try:
                report = run_simulated(appraisal_party, {"spec": spec, "input": model_owner,
                                                         "data": data_owner}, config=config)
            finally:
                stop.set()
                ticker.join()
            reports, dealer = (report,), None
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
            key = _rehearsal_key(spec)
            drawn = _DRAWN.get(f"{provider} {key}", {})  # the provider decides who draws
            try:
                launched = run_parties(appraisal_party,
                                       {MODEL_OWNER: {"spec": spec, "input": model_owner,
                                                      "draws": drawn.get(MODEL_OWNER),
                                                      "offline": key in _REHEARSED},
                                        DATA_OWNER: {"spec": spec, "input": data_owner,
                                                     "draws": drawn.get(DATA_OWNER)}},
                                       config=config, timeout=timeout, cancel=cancel,
                                       on_wait=waited,
                                       dealer_payload={"spec": spec,
                                                       "sequence": _REHEARSED.get(key)})
            finally:
                stop.set()
                ticker.join()
            reports, dealer, wall = launched.results, launched.dealer, launched.wall_s
            if dealer and dealer.get("sequence"):
                _keep(_REHEARSED, key, dealer["sequence"])
            _keep(_DRAWN, f"{provider} {key}", {rank: list(reports[rank].draws)
                                               for rank in (MODEL_OWNER, DATA_OWNER)})
    except LaunchCancelled as exc:
        raise Cancelled("the private appraisal was cancelled; its processes were stopped.") \
            from exc
    except LaunchTimeout as exc:
        raise ExplorerError(f"the private appraisal did not finish within {timeout:g} s and was "
                            f"stopped; raise the timeout or appraise fewer candidates.") from exc
    except LaunchError as exc:
        raise ExplorerError(f"the private appraisal failed: {exc}") from exc
    return SessionResult.of(reports, dealer, wall)


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
    sent on the wire, rounds of the critical path). ``progress`` hears from the session several
    times a second; ``cancel`` stops it. ``appraiser.session_account_`` then says who held,
    encrypted and learned what.

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
    sessions: list[SessionResult] = []
    first_spec: SessionSpec | None = None
    for _ in range(RETRIES + 1):
        start = time.perf_counter()
        spec, mo, batch = session_inputs(appraiser, [candidates[i] for i in todo])
        cost["prep"] += time.perf_counter() - start
        first_spec = first_spec or spec
        if ledger is not None:  # both roles are played here: each counts what it reveals
            revealed = {"bits" if options.reveal == "bit" else "values":
                        len(todo) * spec.copies}
            for role_ in ("model owner", "data owner"):
                appraiser.ledger_counts_ = ledger.spend(role_, counterparty, options.budget,
                                                        **revealed)

        done = n - len(todo)  # verified in earlier sessions

        def heartbeat(elapsed: float, up: int, sent: int, done: int = done) -> None:
            report_progress(progress, ProgressEvent(ENCRYPTED, appraiser.name, done, n,
                                                    elapsed, up, sent))

        result = run_session(spec, mo, batch, options.mode, options.provider, options.timeout,
                             cancel=cancel, on_wait=heartbeat)
        for key, field_ in (("private", "private_seconds"), ("bytes", "bytes"),
                            ("rounds", "rounds"), ("wall", "wall_seconds")):
            cost[key] += getattr(result, field_)
        cost["sessions"] += 1
        appraiser.last_session_ = result
        sessions.append(result)
        appraiser.session_account_ = _account(appraiser, first_spec, sessions)
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
    report_progress(progress, ProgressEvent(APPRAISE, appraiser.name, n, n))
    appraiser.session_costs_ = cost
    return [{"value": float(v), "seconds": cost["wall"] / n,
             "plaintext_seconds": (appraiser.setup_seconds_ + cost["prep"]) / n,
             "private_seconds": cost["private"] / n, "bytes": cost["bytes"] / n,
             "rounds": cost["rounds"] / n} for v in values]
