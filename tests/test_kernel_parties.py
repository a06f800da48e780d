"""explorer.mpc.launcher.PartySet: party processes that serve one session after another for a
dashboard kernel's life; reuse, payload isolation, cancel, stalls, killed processes, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import mpc_parties as mp
import numpy as np
import pytest
from test_launcher import DOT, TOL, A, B, _state, assert_nothing_left

from explorer.mpc.crypten_compat import MPCConfig
from explorer.mpc.launcher import kept_parties, kernel_parties, run_parties
from explorer.mpc.runs import LaunchCancelled, LaunchError

pytestmark = pytest.mark.usefixtures("party_functions_importable")
TTP = MPCConfig(provider="TTP")


@pytest.fixture(scope="module", autouse=True)
def private_temporary_directory(tmp_path_factory):
    """Store directories where only this module looks (as in test_launcher)."""
    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("sessions"))
    yield
    tempfile.tempdir = before


@pytest.fixture
def children_before() -> set[int]:
    return set(mp.children_of(os.getpid()))


def test_sessions_reuse_the_same_processes(children_before: set[int]) -> None:
    with kernel_parties() as party_set:
        first = run_parties(mp.dot_party, {0: A, 1: B}, config=TTP, timeout=90)
        # a TFP session with CrypTen's own counters on, then TTP with them off again: each
        # session's settings start from CrypTen's defaults, not from the last session's
        counted = run_parties(mp.dot_party, {0: A, 1: B}, config=MPCConfig(verbose=True),
                              timeout=90)
        second = run_parties(mp.dot_party, {0: A, 1: B}, config=TTP, timeout=90)
        pids = party_set.pids
    assert first.pids == second.pids and list(first.pids.values()) == pids
    assert counted.pids == {k: v for k, v in first.pids.items() if k != "dealer"}
    for run in (first, counted, second):
        assert [r["dot"] for r in run.results] == pytest.approx([DOT, DOT], abs=TOL)
        assert [r["pid"] for r in run.results] == pids[:2]
    assert all(r["comm"]["bytes"] > 0 for r in counted.results)
    assert all(r["comm"]["bytes"] == 0 for r in second.results)
    assert second.dealer["bytes"] == first.dealer["bytes"] > 0  # counted afresh each session
    assert_nothing_left(children_before, pids)


def test_each_process_only_ever_receives_its_own_partys_payloads(
        children_before: set[int]) -> None:
    with kernel_parties(size=2) as party_set:
        first = run_parties(mp.remembering_party, {0: "owner 1", 1: "data 1"}, timeout=90)
        second = run_parties(mp.remembering_party, {0: "owner 2", 1: "data 2"}, timeout=90)
        pids = party_set.pids
    assert [r["pid"] for r in second.results] == [r["pid"] for r in first.results] == pids
    assert [r["received"] for r in second.results] == [["owner 1", "owner 2"],
                                                        ["data 1", "data 2"]]
    assert all(r["product"] == pytest.approx(4.0, abs=TOL) for r in second.results)
    assert_nothing_left(children_before, pids)


def test_cancel_stops_the_session_and_the_set_replaces_its_processes(
        children_before: set[int]) -> None:
    with kernel_parties(size=2) as party_set:
        before = run_parties(mp.remembering_party, {0: 0, 1: 1}, timeout=90).pids
        cancel = threading.Event()
        threading.Timer(3.0, cancel.set).start()
        with pytest.raises(LaunchCancelled):
            run_parties(mp.hang_party, {0: None, 1: ("1", "/dev/null")}, timeout=90,
                        cancel=cancel)
        assert all(_state(pid) in (None, "Z") for pid in before.values())
        after = run_parties(mp.remembering_party, {0: 2, 1: 3}, timeout=90)
        assert not set(after.pids.values()) & set(before.values())
        assert [r["received"] for r in after.results] == [[2], [3]]  # fresh processes
        pids = party_set.pids
    assert_nothing_left(children_before, [*before.values(), *pids])


def test_a_stopped_party_is_named_and_the_set_rebuilt(children_before: set[int]) -> None:
    with kernel_parties(size=2) as party_set:
        with pytest.raises(LaunchError, match=r"the data owner failed: its process \(pid \d+\) "
                           r"stopped responding") as caught:
            run_parties(mp.stop_party, {0: None, 1: None}, timeout=300, stall_timeout=5)
        stalled = caught.value.pids
        after = run_parties(mp.remembering_party, {0: 0, 1: 1}, timeout=90)
        assert not set(after.pids.values()) & set(stalled.values())
        pids = party_set.pids
    assert_nothing_left(children_before, [*stalled.values(), *pids])


def test_a_failing_party_and_idle_parties_killed_or_stopped_between_sessions(
        children_before: set[int]) -> None:
    with kernel_parties() as party_set:
        run_parties(mp.remembering_party, {0: None, 1: None}, timeout=90)
        before = party_set.pids
        with pytest.raises(LaunchError) as caught:
            run_parties(mp.boom_party, {0: None, 1: None}, timeout=90)
        assert str(caught.value) == "boom"
        # the parties' processes are replaced in their places; the idle dealer keeps its own
        assert party_set.pids[2] == before[2] and not set(party_set.pids[:2]) & set(before)
        first = run_parties(mp.remembering_party, {0: 0, 1: 1}, timeout=90).pids
        os.kill(first["data owner"], signal.SIGKILL)  # between sessions (out of memory, say)
        time.sleep(0.5)
        second = run_parties(mp.remembering_party, {0: 2, 1: 3}, timeout=90)
        assert second.pids["model owner"] == first["model owner"]
        assert second.pids["data owner"] != first["data owner"]
        assert [r["received"] for r in second.results] == [[0, 2], [3]]
        os.kill(second.pids["model owner"], signal.SIGSTOP)  # stopped while idle
        time.sleep(0.5)
        third = run_parties(mp.remembering_party, {0: 4, 1: 5}, timeout=90)
        assert third.pids["model owner"] != second.pids["model owner"]
        assert [r["received"] for r in third.results] == [[4], [3, 5]]
        pids = party_set.pids
    assert_nothing_left(children_before, [*before, *first.values(), *second.pids.values(),
                                          *pids])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_processes_are_forked_share_their_imports_and_draw_their_own_randomness(
        children_before: set[int]) -> None:
    """Forked from the set's forker, each process holds little memory of its own (fresh, torch
    and CrypTen alone are ~160 MB private), and no two processes, nor two sessions after a
    replaced process, draw the same numbers from an inherited generator."""
    with kernel_parties(size=2) as party_set:
        first = run_parties(mp.private_memory_party, {0: None, 1: None}, timeout=90)
        forker = party_set.forker.pid
        assert [r["parent"] for r in first.results] == [forker, forker]
        assert all(r["private_mb"] < 80 for r in first.results), first.results
        os.kill(first.pids["data owner"], signal.SIGKILL)
        time.sleep(0.5)
        second = run_parties(mp.private_memory_party, {0: None, 1: None}, timeout=90)
        assert second.pids["data owner"] != first.pids["data owner"]
        draws = [r["draws"] for r in (*first.results, second.results[1])]
        for generator in range(3):  # torch, NumPy, Python
            assert len({tuple(d[generator]) for d in draws}) == 3, (generator, draws)
        # the forker ended (killed, say): its processes go with it; the next session starts
        # a new forker and new processes
        os.killpg(forker, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_state(p) not in (None, "Z") for p in second.pids.values()) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_state(p) in (None, "Z") for p in second.pids.values())
        third = run_parties(mp.remembering_party, {0: 0, 1: 1}, timeout=90)
        assert party_set.forker.pid != forker
        assert not set(third.pids.values()) & set(second.pids.values())
        assert [r["product"] for r in third.results] == pytest.approx([4.0, 4.0], abs=1e-3)
        pids = [*party_set.pids, party_set.forker.pid]
    assert_nothing_left(children_before, [forker, *first.pids.values(),
                                          *second.pids.values(), *pids])


def test_a_forker_that_cannot_start_is_named_in_a_sentence(children_before: set[int]) -> None:
    with kernel_parties(size=2, preload=["explorer.no_such_module"]) as party_set:
        with pytest.raises(LaunchError) as caught:
            run_parties(mp.remembering_party, {0: 0, 1: 1}, timeout=90)
        forker = party_set.forker.pid
    assert str(caught.value) == (f"the process that starts the party processes (pid {forker}) "
                                 f"ended with exit code 1 before starting them; its error, if "
                                 f"any, is printed above.")
    assert_nothing_left(children_before, [forker])


OWNER = textwrap.dedent("""
    import os, sys, time
    import mpc_parties as mp
    from explorer.mpc.launcher import keep_parties, run_parties
    party_set = keep_parties(size=2)
    run_parties(mp.remembering_party, {0: 0, 1: 1}, timeout=90)
    print(*party_set.pids, flush=True)
    if sys.argv[1] == "killed":
        time.sleep(1000)
    sys.stdin.readline()  # exit only once the test has seen the set alive
""")


@pytest.mark.parametrize("how", ["exits", "killed"])
def test_the_set_ends_with_the_process_that_keeps_it(how: str) -> None:
    """At exit (atexit) or killed (the parent-death signal), a kernel takes its set along."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, how], stdout=subprocess.PIPE,
                             stdin=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2 and all(_state(pid) not in (None, "Z") for pid in pids)
        if how == "killed":
            owner.kill()
        else:
            owner.stdin.write("\n")
            owner.stdin.flush()
        assert owner.wait(60) in (0, -signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_state(pid) not in (None, "Z") for pid in pids) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_state(pid) in (None, "Z") for pid in pids), pids
    finally:
        owner.kill()
        owner.wait()
    assert kept_parties() is None  # this test process never kept a set


def test_appraisal_sessions_on_the_set_match_fresh_processes(wdbc_seed, wdbc) -> None:
    """The session caches (the dealer's rehearsals, each party's draws) work with reused
    processes: the same values as fresh processes, the second session drawing ahead."""
    from appraising import configured

    from explorer.market import make_market
    from explorer.mpc.options import MPCOptions
    from explorer.mpc.session import PARTY_MODULES, run_session, session_inputs

    market = make_market(wdbc, "label-noise", 8, 30, max_level=0.5, random_state=5)
    appraiser = configured("influence", "crypten", mode="parties")[0].fit(wdbc_seed)
    spec, mo, do = session_inputs(appraiser, [(c.X, c.y) for c in market],
                                  MPCOptions(precision_bits=20, verify=True))
    fresh = run_session(spec, mo, do, timeout=120)
    with kernel_parties(preload=PARTY_MODULES) as party_set:
        first = run_session(spec, mo, do, timeout=120)
        pids = party_set.pids
        second = run_session(spec, mo, do, timeout=120)
        assert party_set.pids == pids and len(set(pids)) == 3  # the same three processes
    scale = np.abs(fresh.values).max()
    for got in (first, second):
        assert np.abs(got.values - fresh.values).max() <= 1e-3 * scale
        assert got.rounds == fresh.rounds
    assert second.reports[0].drawn_ahead > 0 and second.reports[1].drawn_ahead > 0
