"""A memory budget per dashboard page: one server shared by a class must not be killed because
one student's private run outgrew the machine.

A page's kernel and the party processes it starts form one process tree. Before a private run
starts, ``guard`` refuses it when the tree's memory now, plus what the run's party
processes will add, would pass the budget; while it runs, a watcher samples the tree and cancels
the run when it passes the budget. Either way the user reads one sentence (a
``MemoryBudgetExceeded``) instead of losing the server.

The budget, in MB, is the environment variable EXPLORER_MEMORY_BUDGET_MB (binder/voila.py sets it
for the kernels of `make demo` and Binder; unset or empty means no budget). Memory is each
process's proportional set size from /proc (Pss in smaps_rollup: its private pages plus its
share of the pages it shares), summed over the tree: what the machine really gives the tree, and
what a pod's memory limit counts. Summed resident memory (VmRSS) would count the pages a kept
party set's processes share with the process they were forked from (torch, CrypTen) once per
process, three times too much. Where smaps_rollup is missing VmRSS is read (it errs on the safe
side); Linux only: elsewhere nothing is measured and nothing is refused.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping

from explorer.errors import Cancelled, ExplorerError

BUDGET_ENV = "EXPLORER_MEMORY_BUDGET_MB"
# What one party process (model owner, data owner or TTP dealer) of a kept set adds to the tree
# once it has run a WDBC session, its share of the forker (explorer.mpc.forker) included:
# 85-95 MB of its own plus a third of the forker's 190 MB measured, rounded up.
PARTY_MB = 160.0
SAMPLE_SECONDS = 0.5  # how often a running private run's tree is measured


class MemoryBudgetExceeded(ExplorerError):
    """A private run that would pass, or passed, the page's memory budget (the message says how
    much was used and how to get more)."""


def budget_mb(environ: Mapping[str, str] | None = None) -> float | None:
    """The budget per page in MB from EXPLORER_MEMORY_BUDGET_MB, or None when there is none."""
    text = (os.environ if environ is None else environ).get(BUDGET_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ExplorerError(f"{BUDGET_ENV} must be a positive number of MB (e.g. 1500), "
                            f"not {text!r}.")
    return value


def process_mb(pid: int) -> float:
    """One process's proportional set size in MB (VmRSS where the kernel has no smaps_rollup;
    0 if it is gone or /proc cannot say)."""
    for path, field in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(field):
                        return int(line.split()[1]) / 1024  # kB
        except (OSError, ValueError, IndexError):
            continue
    return 0.0


def children_of(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren...), from /proc."""
    below: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z":  # a zombie holds no memory
            below.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in below.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_mb(pid: int | None = None) -> float:
    """Memory in MB (proportional set sizes) of ``pid`` (this process by default) and every
    process below it."""
    pid = os.getpid() if pid is None else pid
    return sum(process_mb(p) for p in (pid, *children_of(pid)))


def party_processes(config) -> int:
    """How many processes a run of this AppraiserConfig starts: none in plaintext or simulated
    mode (CrypTen runs in the kernel), two parties with real parties, and the TTP dealer."""
    if not config.real_parties:
        return 0
    return 3 if config.mpc.provider == "TTP" else 2


def check_start(budget: float | None, processes: int, pid: int | None = None) -> float:
    """Refuse (MemoryBudgetExceeded) a run that would start ``processes`` party processes when
    the tree of ``pid`` (this process) would pass ``budget`` MB; returns the projected MB.
    Party processes already running below ``pid`` (kept warm between runs) are counted as
    measured, not again."""
    pid = os.getpid() if pid is None else pid
    now = tree_mb(pid)
    more = max(0, processes - len(children_of(pid)))
    projected = now + more * PARTY_MB
    if budget is not None and projected > budget:
        parties = (f" and its {more} party processes would add about {more * PARTY_MB:.0f} MB"
                   if more else "")
        raise MemoryBudgetExceeded(
            f"This run was not started: this page's kernel uses {now:.0f} MB{parties}, more than "
            f"the {budget:.0f} MB each page may use on this server; choose the plaintext backend "
            f"or fewer candidates, or ask whoever runs the server to raise {BUDGET_ENV}.")
    return projected


class MemoryWatch:
    """While a run is inside this context, the tree's memory is sampled every ``interval``
    seconds; past ``budget`` MB the run's ``cancel`` event is set, and the run's Cancelled is
    turned into a MemoryBudgetExceeded that says why (a run that ended first keeps its results).
    ``peak_mb`` is the highest sample."""

    def __init__(self, budget: float, cancel: threading.Event, pid: int | None = None,
                 interval: float = SAMPLE_SECONDS):
        self.budget, self.cancel, self.interval = budget, cancel, interval
        self.pid = os.getpid() if pid is None else pid
        self.peak_mb = 0.0
        self.exceeded_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True,
                                        name="memory-budget")

    def _sample(self) -> None:
        while True:
            used = tree_mb(self.pid)
            self.peak_mb = max(self.peak_mb, used)
            if used > self.budget:
                self.exceeded_mb = used
                self.cancel.set()  # the run stops its party processes as on Cancel
                return
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, kind, error, trace) -> None:
        self._stop.set()
        self._thread.join()
        if self.exceeded_mb is not None and kind is not None and issubclass(kind, Cancelled):
            raise MemoryBudgetExceeded(
                f"This run was stopped: this page's kernel and its party processes reached "
                f"{self.exceeded_mb:.0f} MB, more than the {self.budget:.0f} MB each page may "
                f"use on this server; choose the plaintext backend or fewer candidates, or ask "
                f"whoever runs the server to raise {BUDGET_ENV}.") from error


def guard(config, cancel: threading.Event):
    """The context a dashboard job of AppraiserConfig ``config`` runs in: for a private run under
    a budget, checked now (MemoryBudgetExceeded if it would not fit) and watched while it runs;
    otherwise nothing."""
    budget = budget_mb()
    if budget is None or not getattr(config, "private", False):
        return contextlib.nullcontext()
    check_start(budget, party_processes(config))
    return MemoryWatch(budget, cancel)
