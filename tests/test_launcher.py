"""explorer.mpc.launcher: real party processes, the TTP dealer, the session key, failures,
stalls, warm processes and cleanup. Party functions live in ``tests/mpc_parties.py``, which the
party processes import through PYTHONPATH."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import mpc_parties as mp
import pytest
import torch

from explorer.mpc.crypten_compat import MPCConfig, load_crypten
from explorer.mpc.launcher import run_parties, warm_parties
from explorer.mpc.runs import LaunchCancelled, LaunchError, LaunchResult, LaunchTimeout
from explorer.mpc.simulated import run_simulated

A = torch.tensor([0.5, -1.25, 2.0, 3.5], dtype=torch.float64)  # party 0's vector
B = torch.tensor([1.5, 0.75, -2.25, 0.125], dtype=torch.float64)  # party 1's vector
DOT = float(A @ B)  # -4.25
SUM = float((A + B).sum())  # 4.875
TOL = 1e-3  # 16 fractional bits: each product is off by a few 2^-16 at most


pytestmark = pytest.mark.usefixtures("party_functions_importable")


# --------------------------------------------------------------------------- leak checks


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def _state(pid: int) -> str | None:
    """State letter of ``pid`` ("Z" = zombie), None if it does not exist."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.fixture(scope="module", autouse=True)
def private_temporary_directory(tmp_path_factory):
    """The launcher's store directories go where only this module looks, so another run's
    sessions on the same machine cannot pass for leftovers of these."""
    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("sessions"))
    yield
    tempfile.tempdir = before


def _leftovers(children_before: set[int], pids: Iterable[int]) -> list[str]:
    problems = [f"child {pid} [{state}] {_cmdline(pid)}"
                for pid, state in mp.children_of(os.getpid()).items()
                if pid not in children_before]
    problems += [f"pid {pid} in process group {pgrp}: {_cmdline(pid)}"
                 for pid, state, _, pgrp in mp.processes()
                 if pgrp in set(pids) and state not in ("Z", "X")]
    stores = list(Path(tempfile.gettempdir()).glob("appraisal-session-*"))
    problems += [f"store directory {p} left behind" for p in stores]
    return problems


def assert_nothing_left(children_before: set[int], pids: Iterable[int],
                        grace: float = 2.0) -> None:
    """No new child (zombies included: the launcher must reap), no live process in the
    parties' process groups, no store directory. ``grace`` only lets SIGKILL take effect."""
    pids = list(pids)
    assert pids, "the launcher reported no pids"
    deadline = time.monotonic() + grace
    while (problems := _leftovers(children_before, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not problems, problems


@pytest.fixture
def children_before() -> set[int]:
    return set(mp.children_of(os.getpid()))


def _run_checked(*args, **kwargs) -> LaunchResult:
    before = set(mp.children_of(os.getpid()))
    res = run_parties(*args, **kwargs)
    assert_nothing_left(before, res.pids.values())
    return res


@pytest.fixture(scope="module")
def tfp_run() -> LaunchResult:
    """Two parties, TFP provider, communication accounting on."""
    return _run_checked(mp.dot_party, {0: A, 1: B}, config=MPCConfig(verbose=True), timeout=90)


@pytest.fixture(scope="module")
def ttp_run() -> LaunchResult:
    """Two parties plus the TTP dealer."""
    return _run_checked(mp.dot_party, {0: A, 1: B}, config=MPCConfig(provider="TTP"),
                        timeout=90)


# --------------------------------------------------------------------------- working runs


def test_two_parties_dot_product_and_sum(tfp_run: LaunchResult) -> None:
    assert set(tfp_run.pids) == {"model owner", "data owner"}
    for rank, result in enumerate(tfp_run.results):
        assert result["dot"] == pytest.approx(DOT, abs=TOL), rank
        assert result["sum"] == pytest.approx(SUM, abs=TOL), rank
    assert tfp_run.results[0]["dot"] == tfp_run.results[1]["dot"]
    pids = {r["pid"] for r in tfp_run.results}
    assert pids == set(tfp_run.pids.values()) and os.getpid() not in pids


def test_ttp_dealer_run(ttp_run: LaunchResult) -> None:
    assert set(ttp_run.pids) == {"model owner", "data owner", "dealer"}
    assert len(ttp_run.results) == 2 and ttp_run.dealer["bytes"] > 0  # its wire count
    for rank, result in enumerate(ttp_run.results):
        assert result["dot"] == pytest.approx(DOT, abs=TOL), rank
    assert ttp_run.pids["dealer"] in ttp_run.results[0]["siblings_listen"]


def test_communication_stats_with_verbose(tfp_run: LaunchResult) -> None:
    for result in tfp_run.results:
        assert result["comm"]["rounds"] > 0 and result["comm"]["bytes"] > 0, result["comm"]
    # control: CrypTen counts only when communicator.verbose is set, so the numbers above
    # show that the configuration reached the party processes
    quiet = _run_checked(mp.dot_party, {0: A, 1: B}, timeout=60)
    for result in quiet.results:
        assert result["comm"]["rounds"] == 0 and result["comm"]["bytes"] == 0, result["comm"]


def test_listening_detector_sees_wildcard_sockets() -> None:
    """Self-check for the loopback test: a socket on 0.0.0.0 is reported as such."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert f"0.0.0.0:{port}" in mp.listening_addresses(os.getpid())


@pytest.mark.parametrize("run", ["tfp_run", "ttp_run"])
def test_every_listening_socket_is_loopback(run: str, request: pytest.FixtureRequest) -> None:
    """Rendezvous is a file store in a private directory; gloo listens on loopback only."""
    res: LaunchResult = request.getfixturevalue(run)
    seen: dict[int, list[str]] = {}
    for result in res.results:
        seen.setdefault(result["pid"], []).extend(result["listen"])
    for pid, addresses in res.results[0]["siblings_listen"].items():
        seen.setdefault(pid, []).extend(addresses)
    addresses = [a for pid in res.pids.values() for a in seen.get(pid, [])]
    assert addresses
    assert not [a for a in addresses if not a.startswith("127.0.0.1:")], seen


def test_warm_processes_each_serve_one_session(children_before: set[int]) -> None:
    with warm_parties(size=2):
        time.sleep(1.0)  # let the pool start
        asked = time.time()
        first = run_parties(mp.warm_party, {0: "owner's", 1: "data's"}, timeout=90)
        second = run_parties(mp.warm_party, {0: 0, 1: 1}, timeout=90)
    # started before the session was asked for, each process got only its own payload ...
    assert all(r["started"] < asked for r in first.results)
    assert [r["payload"] for r in first.results] == ["owner's", "data's"]
    # ... and no process served two sessions
    assert not {r["pid"] for r in first.results} & {r["pid"] for r in second.results}
    assert not any(r["leakage imported"] for r in first.results)
    assert_nothing_left(children_before, [*first.pids.values(), *second.pids.values()])


def test_warm_processes_import_the_preloaded_modules_first(children_before: set[int]) -> None:
    # what a payload's unpickling would import costs seconds if it waits for the payload
    with warm_parties(size=2, preload=("explorer.leakage",)):
        res = run_parties(mp.warm_party, {0: 0, 1: 1}, timeout=90)
    assert all(r["leakage imported"] for r in res.results)
    assert_nothing_left(children_before, res.pids.values())


def test_heartbeats_carry_the_bytes_sent_so_far(children_before: set[int]) -> None:
    seen: list[int] = []
    res = run_parties(mp.sending_party, {0: 100_000, 1: 100_000}, timeout=90,
                      on_wait=lambda elapsed, up, sent: seen.append(sent))
    total = sum(res.results)
    assert total >= 100_000 * 8  # the reveal alone sends each share
    assert seen == sorted(seen)  # a running count
    assert seen[-1] == total  # heard during the parties' last second, before they return
    assert_nothing_left(children_before, res.pids.values())


def test_a_party_holds_the_configuration_as_plain_attributes(children_before: set[int]) -> None:
    res = run_parties(mp.frozen_config_party, {0: None, 1: None}, timeout=90)
    for got in res.results:
        assert got["type"] == "SimpleNamespace"
        # an override holds inside its block only, and a key it added goes with it
        assert (got["before"], got["inside"], got["after"]) == (8, (3, 5), 8)
        assert not got["added kept"]
        assert got["sigmoid"] == pytest.approx([0.5, 0.8808], abs=2e-3)
    assert_nothing_left(children_before, res.pids.values())


# --------------------------------------------------------------------------- failures


def test_party_raises_fails_fast_and_cleans_up(children_before: set[int]) -> None:
    t0 = time.monotonic()
    with pytest.raises(LaunchError) as caught:
        run_parties(mp.boom_party, {0: None, 1: None}, timeout=90)
    err = caught.value
    assert time.monotonic() - t0 < 30
    assert err.party == "data owner" and str(err) == "boom"
    assert isinstance(err.original, ValueError)
    assert_nothing_left(children_before, err.pids.values())


def test_a_stopped_party_is_named_within_the_stall_time(children_before: set[int]) -> None:
    t0 = time.monotonic()
    with pytest.raises(LaunchError, match=r"the data owner failed: its process \(pid \d+\) "
                       r"stopped responding") as caught:
        run_parties(mp.stop_party, {0: None, 1: None}, timeout=300, stall_timeout=5)
    assert time.monotonic() - t0 < 60
    assert_nothing_left(children_before, caught.value.pids.values())


def test_hanging_party_and_its_grandchild_killed_at_timeout(children_before: set[int],
                                                            tmp_path: Path) -> None:
    marker = f"{1000 + time.time() % 1000:.4f}"  # unique `sleep` argument
    pid_file = tmp_path / "grandchild.pid"
    with warm_parties(size=2):
        time.sleep(1.0)
        with pytest.raises(LaunchTimeout) as caught:
            run_parties(mp.hang_party, {0: None, 1: (marker, str(pid_file))}, timeout=8.0)
    err = caught.value
    assert "data owner" in str(err) and isinstance(err, TimeoutError)
    assert pid_file.exists(), "party 1 never started its grandchild"
    grandchild = int(pid_file.read_text())
    assert_nothing_left(children_before, err.pids.values())
    assert _state(grandchild) in (None, "Z"), f"grandchild {grandchild} survived"


def test_party_exit_reported(children_before: set[int]) -> None:
    with pytest.raises(LaunchError, match="the data owner failed: its process ended with exit "
                                          "code 3") as caught:
        run_parties(mp.exit_party, {0: None, 1: None}, timeout=90)
    assert_nothing_left(children_before, caught.value.pids.values())


def test_cancel_stops_the_run(children_before: set[int]) -> None:
    cancel = threading.Event()
    threading.Timer(3.0, cancel.set).start()
    with pytest.raises(LaunchCancelled) as caught:
        run_parties(mp.hang_party, {0: None, 1: ("1", "/dev/null")}, timeout=90,
                    cancel=cancel)
    assert_nothing_left(children_before, caught.value.pids.values())


# --------------------------------------------------------------------------- in-process


def test_run_simulated_in_process_restores_state(monkeypatch: pytest.MonkeyPatch) -> None:
    crypten = load_crypten()
    import torch.distributed as dist

    monkeypatch.setenv("WORLD_SIZE", "7")  # a pre-existing value must come back
    monkeypatch.delenv("RENDEZVOUS", raising=False)  # an absent one must stay absent
    monkeypatch.delenv("RANK", raising=False)
    env_before = dict(os.environ)
    bits_before = crypten.cfg.encoder.precision_bits
    out = run_simulated(mp.simulated_party, (A, B), config=MPCConfig(precision_bits=20))
    assert out["pid"] == os.getpid()
    assert out["initialized"] and out["env_world_size"] == "1"
    assert (out["rank"], out["world_size"], out["comm_world_size"]) == (0, 1, 1)
    assert out["precision_bits"] == 20 != bits_before
    assert out["dot"] == pytest.approx(DOT, abs=TOL)
    assert not crypten.is_initialized()
    assert not (dist.is_available() and dist.is_initialized())
    assert crypten.cfg.encoder.precision_bits == bits_before
    assert dict(os.environ) == env_before
    again = run_simulated(mp.simulated_party, (A, B))
    assert again["dot"] == pytest.approx(DOT, abs=TOL) and not crypten.is_initialized()


def test_signal_names_in_exit_codes() -> None:
    from explorer.mpc.launcher import _signal_name

    assert _signal_name(-signal.SIGKILL) == " (killed by SIGKILL)" and _signal_name(3) == ""
