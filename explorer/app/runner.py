"""The background thread that runs one of the dashboard's jobs (explorer.jobs) at a time, with
its Run/Cancel buttons and a progress bar fed by structured events.
"""

from __future__ import annotations

import html
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as w

from explorer.errors import Cancelled, ExplorerError
from explorer.progress import ACQUISITION, APPRAISE, ENCRYPTED, GROUND_TRUTH, ProgressEvent

# widget updates at most this often (heartbeats arrive ~10 times a second from three processes)
MIN_UPDATE_SECONDS = 0.1


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
