"""Where a run's wall time went: a ``Timeline`` records each phase's wall seconds as the run
makes it (ground truth, each appraiser's parts, prices, acquisition) and closes with an explicit
"other" row for whatever no phase measured, so that its rows add up to the run's wall time.

An appraiser's parts come from its ``Appraisal`` (explorer.appraisers.result): the plaintext
set-up, then in plaintext the computation, privately the sessions' inputs and each session's
wall time split as measured (processes up with their payloads, the offline phase before the
parties' clocks, the encrypted computation, and the rest: connecting, winding down).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator

import pandas as pd

from explorer.appraisers.result import Appraisal
from explorer.errors import AppraisalWarning, ExplorerError

TIMELINE_COLUMNS = ["phase", "appraiser", "part", "seconds", "count"]

# phases, in the order a run makes them
SETUP = "task and seed model"
GROUND_TRUTH = "ground truth"
APPRAISAL = "appraisal"
PRICES = "prices"
ACQUISITION = "acquisition"
LIVE = "live results"
PROCESSES = "party processes"
OTHER = "other"

# an appraiser's parts
FIT = "set-up"  # plaintext, on the model owner's side (e.g. v = H^-1 g_te)
COMPUTE = "computation"  # plaintext
INPUTS = "session inputs"  # plaintext: what each session is given
STARTUP = "start-up and handoff"
OFFLINE = "offline phase"
ENCRYPTED = "encrypted computation"
WIND = "session set-up and wind-down"  # CrypTen set up, parties connected, results back

# "other" may come out this far below zero (clock reads of different processes) before the
# timeline says its phases overlap
OVERLAP_SECONDS = 0.05


class Timeline:
    """A run's phases with their wall seconds, from ``start()`` to ``stop()``."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._start: float | None = None
        self.wall: float | None = None

    def start(self) -> Timeline:
        self._start, self.wall, self.rows = time.perf_counter(), None, []
        return self

    def stop(self) -> float:
        """End the run's clock; its wall seconds."""
        if self._start is None:
            raise ExplorerError("a timeline is stopped only after it was started.")
        self.wall = time.perf_counter() - self._start
        return self.wall

    def add(self, phase: str, seconds: float, appraiser: str = "", part: str = "",
            count: int = 1) -> None:
        """A measured span: ``seconds`` of wall time spent in ``phase`` (an appraiser's
        ``part`` of it), over ``count`` candidates, sessions or rounds."""
        self.rows.append({"phase": phase, "appraiser": appraiser, "part": part or phase,
                          "seconds": float(seconds), "count": int(count)})

    @contextlib.contextmanager
    def phase(self, phase: str, appraiser: str = "", part: str = "",
              count: int = 1) -> Iterator[None]:
        """Measure the wall seconds of the block as ``phase`` (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - start, appraiser, part, count)

    def add_appraisal(self, appraisal: Appraisal, fit_seconds: float, wall: float) -> None:
        """An appraiser's parts: ``fit_seconds`` of set-up, then its runner's measured parts,
        and the rest of its ``wall`` seconds (verification, accounting) as its "other"."""
        name, totals = appraisal.appraiser, appraisal.totals
        parts = [(FIT, fit_seconds, 1)]
        if appraisal.backend == "plaintext":
            parts.append((COMPUTE, float(appraisal.costs["seconds"].sum()), len(appraisal)))
        else:
            n = int(totals.get("sessions", 0))
            measured = totals["startup"] + totals["offline"] + totals["private"]
            parts += [(INPUTS, totals["prep"], n), (STARTUP, totals["startup"], n),
                      (OFFLINE, totals["offline"], n), (ENCRYPTED, totals["private"], n),
                      (WIND, totals["wall"] - measured, n)]
        parts.append((OTHER, wall - sum(s for _, s, _ in parts), 1))
        for part, seconds, count in parts:
            self.add(APPRAISAL, seconds, name, part, count)

    def frame(self) -> pd.DataFrame:
        """The tidy timeline: one row per measured span, in the order measured, and a last
        "other" row with the run's wall time no span holds, so the seconds add up to
        ``wall``. Spans that overlap (other below zero) are said in a warning."""
        if self.wall is None:
            raise ExplorerError("a timeline has a frame only once the run is stopped.")
        other = self.wall - sum(r["seconds"] for r in self.rows)
        if other < -OVERLAP_SECONDS:
            warnings.warn(f"the run's measured phases add up to {-other:.2f} s more than its "
                          f"wall time ({self.wall:.2f} s): some overlap.", AppraisalWarning,
                          stacklevel=2)
        rows = [*self.rows, {"phase": OTHER, "appraiser": "", "part": OTHER, "seconds": other,
                             "count": 1}]
        return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def wall_seconds(timeline: pd.DataFrame) -> float:
    """The run's wall seconds: the sum of its timeline's rows ("other" included)."""
    if not {"phase", "seconds"} <= set(timeline.columns) or \
            not (timeline["phase"] == OTHER).any():
        raise ExplorerError("a run's timeline has the columns phase and seconds and an "
                            "\"other\" row (explorer.timeline.Timeline.frame).")
    return float(timeline["seconds"].sum())
