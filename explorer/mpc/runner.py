"""Run an appraiser's definition under MPC: the private runner.

``PrivateRunner(options, defences).run(appraiser, candidates)`` appraises every candidate in
one private session (explorer.mpc.session), verifies the revealed values, repeats the session
for the candidates whose copies disagree, counts what was revealed in the query ledger, and
returns one ``explorer.appraisers.result.Appraisal`` with the session account.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from explorer.appraisers.base import Appraiser
from explorer.appraisers.result import Appraisal
from explorer.appraisers.reveal import Defences
from explorer.errors import ExplorerError
from explorer.ledger import Ledger, fingerprint
from explorer.mpc.account import session_account
from explorer.mpc.options import MPCOptions
from explorer.mpc.protocol import SessionSpec
from explorer.mpc.session import SessionResult, run_session, seller_batches, session_inputs
from explorer.progress import APPRAISE, ENCRYPTED, Progress, ProgressEvent, report_progress

# A session is repeated for the candidates whose two copies disagree, at most this often.
RETRIES = 2


def local_ledger(appraiser: Appraiser, options: MPCOptions) -> tuple[Ledger | None, str]:
    """The query ledger of a run between real parties, and the counterparty's fingerprint;
    (None, "") for simulated mode, where one process plays both parties (teaching runs)."""
    if options.mode != "parties":
        return None, ""
    public = appraiser.public([1])
    # the other side of a local run is known only by the model it appraises against
    return Ledger(), fingerprint({"local": True, "features": public.n_features,
                                  "outputs": public.n_outputs, "seed": public.n_seed,
                                  "test": public.n_test, "lam": public.lam})


class PrivateRunner:
    """Appraise candidates under MPC with these options and public reveal defences."""

    backend = "crypten"

    def __init__(self, options: MPCOptions | None = None, defences: Defences | None = None):
        options = MPCOptions() if options is None else options
        defences = Defences() if defences is None else defences
        if not isinstance(options, MPCOptions):
            raise ExplorerError("options must be an explorer.mpc.options.MPCOptions.")
        options.check_defences(defences)
        self.options, self.defences = options, defences

    def check(self, appraiser: Appraiser) -> None:
        """Refuse an appraiser these settings cannot run (one sentence)."""
        appraiser.check_private()
        if self.defences.weight_bound is not None and not appraiser.bounds_weights:
            raise ExplorerError(f"a weight bound (and the noise calibrated with it) is defined "
                                f"for the influence appraiser only, not {appraiser.name}.")

    def verified(self, appraiser: Appraiser, values: np.ndarray) -> np.ndarray:
        """Which of a session's revealed values (copies, B) to trust."""
        return appraiser.verified(values, self.options.bits, self.defences.grid,
                                  self.options.precision_bits)

    def acquire(self, appraiser: Appraiser, candidates: Sequence[tuple], rounds: int,
                cancel: threading.Event | None = None):
        """Greedy acquisition of ``rounds`` of the candidates [(X, y), ...] by the model owner
        the appraiser is fitted to, all rounds in one private session: an
        explorer.mpc.acquisition.Acquisition (each round's pick, values and the costs)."""
        from explorer.mpc.acquisition import acquire

        self.check(appraiser)
        if self.options.sellers > 1:
            raise ExplorerError(f"greedy acquisition runs with one data owner, not "
                                f"{self.options.sellers}; appraise with sellers 1.")
        return acquire(appraiser, candidates, rounds, self.options, self.defences,
                       local_ledger(appraiser, self.options), RETRIES, cancel)

    def run(self, appraiser: Appraiser, candidates: Sequence[tuple],
            progress: Progress | None = None,
            cancel: threading.Event | None = None) -> Appraisal:
        """One MPC session for all candidates [(X, y), ...] with the fitted appraiser's own
        definition; per candidate its value and an even share of the sessions' cost (private
        seconds, bytes sent on the wire, rounds of the critical path). ``progress`` hears from
        the session several times a second; setting ``cancel`` stops it.

        Verified: every value is computed twice from independent sharings. A candidate whose
        two copies disagree beyond the appraiser's tolerance, or whose value breaks a public
        invariant, is appraised again in a fresh session (fresh randomness), up to RETRIES
        times; then the run fails naming it. No unverified value is returned.

        With ``options.sellers`` k > 1 the candidates are split into k consecutive blocks
        (``MPCOptions.sellers_of``), each entered by its own data owner process; a repeated
        session takes the data owners whose candidates it repeats.
        """
        self.check(appraiser)
        options = self.options
        candidates = appraiser.check_candidates(candidates)
        n = len(candidates)
        seller = options.sellers_of(n) if n else []
        values = np.full(n, np.nan)
        ledger, counterparty = local_ledger(appraiser, options)
        counts = None
        todo = list(range(n))
        totals = {"private": 0.0, "bytes": 0, "rounds": 0, "wall": 0.0, "prep": 0.0,
                  "startup": 0.0, "offline": 0.0, "sessions": 0}
        sessions: list[SessionResult] = []
        # per session, each data owner process's (seller, its candidates), in rank order
        owners: list[tuple[tuple[int, tuple[int, ...]], ...]] = []
        first_spec: SessionSpec | None = None
        result: SessionResult | None = None
        for _ in range(RETRIES + 1 if n else 0):
            start = time.perf_counter()
            held = tuple((j, tuple(i for i in todo if seller[i] == j))
                         for j in sorted({seller[i] for i in todo}))
            spec, mo, batch = session_inputs(appraiser, [candidates[i] for i in todo], options,
                                             self.defences,
                                             blocks=[len(ids) for _, ids in held])
            totals["prep"] += time.perf_counter() - start
            first_spec = first_spec or spec
            if ledger is not None:  # both roles are played here: each counts what it reveals
                revealed = {"bits" if options.bits else "values": len(todo) * spec.copies}
                for role in ("model owner", "data owner"):
                    counts = ledger.spend(role, counterparty, options.budget, **revealed)

            done = n - len(todo)  # verified in earlier sessions

            def heartbeat(elapsed: float, up: int, sent: int, done: int = done) -> None:
                report_progress(progress, ProgressEvent(ENCRYPTED, appraiser.name, done, n,
                                                        elapsed, up, sent))

            data = seller_batches(spec, batch) if spec.sellers > 1 else batch
            result = run_session(spec, mo, data, options.mode, options.provider,
                                 options.timeout, cancel=cancel, on_wait=heartbeat)
            owners.append(held)
            for key, field_ in (("private", "private_seconds"), ("bytes", "bytes"),
                                ("rounds", "rounds"), ("wall", "wall_seconds"),
                                ("startup", "startup_seconds"), ("offline", "offline_seconds")):
                totals[key] += getattr(result, field_)
            totals["sessions"] += 1
            sessions.append(result)
            good = self.verified(appraiser, result.values)
            for j, i in enumerate(todo):
                if good[j]:
                    values[i] = result.values[0, j]
            todo = [i for j, i in enumerate(todo) if not good[j]]
            if not todo:
                break
        if todo and options.bits:
            # copies that keep disagreeing on a bit sit within the encrypted noise of the
            # threshold, where either bit is right: take the first copy's, if it is a bit
            first = result.values[0]
            for j, i in enumerate(todo):
                if first[j] in (0.0, 1.0):
                    values[i] = first[j]
            todo = [i for j, i in enumerate(todo) if first[j] not in (0.0, 1.0)]
        if todo:
            raise ExplorerError(
                f"the private {appraiser.name} value of candidate {todo[0]} could not be "
                f"verified ({len(todo)} of {n} candidates failed {RETRIES + 1} sessions: their "
                f"two independently shared copies disagreed, or broke a bound every value "
                f"obeys); use fewer precision bits (16 is the default) or standardised "
                f"features.")
        report_progress(progress, ProgressEvent(APPRAISE, appraiser.name, n, n))
        share = 1.0 / max(n, 1)
        costs = {"seconds": totals["wall"] * share,
                 "plaintext_seconds": (appraiser.setup_seconds_ + totals["prep"]) * share,
                 "private_seconds": totals["private"] * share,
                 "bytes": totals["bytes"] * share, "rounds": totals["rounds"] * share}
        account = session_account(appraiser, options, first_spec, sessions, owners) \
            if sessions else None
        return Appraisal(appraiser.name, self.backend, values,
                         {k: np.full(n, float(v)) for k, v in costs.items()},
                         setup_seconds=appraiser.setup_seconds_, account=account,
                         ledger_counts=counts, sessions=tuple(sessions), totals=totals)
