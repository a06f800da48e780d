"""Running the dashboard's jobs: what a run is (a snapshot of everything it depends on), the job
itself as plain Python (``run_appraisal``, ``appraise_upload``, ``attack_curves``: the dashboard
shows nothing these cannot produce), and the background thread that runs one job at a time,
with its Run/Cancel buttons and a progress bar fed by structured events.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import ipywidgets as w
import pandas as pd

from explorer.appraisers import Appraiser, AppraiserConfig
from explorer.appraisers.base import (
    ACQUISITION,
    APPRAISE,
    ENCRYPTED,
    GROUND_TRUTH,
    EventProgress,
    ProgressEvent,
)
from explorer.errors import Cancelled, ExplorerError
from explorer.experiments import (
    appraise_market,
    bit_appraisers,
    bit_prices,
    market_acquisition,
    market_utilities,
    own_data_thresholds,
)
from explorer.leakage.attack import Attack, run_attack
from explorer.loaders.user import read_candidate_file
from explorer.market import Candidate
from explorer.mpc.session import SessionAccount
from explorer.pricing import PricingRule
from explorer.seed import SeedModel
from explorer.tasks import Task

ACQUISITION_ROUNDS = 5
RANDOM_ORDERS = 5  # random acquisition's band: this many random orders
# widget updates at most this often (heartbeats arrive ~10 times a second from three processes)
MIN_UPDATE_SECONDS = 0.1
TICK_SECONDS = 0.25  # heartbeat of phases that send no events of their own

OnEvent = Callable[[ProgressEvent], None]


def reveals_bits(config: AppraiserConfig) -> bool:
    """Whether a run with ``config`` reveals only the bit value > threshold (bit mode)."""
    return config.backend != "plaintext" and config.reveal == "bit"


@dataclass(frozen=True)
class RunSnapshot:
    """Everything a run depends on, fixed when it starts: a control changed mid-run (the task
    above all) changes nothing in its results."""

    task_name: str
    task: Task
    seed: SeedModel
    market: tuple[Candidate, ...]
    config: AppraiserConfig
    rate: float
    acquisition_rounds: int = ACQUISITION_ROUNDS
    flat: float = 0.0
    thresholds: Mapping[str, float] | None = None
    threshold_sd: float | None = None

    @classmethod
    def take(cls, task_name: str, task: Task, seed: SeedModel, market: Sequence[Candidate],
             config: AppraiserConfig, rate: float, flat: float = 0.0,
             threshold_sd: float = 3.0) -> RunSnapshot:
        """The snapshot of a run about to start. In bit mode it fixes each appraiser's own
        threshold (``own_data_thresholds``: the mean of its values on random subsets of the
        model owner's training set of the candidates' size, plus ``threshold_sd`` sd)."""
        thresholds = sd = None
        if reveals_bits(config) and market:
            size = max(c.size for c in market)
            thresholds = own_data_thresholds(seed, config, size, z=threshold_sd)
            sd = threshold_sd
        return cls(task_name, task, seed, tuple(market), config, rate, flat=flat,
                   thresholds=thresholds, threshold_sd=sd)

    @property
    def bits(self) -> bool:
        """Whether only the bit value > threshold is revealed (bit mode)."""
        return reveals_bits(self.config)

    @property
    def backend(self) -> str:
        """The backend in words, e.g. "CrypTen, real parties (TTP)"."""
        c = self.config
        if c.backend == "plaintext":
            return "plaintext"
        mode = "real parties" if c.mode == "parties" else "simulated"
        return f"CrypTen, {mode} ({c.provider}, {c.reveal}s revealed)"

    @property
    def rounds(self) -> int:
        """Acquisition rounds this run makes: greedy acquisition buys the highest influence
        value, so it needs influence, and values (a bit cannot say which is highest)."""
        if "influence" not in self.config.names or self.bits:
            return 0
        return min(self.acquisition_rounds, len(self.market))

    def appraisers(self) -> list[Appraiser]:
        """The run's appraisers; in bit mode each with its own threshold."""
        if self.bits:
            return bit_appraisers(self.config, self.thresholds or {})
        return self.config.build_all()

    def describe(self) -> str:
        return (f"{self.task_name}, {len(self.market)} candidates "
                f"({self.market[0].kind if self.market else '-'}), {self.backend}")


@dataclass
class RunOutcome:
    """A run's results: one row per candidate and appraiser, the greedy-vs-random acquisition
    (value mode), the prices (value mode: influence's, with the pricing threshold; bit mode:
    every appraiser's flat prices, with its own threshold), and per private appraiser its
    session account."""

    snapshot: RunSnapshot
    results: pd.DataFrame
    acquisition: pd.DataFrame | None = None
    priced: pd.DataFrame | None = None
    accounts: dict[str, SessionAccount] = field(default_factory=dict)


def priced(results: pd.DataFrame, snapshot: RunSnapshot) -> pd.DataFrame | None:
    """The run's prices. Value mode: influence values priced by the rule calibrated on the
    run's own seed model, with its ``threshold`` column (None without influence). Bit mode:
    ``bit_prices``, the flat price per accepted candidate, each appraiser's threshold beside."""
    if snapshot.bits:
        return bit_prices(results, flat=snapshot.flat, thresholds=snapshot.thresholds)
    inf = results[results.appraiser == "influence"]
    if not len(inf):
        return None
    rule = PricingRule.calibrated(snapshot.seed, int(inf["size"].max()), snapshot.rate)
    return inf.assign(price=rule.prices(inf.value), accepted=inf.value > rule.threshold,
                      threshold=rule.threshold)


class AcquisitionProgress:
    """The acquisition's events: each round as ``market_acquisition`` makes it (a Progress),
    and between rounds (an encrypted round takes seconds) the elapsed time every
    TICK_SECONDS, from a thread that runs while the object is entered."""

    def __init__(self, on_event: OnEvent, total: int):
        self.on_event, self.done, self.total = on_event, 0, max(total, 1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._start = time.perf_counter()

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.done, self.total = done, total
        self._emit()

    def _emit(self) -> None:
        self.on_event(ProgressEvent(ACQUISITION, "influence", self.done, self.total,
                                    time.perf_counter() - self._start))

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self._emit()

    def __enter__(self) -> AcquisitionProgress:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_appraisal(snapshot: RunSnapshot, on_event: OnEvent | None = None,
                  cancel: threading.Event | None = None,
                  on_results: Callable[[RunOutcome], None] | None = None) -> RunOutcome:
    """Appraise the snapshot's market: ground truth, every appraiser (``on_results`` hears each
    one's rows as it finishes; in bit mode each with the snapshot's threshold), prices, then
    (value mode) greedy acquisition by influence against random, reported round by round."""
    config, seed, market = snapshot.config, snapshot.seed, list(snapshot.market)
    progress = EventProgress(on_event, config.names) if on_event else None
    appraisers = snapshot.appraisers()
    outcome = RunOutcome(snapshot, pd.DataFrame())

    def partial(results: pd.DataFrame) -> None:
        outcome.results = results
        outcome.accounts = {a.name: a.session_account_ for a in appraisers
                            if hasattr(a, "session_account_")}
        if on_results:
            on_results(outcome)

    with config.warm_processes():  # party processes import during the ground truth
        utilities = market_utilities(seed, market, progress, cancel)
        partial(appraise_market(seed, market, appraisers, utilities, progress, cancel,
                                on_appraiser=partial))
        outcome.priced = priced(outcome.results, snapshot)
        if snapshot.rounds:
            total = snapshot.rounds * (1 + RANDOM_ORDERS)
            with contextlib.ExitStack() as stack:
                rounds = stack.enter_context(AcquisitionProgress(on_event, total)) \
                    if on_event else None
                outcome.acquisition = market_acquisition(
                    seed, market, snapshot.rounds, random_orders=RANDOM_ORDERS, config=config,
                    cancel=cancel, progress=rounds)
    if on_event:
        on_event(ProgressEvent(ACQUISITION, None, 1, 1))
    return outcome


@dataclass(frozen=True)
class UploadOutcome:
    """A user's file appraised: its name, samples, the task and backend that produced it, one
    row per appraiser (as ``appraise_market``) and, in bit mode, each appraiser's threshold."""

    filename: str
    samples: int
    task_name: str
    backend: str
    frame: pd.DataFrame
    thresholds: Mapping[str, float] | None = None


def appraise_upload(filename: str, content: bytes, task_name: str, task: Task, seed: SeedModel,
                    config: AppraiserConfig, backend: str, on_event: OnEvent | None = None,
                    cancel: threading.Event | None = None,
                    threshold_sd: float = 3.0) -> UploadOutcome:
    """Appraise one candidate file (CSV or NPZ in the task's raw units) as the command line's
    ``appraise --candidate-file`` does; in bit mode against each appraiser's own-data threshold
    for a candidate of the file's size (as a run's)."""
    name = os.path.basename(filename) or "candidate.csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)  # errors then name the user's own file
        with open(path, "wb") as f:
            f.write(content)
        X_raw, y = read_candidate_file(path, task.feature_names, task.class_names,
                                       mean=task.mean, scale=task.scale)
    cand = Candidate(0, task.standardise(X_raw), y, "user", float("nan"), {"file": filename})
    snapshot = RunSnapshot.take(task_name, task, seed, [cand], config, rate=0.0,
                                threshold_sd=threshold_sd)
    progress = EventProgress(on_event, config.names) if on_event else None
    frame = appraise_market(seed, [cand], snapshot.appraisers(), progress=progress,
                            cancel=cancel)
    return UploadOutcome(filename, len(y), task_name, backend, frame, snapshot.thresholds)


def attack_curves(seed: SeedModel, attacker: str, defences: tuple[str, ...],
                  candidate: Candidate | None, cancel: threading.Event | None = None,
                  on_event: OnEvent | None = None) -> pd.DataFrame:
    """``explorer.leakage.run_attack`` under each defence (plaintext, values revealed), as one
    tidy frame for ``plots.leakage_curves`` (the command line's ``attack``)."""
    frames = []
    for i, defence in enumerate(defences):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the attack was cancelled.")
        if on_event:
            on_event(ProgressEvent(f"attack under {defence}", None, i, len(defences)))
        pair = (candidate.X, candidate.y) if candidate is not None else None
        frames.append(run_attack(seed, Attack(attacker, "value", defence), pair).frame)
    if on_event:
        on_event(ProgressEvent("attack", None, len(defences), len(defences)))
    return pd.concat(frames, ignore_index=True)


@dataclass
class ProgressPlan:
    """Where each event puts the bar: one segment for the ground truth, one per appraiser, one
    for the acquisition. Within a segment with no candidate finished yet (an encrypted session,
    the acquisition) the bar creeps by elapsed time, never reaching the segment's end."""

    appraisers: tuple[str, ...] = ()
    n: int = 1
    rounds: int = 0
    steps: int = 1000  # bar resolution

    @property
    def segments(self) -> list[str]:
        return [GROUND_TRUTH, *self.appraisers, *([ACQUISITION] if self.rounds else [])]

    def position(self, event: ProgressEvent) -> float:
        """0..1 along the whole job."""
        segments = self.segments
        key = event.appraiser if event.phase in (APPRAISE, ENCRYPTED) else event.phase
        if key not in segments:
            return event.done / max(event.total, 1)  # a job of one phase (upload, attack)
        within = event.done / max(event.total, 1)
        if event.elapsed is not None and within < 1:
            creep = event.elapsed / (event.elapsed + 10.0)  # half way after 10 s
            within += (1 - within) * 0.9 * creep
        return (segments.index(key) + within) / len(segments)


def session_so_far(event: ProgressEvent) -> str:
    """", 3 processes up, 4.2 MB sent" for an encrypted session's event (what is known)."""
    up = "" if event.parties_up is None else f", {event.parties_up} processes up"
    sent = f", {event.bytes_sent / 1e6:.1f} MB sent" if event.bytes_sent else ""
    return up + sent


def describe(event: ProgressEvent) -> str:
    """The status line of an event."""
    who = html.escape(event.appraiser or "")
    if event.phase == ENCRYPTED:
        return (f"{who}: encrypted session, {event.elapsed or 0.0:.1f} s{session_so_far(event)} "
                f"({event.done}/{event.total} verified)")
    if event.phase == ACQUISITION:
        if event.done >= event.total and event.elapsed is None:
            return "acquisition done"
        return (f"acquisition: greedy by influence vs random, {event.done}/{event.total} "
                f"rounds, {event.elapsed or 0.0:.1f} s")
    if event.phase == APPRAISE:
        return f"{who}: {event.done}/{event.total} candidates"
    return f"{html.escape(event.phase)}: {event.done}/{event.total}"


class JobRunner:
    """One background job at a time, with Run and Cancel buttons, a progress bar and a status
    line. Jobs receive structured events; the widgets are updated at most every
    MIN_UPDATE_SECONDS (and always when a phase completes)."""

    def __init__(self, show_error: Callable[[str], None]):
        self.run_button = w.Button(description="Run", button_style="primary", icon="play",
                                   tooltip="Appraise the market with the settings on the left.")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True,
                                      tooltip="Stop the running job (and its party processes).")
        self.progress = w.IntProgress(value=0, min=0, max=1000,
                                      layout=w.Layout(width="220px"))
        self.status = w.HTML("Choose a seed model and a market, then press Run.")
        self._show_error = show_error
        self._thread: threading.Thread | None = None
        self._plan = ProgressPlan()
        self._started = time.perf_counter()
        self._last_update = 0.0
        self.cancel_event = threading.Event()
        self.cancel_button.on_click(lambda _: self.cancel())

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, target: Callable[[], None], plan: ProgressPlan | None = None) -> bool:
        """Run ``target()`` in the background; False (and a sentence) if a job is running."""
        if self.running:
            self._show_error("a job is already running; wait for it or press Cancel.")
            return False
        self.cancel_event.clear()
        self._show_error("")
        self._plan = plan or ProgressPlan()
        self._started, self._last_update = time.perf_counter(), 0.0
        self.run_button.disabled, self.cancel_button.disabled = True, False
        self.progress.value, self.progress.bar_style = 0, ""
        self._thread = threading.Thread(target=self._guarded, args=(target,), daemon=True)
        self._thread.start()
        return True

    def set_plan(self, plan: ProgressPlan) -> None:
        self._plan = plan

    def cancel(self) -> None:
        """Stop the running job; a private session's processes are stopped too."""
        self.cancel_event.set()
        self.status.value = "cancelling…"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job ends; True if it ended within ``timeout``."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def on_event(self, event: ProgressEvent) -> None:
        """Show a job's progress event (from any thread)."""
        now = time.perf_counter()
        final = event.done >= event.total and event.elapsed is None
        if not final and now - self._last_update < MIN_UPDATE_SECONDS:
            return
        self._last_update = now
        position = self._plan.position(event)
        self.progress.value = max(self.progress.value,
                                  min(self.progress.max, math.floor(position * self.progress.max)))
        self.status.value = f"{describe(event)} ({now - self._started:.1f} s)"

    def say(self, text: str) -> None:
        self.status.value = text

    def _guarded(self, target: Callable[[], None]) -> None:
        try:
            target()
            self.progress.value, self.progress.bar_style = self.progress.max, "success"
        except Cancelled:
            self.status.value = "cancelled"
            self.progress.bar_style = "warning"
        except ExplorerError as exc:
            self.status.value = "stopped"
            self.progress.bar_style = "danger"
            self._show_error(str(exc))
        except Exception as exc:
            self.status.value = "stopped"
            self.progress.bar_style = "danger"
            self._show_error(f"unexpected error: {exc}")
            traceback.print_exc()
        finally:
            self.run_button.disabled, self.cancel_button.disabled = False, True
