"""Progress of a job, as structured events an interface shows without parsing text.

The lowest layer beside explorer.errors: the appraisers' runners, the experiments, the jobs and
the widgets all speak it. A plain ``Progress`` is ``callable(phase, done, total)``; an
``EventProgress`` turns those calls, and the runners' own events, into ``ProgressEvent``s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

Progress = Callable[[str, int, int], None]  # (phase, done, total)

# The phases of a job an interface shows (ProgressEvent.phase).
GROUND_TRUTH, APPRAISE, ENCRYPTED, ACQUISITION = ("ground truth", "appraise",
                                                  "encrypted session", "acquisition")


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a job: the phase, the appraiser it concerns (None for the ground truth),
    candidates done of total, and during an encrypted session its elapsed seconds, how many of
    its processes are up and the bytes they have sent on the wire so far (None in simulated
    mode, where nothing is sent)."""

    phase: str
    appraiser: str | None
    done: int
    total: int
    elapsed: float | None = None
    parties_up: int | None = None
    bytes_sent: int | None = None

    @property
    def text(self) -> str:
        """The event as one line (what a plain ``Progress`` receives as its phase)."""
        who = self.appraiser or self.phase
        if self.phase == ENCRYPTED:
            sent = "" if not self.bytes_sent else f", {self.bytes_sent / 1e6:.1f} MB sent"
            return f"{who}: encrypted session, {self.elapsed or 0.0:.1f} s{sent}"
        return who


class EventProgress:
    """A ``Progress`` that hands structured events to ``on_event``. Code that knows only
    ``(phase, done, total)`` (the experiments name the ground truth or an appraiser) is turned
    into the same events; the runners send theirs directly (``report_progress``)."""

    def __init__(self, on_event: Callable[[ProgressEvent], None], appraisers: Iterable[str]):
        self.on_event, self.appraisers = on_event, frozenset(appraisers)

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase in self.appraisers:
            self.on_event(ProgressEvent(APPRAISE, phase, done, total))
        else:
            self.on_event(ProgressEvent(phase, None, done, total))

    def event(self, event: ProgressEvent) -> None:
        self.on_event(event)


def report_progress(progress: Progress | None, event: ProgressEvent) -> None:
    """Send ``event`` as an event to an ``EventProgress``, as one line to any other Progress."""
    if progress is None:
        return
    if isinstance(progress, EventProgress):
        progress.event(event)
    else:
        progress(event.text, event.done, event.total)
