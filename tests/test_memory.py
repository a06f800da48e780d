"""The memory budget per dashboard page (explorer.memory): the process tree's memory is measured
from /proc (shared pages once), a private run that would not fit is refused with one sentence
before it starts, one that outgrows the budget is stopped with one sentence, and a generous
budget lets runs through."""

from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from explorer import memory
from explorer.config import AppraiserConfig
from explorer.errors import Cancelled, ExplorerError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="memory is read from Linux's /proc")


@pytest.mark.parametrize("text", ["lots", "-5", "0", "inf", "nan"])
def test_a_budget_that_is_not_a_positive_number_is_refused_with_a_sentence(text):
    with pytest.raises(ExplorerError, match="must be a positive number of MB"):
        memory.budget_mb({memory.BUDGET_ENV: text})


def test_no_budget_unless_one_is_set():
    assert memory.budget_mb({}) is None
    assert memory.budget_mb({memory.BUDGET_ENV: " "}) is None
    assert memory.budget_mb({memory.BUDGET_ENV: "1500"}) == 1500.0


def test_the_tree_counts_the_children_too():
    alone = memory.tree_mb()
    child = subprocess.Popen([sys.executable, "-c", "import time; x = b'x' * (60 << 20); "
                              "print('ready', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert child.pid in memory.children_of(memory.os.getpid())
        assert memory.process_mb(child.pid) >= 60
        assert memory.tree_mb() >= alone + 60
    finally:
        child.kill()
        child.wait()
    assert memory.process_mb(child.pid) == 0.0  # gone: nothing, not an error


SHARED = """
import os, sys, time
x = bytearray(os.urandom(1 << 20)) * 100  # 100 MB written: resident, private to this process
if os.fork() == 0:  # the fork shares all of it (copy-on-write) until it writes
    time.sleep(60)
    os._exit(0)
print("ready", flush=True)
time.sleep(60)
"""


def test_pages_a_fork_shares_are_counted_once():
    """A kept party set's processes share their forker's imports: the tree's memory counts
    those pages once (proportional set size), not once per process as VmRSS would."""
    parent = subprocess.Popen([sys.executable, "-c", SHARED], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        (child,) = memory.children_of(parent.pid)
        resident = sum(rss(p) for p in (parent.pid, child))
        assert resident >= 200  # each holds the 100 MB...
        assert 100 <= memory.tree_mb(parent.pid) < 140  # ...which the machine holds once
        assert memory.process_mb(child) < 70  # half of what it shares, and little of its own
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def test_a_run_that_would_pass_the_budget_is_refused_before_it_starts():
    now = memory.tree_mb()
    with pytest.raises(memory.MemoryBudgetExceeded) as refused:
        memory.check_start(now / 2, processes=0)
    sentence = str(refused.value)
    assert sentence.startswith("This run was not started: this page's kernel uses ")
    assert memory.BUDGET_ENV in sentence and sentence.count(".") <= 2  # one sentence
    # the party processes it would start count: three of them do not fit in 100 MB more
    with pytest.raises(memory.MemoryBudgetExceeded, match="3 party processes would add"):
        memory.check_start(now + 100, processes=3)
    assert memory.check_start(now + 4 * memory.PARTY_MB, processes=3) > now


def test_party_processes_follow_the_backend():
    def config(private, mode="parties", provider="TTP"):
        if not private:
            return AppraiserConfig()
        return AppraiserConfig.from_options(backend="crypten", mode=mode, provider=provider)
    assert memory.party_processes(config(False)) == 0
    assert memory.party_processes(config(True, "simulated", "TFP")) == 0
    assert memory.party_processes(config(True, "parties", "TFP")) == 2
    assert memory.party_processes(config(True, "parties", "TTP")) == 3


def test_a_run_that_outgrows_the_budget_is_stopped_with_a_sentence():
    cancel = threading.Event()
    budget = memory.tree_mb() + 40
    with (pytest.raises(memory.MemoryBudgetExceeded) as stopped,
          memory.MemoryWatch(budget, cancel, interval=0.05) as watch):
        grown = b"x" * (200 << 20)  # a run that grows by 200 MB
        assert cancel.wait(10), "the watcher did not cancel the run"
        del grown
        raise Cancelled()  # what a job does when its cancel event is set
    assert str(stopped.value).startswith("This run was stopped: this page's kernel and its "
                                         "party processes reached ")
    assert watch.peak_mb > budget


def test_a_generous_budget_lets_the_run_through():
    cancel = threading.Event()
    with memory.MemoryWatch(memory.tree_mb() + 2000, cancel, interval=0.05) as watch:
        time.sleep(0.3)
    assert not cancel.is_set() and watch.peak_mb > 0


def test_the_dashboard_shows_the_budget_sentence_and_runs_under_a_generous_one(monkeypatch):
    from test_app import ready_app

    app = ready_app()
    c = app.controls
    c["candidates"].value = 6
    c["appraisers"].value = ("influence",)
    c["backend"].value = "simulated"  # private, in the kernel: fast
    monkeypatch.setenv(memory.BUDGET_ENV, "1")
    app.run()
    assert app.wait(60)
    assert "This run was not started: this page's kernel uses" in html.unescape(app.error.value)
    assert app.status.value == "stopped" and not app.run_button.disabled

    monkeypatch.setenv(memory.BUDGET_ENV, "100000")
    app.run()
    assert app.wait(180)
    assert app.error.value == "" and app.status.value.startswith("done")

    c["backend"].value = "plaintext"  # no budget for plaintext runs: nothing to refuse
    monkeypatch.setenv(memory.BUDGET_ENV, "1")
    app.run()
    assert app.wait(60)
    assert app.error.value == "" and app.status.value.startswith("done")
