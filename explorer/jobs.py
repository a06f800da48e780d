"""The dashboard's and the command line's jobs as plain Python: what a run is (a snapshot of
everything it depends on), the run itself (``run_appraisal``: ground truth, appraisal, prices,
acquisition), buying within a budget on a run's market (``buy_within_budget``), a user's
candidate file appraised (``candidate_from_file``, ``appraise_upload``) and the leakage curves
(``attack_curves``), and one market under every seed-model family (``compare_models``). The
dashboard (explorer.app) only wires widgets to these; the command line calls the same
functions.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from explorer.acquisition import budgeted_acquisition, market_acquisition
from explorer.appraisers.result import Appraisal
from explorer.asks import asking_prices
from explorer.config import AppraiserConfig
from explorer.constraints import DEFAULTS, MODELS
from explorer.errors import Cancelled, ExplorerError
from explorer.experiments import appraise_market, compare_seed_models, market_utilities
from explorer.leakage.attack import Attack, run_attack
from explorer.loaders.user import read_candidate_file
from explorer.market import Candidate
from explorer.market_prices import bit_configs, bit_prices, own_data_thresholds
from explorer.mpc.account import SessionAccount
from explorer.pricing import PRICE_THRESHOLD_SD, PricingRule
from explorer.progress import ACQUISITION, EventProgress, ProgressEvent
from explorer.seed import AnySeed, SeedChoice, model_description
from explorer.tasks import Task
from explorer.timeline import ACQUISITION as ACQUIRING
from explorer.timeline import GROUND_TRUTH, LIVE, PRICES, PROCESSES, Timeline
from explorer.utility import check_absorbs

ACQUISITION_ROUNDS = 5
RANDOM_ORDERS = 5  # random acquisition's band: this many random orders
TICK_SECONDS = 0.25  # heartbeat of phases that send no events of their own

OnEvent = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class RunSnapshot:
    """Everything a run depends on, fixed when it starts: a control changed mid-run (the task
    above all) changes nothing in its results."""

    task_name: str
    task: Task
    seed: AnySeed
    market: tuple[Candidate, ...]
    config: AppraiserConfig
    rate: float
    acquisition_rounds: int = ACQUISITION_ROUNDS
    flat: float = 0.0
    thresholds: Mapping[str, float] | None = None
    threshold_sd: float | None = None

    @classmethod
    def take(cls, task_name: str, task: Task, seed: AnySeed, market: Sequence[Candidate],
             config: AppraiserConfig, rate: float, flat: float = 0.0,
             threshold_sd: float = PRICE_THRESHOLD_SD) -> RunSnapshot:
        """The snapshot of a run about to start. In bit mode it fixes each appraiser's own
        threshold (``own_data_thresholds``: the mean of its values on random subsets of the
        model owner's training set of the candidates' size, plus ``threshold_sd`` sd)."""
        thresholds = sd = None
        if config.reveals_bits and market:
            size = max(c.size for c in market)
            thresholds = own_data_thresholds(seed, config, size, z=threshold_sd)
            sd = threshold_sd
        return cls(task_name, task, seed, tuple(market), config, rate, flat=flat,
                   thresholds=thresholds, threshold_sd=sd)

    @property
    def bits(self) -> bool:
        """Whether only the bit value > threshold is revealed (bit mode)."""
        return self.config.reveals_bits

    @property
    def backend(self) -> str:
        """The backend in words, e.g. "CrypTen, real parties (TTP)"."""
        c = self.config
        if not c.private:
            return "plaintext"
        mode = "real parties" if c.mpc.mode == "parties" else "simulated"
        return f"CrypTen, {mode} ({c.mpc.provider}, {c.mpc.reveal}s revealed)"

    @property
    def rounds(self) -> int:
        """Acquisition rounds this run makes: greedy acquisition buys the highest influence
        value, so it needs influence, and values (a bit cannot say which is highest), and a
        seed model buying can refit (not last-layer: ``acquires``)."""
        if "influence" not in self.config.names or self.bits or not self.acquires:
            return 0
        return min(self.acquisition_rounds, len(self.market))

    @property
    def acquires(self) -> bool:
        """Whether buying can refit this run's seed model (explorer.utility.absorb)."""
        try:
            check_absorbs(self.seed.family)
        except ExplorerError:
            return False
        return True

    def configs(self) -> list[AppraiserConfig]:
        """The run's configurations: the one it was given, or in bit mode one per appraiser,
        each with its own threshold."""
        if self.bits:
            return bit_configs(self.config, self.thresholds or {})
        return [self.config]

    def describe(self) -> str:
        return (f"{self.task_name}, {model_description(self.seed)}, {len(self.market)} "
                f"candidates ({self.market[0].kind if self.market else '-'}), {self.backend}")


@dataclass
class RunOutcome:
    """A run's results: one row per candidate and appraiser, the greedy-vs-random acquisition
    (value mode), the prices (value mode: influence's, with the pricing threshold; bit mode:
    every appraiser's flat prices, with its own threshold), per private appraiser its
    session account, and the run's ``timeline`` (explorer.timeline: each phase's wall seconds,
    adding up to the run's, set once the run has ended)."""

    snapshot: RunSnapshot
    results: pd.DataFrame
    acquisition: pd.DataFrame | None = None
    priced: pd.DataFrame | None = None
    accounts: dict[str, SessionAccount] = field(default_factory=dict)
    timeline: pd.DataFrame | None = None


def priced(results: pd.DataFrame, snapshot: RunSnapshot) -> pd.DataFrame | None:
    """The run's prices. Value mode: influence values priced by the rule calibrated on the
    run's own seed model, with its ``threshold`` column (None without influence). Bit mode:
    ``bit_prices``, the flat price per accepted candidate, each appraiser's threshold beside."""
    if snapshot.bits:
        return bit_prices(results, flat=snapshot.flat, thresholds=snapshot.thresholds)
    inf = results[results.appraiser == "influence"]
    if not len(inf):
        return None
    seed = snapshot.seed
    rule = PricingRule.calibrated(seed, int(inf["size"].max()), snapshot.rate,
                                  z=PRICE_THRESHOLD_SD,
                                  influence=snapshot.config.build("influence", seed.family))
    return inf.assign(price=rule.prices(inf.value), accepted=inf.value > rule.threshold,
                      threshold=rule.threshold)


class AcquisitionProgress:
    """The acquisition's events: each round as ``market_acquisition`` makes it (a Progress),
    and between rounds (an encrypted round takes seconds) the elapsed time every
    TICK_SECONDS, from a thread that runs while the object is entered. ``on_event`` None
    sends nothing. It keeps when each round ended (``ended``, perf_counter seconds), which
    splits the acquisition's time into greedy rounds and random orders."""

    def __init__(self, on_event: OnEvent | None, total: int):
        self.on_event, self.done, self.total = on_event, 0, max(total, 1)
        self.ended: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._start = time.perf_counter()

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.ended.append(time.perf_counter())
        self.done, self.total = done, total
        self._emit()

    def _emit(self) -> None:
        if self.on_event:
            self.on_event(ProgressEvent(ACQUISITION, "influence", self.done, self.total,
                                        time.perf_counter() - self._start))

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self._emit()

    def __enter__(self) -> AcquisitionProgress:
        self._start = time.perf_counter()
        if self.on_event:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _acquire(snapshot: RunSnapshot, on_event: OnEvent | None, cancel: threading.Event | None,
             timeline: Timeline) -> pd.DataFrame:
    """Greedy acquisition by influence against RANDOM_ORDERS random orders, its wall time in
    the timeline as the greedy rounds (made first; privately, all in one session) and the random
    orders (plaintext retraining)."""
    rounds = snapshot.rounds
    progress = AcquisitionProgress(on_event, rounds * (1 + RANDOM_ORDERS))
    start = time.perf_counter()
    with progress:
        acquired = market_acquisition(snapshot.seed, list(snapshot.market), rounds,
                                      random_orders=RANDOM_ORDERS, config=snapshot.config,
                                      cancel=cancel, progress=progress)
    end = time.perf_counter()
    greedy = progress.ended[rounds - 1] if len(progress.ended) >= rounds else end
    timeline.add(ACQUIRING, greedy - start, "influence", "greedy rounds", rounds)
    timeline.add(ACQUIRING, end - greedy, "", "random orders", rounds * RANDOM_ORDERS)
    return acquired


def run_appraisal(snapshot: RunSnapshot, on_event: OnEvent | None = None,
                  cancel: threading.Event | None = None,
                  on_results: Callable[[RunOutcome], None] | None = None) -> RunOutcome:
    """Appraise the snapshot's market: ground truth, every appraiser (``on_results`` hears each
    one's rows as it finishes; in bit mode each with the snapshot's threshold), prices, then
    (value mode) greedy acquisition by influence against random, reported round by round.
    The outcome's ``timeline`` holds each phase's wall seconds and what none of them holds
    ("other"), adding up to the run's wall time."""
    config, seed, market = snapshot.config, snapshot.seed, list(snapshot.market)
    progress = EventProgress(on_event, config.names) if on_event else None
    outcome = RunOutcome(snapshot, pd.DataFrame())
    timeline = Timeline().start()

    def partial(results: pd.DataFrame, appraisal: Appraisal | None = None) -> None:
        outcome.results = results
        if appraisal is not None and appraisal.account is not None:
            outcome.accounts = {**outcome.accounts, appraisal.appraiser: appraisal.account}
        if on_results:
            with timeline.phase(LIVE):  # the dashboard draws the rows so far
                on_results(outcome)

    private = config.real_parties
    warm = contextlib.ExitStack()
    with timeline.phase(PROCESSES, part="warm pool started") if private \
            else contextlib.nullcontext():
        warm.enter_context(config.warm_processes())  # they import during the ground truth
    with warm:
        with timeline.phase(GROUND_TRUTH, count=len(market)):
            utilities = market_utilities(seed, market, progress, cancel)
        partial(appraise_market(seed, market, snapshot.configs(), utilities, progress, cancel,
                                on_appraisal=partial, timeline=timeline))
        with timeline.phase(PRICES):
            outcome.priced = priced(outcome.results, snapshot)
        if snapshot.rounds:
            outcome.acquisition = _acquire(snapshot, on_event, cancel, timeline)
        closing = time.perf_counter()
    if private:
        timeline.add(PROCESSES, time.perf_counter() - closing, part="warm pool stopped")
    if on_event:
        on_event(ProgressEvent(ACQUISITION, None, 1, 1))
    timeline.stop()
    outcome.timeline = timeline.frame()
    return outcome


def buy_within_budget(snapshot: RunSnapshot, budget: float, on_event: OnEvent | None = None,
                      cancel: threading.Event | None = None) -> pd.DataFrame:
    """The budgeted buyer on a run's market, with the run's seed model and settings: the
    sellers ask by explorer.asks' model (its defaults, random state 0), greedy buys by
    influence per price, beside RANDOM_ORDERS random orders and the oracle ("auto"); a
    ``budgeted_acquisition`` frame."""
    check_absorbs(snapshot.seed.family)
    if not snapshot.rounds:
        raise ExplorerError("the budgeted buyer buys by influence value per price: run with "
                            "influence among the appraisers and values revealed first.")
    market = list(snapshot.market)
    progress = EventProgress(on_event, ()) if on_event else None
    return budgeted_acquisition(snapshot.seed, market, asking_prices(market), budget,
                                config=snapshot.config, random_orders=RANDOM_ORDERS,
                                cancel=cancel, progress=progress)


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


def appraise_upload(filename: str, content: bytes, task_name: str, task: Task, seed: AnySeed,
                    config: AppraiserConfig, backend: str, on_event: OnEvent | None = None,
                    cancel: threading.Event | None = None,
                    threshold_sd: float = PRICE_THRESHOLD_SD) -> UploadOutcome:
    """Appraise one candidate file (CSV or NPZ in the task's raw units) as the command line's
    ``appraise --candidate-file`` does; in bit mode against each appraiser's own-data threshold
    for a candidate of the file's size (as a run's)."""
    name = os.path.basename(filename) or "candidate.csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)  # errors then name the user's own file
        with open(path, "wb") as f:
            f.write(content)
        cand = candidate_from_file(path, task, label=filename)
    snapshot = RunSnapshot.take(task_name, task, seed, [cand], config, rate=0.0,
                                threshold_sd=threshold_sd)
    progress = EventProgress(on_event, config.names) if on_event else None
    frame = appraise_market(seed, [cand], snapshot.configs(), progress=progress,
                            cancel=cancel)
    return UploadOutcome(filename, cand.size, task_name, backend, frame, snapshot.thresholds)


def attack_curves(seed: AnySeed, attacker: str, defences: tuple[str, ...],
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


def candidate_from_file(path: str, task: Task, label: str | None = None) -> Candidate:
    """A user's candidate file (CSV with the task's feature columns and a label column, or NPZ
    with X and y, in the task's raw units) as a standardised Candidate of the task's market;
    ``label`` names it in the results (the path by default)."""
    X_raw, y = read_candidate_file(path, task.feature_names, task.class_names,
                                   mean=task.mean, scale=task.scale)
    return Candidate(0, task.standardise(X_raw), y, "user", float("nan"),
                     {"file": str(label if label is not None else path)})


def compare_models(task: Task, market: Sequence[Candidate], config: AppraiserConfig,
                   hidden: tuple[int, ...] = DEFAULTS["hidden"],
                   activation: str = DEFAULTS["activation"],
                   models: Sequence[str] = MODELS, on_event: OnEvent | None = None,
                   cancel: threading.Event | None = None) -> pd.DataFrame:
    """The dashboard's lesson "Does influence hold for a neural network?": the same market
    under each seed-model family of ``models`` (a network of ``hidden`` widths and
    ``activation``, each family at the task's default lam), appraised in plaintext by the
    configuration's appraisers that family defines (``experiments.compare_seed_models``); the
    command line's ``appraise --model`` gives each model's rows and rho lines."""
    progress = EventProgress(on_event, config.names) if on_event else None
    choices = [SeedChoice(model, hidden, activation) for model in models]
    return compare_seed_models(task, market, choices, config.with_(backend="plaintext"),
                               progress, cancel)
