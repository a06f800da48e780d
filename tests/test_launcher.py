"""explorer.mpc.launcher: real party processes (spawn/fork), TTP dealer, failures, cleanup.

Ported from the mpc-lab prototype suite. Party functions live in ``tests/mpc_parties.py``
so that a spawned interpreter (which gets this process's ``sys.path``, including
``tests/``) can import them by reference.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mpc_parties as mp
import pytest
import torch

from explorer.mpc.crypten_compat import MPCConfig, load_crypten
from explorer.mpc.launcher import (
    LaunchResult,
    LaunchTimeout,
    PartyDied,
    PartyError,
    run_parties,
    run_simulated,
)

A = torch.tensor([0.5, -1.25, 2.0, 3.5], dtype=torch.float64)  # party 0's vector
B = torch.tensor([1.5, 0.75, -2.25, 0.125], dtype=torch.float64)  # party 1's vector
DOT = float(A @ B)  # -4.25
SUM = float((A + B).sum())  # 4.875
TOL = 1e-3  # 16 fractional bits: each product is off by a few 2^-16 at most


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


def _live_group_members(pgids: set[int]) -> dict[int, int]:
    """pid -> pgid of every process that is not a zombie and belongs to one of ``pgids``.

    Zombies are dead; an orphaned one (e.g. a killed party's grandchild) waits for
    PID 1 to reap it, which takes a few seconds on this VM, so ``os.killpg(pgid, 0)``
    would report such a group as alive.
    """
    return {pid: pgrp for pid, state, _, pgrp in mp.processes()
            if pgrp in pgids and state not in ("Z", "X")}


def _listening_ports() -> set[int]:
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                if parts[3] == "0A":
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def _leftovers(children_before: set[int], pids: Iterable[int], port: int | None) -> list[str]:
    problems = [
        f"child {pid} [{state}] {_cmdline(pid)}"
        for pid, state in mp.children_of(os.getpid()).items()
        if pid not in children_before
    ]
    problems += [
        f"pid {pid} in process group {pgid}: {_cmdline(pid)}"
        for pid, pgid in _live_group_members(set(pids)).items()
    ]
    if port is not None and port in _listening_ports():
        problems.append(f"store port {port} still listening")
    return problems


def assert_nothing_left(
    children_before: set[int], pids: Iterable[int], port: int | None = None, grace: float = 2.0
) -> None:
    """No new child of this process (zombies included: the launcher must reap), no live
    process in the parties' process groups (each party leads its own group), store closed.
    ``grace`` only lets SIGKILL take effect; a real leak lives far longer."""
    pids = list(pids)
    assert pids, "the launcher reported no pids"
    deadline = time.monotonic() + grace
    while (problems := _leftovers(children_before, pids, port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not problems, problems


@pytest.fixture
def children_before() -> set[int]:
    return set(mp.children_of(os.getpid()))


def _run_checked(*args: Any, **kwargs: Any) -> LaunchResult:
    before = set(mp.children_of(os.getpid()))
    res = run_parties(*args, **kwargs)
    assert_nothing_left(before, res.info.pids.values(), res.info.port)
    return res


# --------------------------------------------------------------------------- runs shared by tests


@pytest.fixture(scope="module")
def tfp_run() -> LaunchResult:
    """Two spawned parties, default (TFP) provider, communication accounting on."""
    return _run_checked(
        mp.dot_party, {0: A, 1: B}, config=MPCConfig(verbose=True), timeout=90, start_method="spawn"
    )


@pytest.fixture(scope="module")
def ttp_run() -> LaunchResult:
    """Two spawned parties plus the spawned TTP dealer."""
    return _run_checked(
        mp.dot_party,
        {0: A, 1: B},
        config=MPCConfig(provider="TTP"),
        timeout=90,
        start_method="spawn",
    )


# --------------------------------------------------------------------------- 1-3, 7: working runs


def test_import_of_party_module_is_by_reference() -> None:
    # what a spawned child will import: the module, not this test file
    assert mp.dot_party.__module__ == "mpc_parties"
    assert str(Path(mp.__file__).parent) in [str(Path(p).resolve()) for p in sys.path if p]


def test_two_parties_dot_product_and_sum(tfp_run: LaunchResult) -> None:
    assert set(tfp_run.info.pids) == {"party0", "party1"}
    assert tfp_run.info.start_method == "spawn"
    for rank, result in enumerate(tfp_run.results):
        assert result["dot"] == pytest.approx(DOT, abs=TOL), rank
        assert result["sum"] == pytest.approx(SUM, abs=TOL), rank
    # one reveal, one value: both parties opened the same shares
    assert tfp_run.results[0]["dot"] == tfp_run.results[1]["dot"]
    # really two processes, neither of them this one
    pids = {r["pid"] for r in tfp_run.results}
    assert pids == set(tfp_run.info.pids.values()) and os.getpid() not in pids


def test_ttp_dealer_run(ttp_run: LaunchResult) -> None:
    assert set(ttp_run.info.pids) == {"party0", "party1", "dealer"}
    assert len(set(ttp_run.info.pids.values())) == 3
    assert len(ttp_run.results) == 2  # the dealer reports no result
    for rank, result in enumerate(ttp_run.results):
        assert result["dot"] == pytest.approx(DOT, abs=TOL), rank
        assert result["sum"] == pytest.approx(SUM, abs=TOL), rank
    # the dealer was alive and serving while party 0 computed (it is party 0's sibling)
    assert ttp_run.info.pids["dealer"] in ttp_run.results[0]["siblings_listen"]


def test_communication_stats_with_verbose(tfp_run: LaunchResult) -> None:
    for result in tfp_run.results:
        assert result["comm"]["rounds"] > 0 and result["comm"]["bytes"] > 0, result["comm"]
    # control: CrypTen only counts when communicator.verbose is set, so the non-zero
    # numbers above show the config reached the party processes (fork: fast, same path)
    quiet = _run_checked(mp.dot_party, {0: A, 1: B}, timeout=60, start_method="fork")
    assert quiet.results[0]["dot"] == pytest.approx(DOT, abs=TOL)
    for result in quiet.results:
        assert result["comm"]["rounds"] == 0 and result["comm"]["bytes"] == 0, result["comm"]


def test_listening_detector_sees_wildcard_sockets() -> None:
    """Self-check for the loopback test: a socket on 0.0.0.0 is reported as such."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert f"0.0.0.0:{port}" in mp.listening_addresses(os.getpid())
    assert f"0.0.0.0:{port}" not in mp.listening_addresses(os.getpid())


@pytest.mark.parametrize("run", ["tfp_run", "ttp_run"])
def test_every_listening_socket_is_loopback(run: str, request: pytest.FixtureRequest) -> None:
    res: LaunchResult = request.getfixturevalue(run)
    # party r reports its own sockets; party 0 also those of its siblings (incl. the dealer)
    seen: dict[int, list[str]] = {}
    for result in res.results:
        seen.setdefault(result["pid"], []).extend(result["listen"])
    for pid, addresses in res.results[0]["siblings_listen"].items():
        seen.setdefault(pid, []).extend(addresses)
    for label, pid in res.info.pids.items():
        assert seen.get(pid), f"{label}: no listening socket seen (gloo listens per peer)"
    addresses = [a for pid in res.info.pids.values() for a in seen[pid]]
    not_loopback = [a for a in addresses if not a.startswith("127.0.0.1:")]
    assert not not_loopback, (not_loopback, seen)


# --------------------------------------------------------------------------- 4-6: failures


def test_party_raises_fails_fast_and_cleans_up(children_before: set[int]) -> None:
    t0 = time.monotonic()
    with pytest.raises(PartyError) as caught:
        run_parties(mp.boom_party, {0: None, 1: None}, timeout=90, start_method="spawn")
    elapsed = time.monotonic() - t0
    err = caught.value
    # party 0 is stuck in a gloo recv (30 min default timeout): the launcher must not wait
    assert elapsed < 30, elapsed
    assert err.rank == 1 and err.label == "party1"
    assert err.exc_type is not None and err.exc_type.endswith("ValueError"), err.exc_type
    assert "boom" in (err.exc_message or "") and "boom" in str(err)
    assert "boom_party" in (err.remote_traceback or "")
    assert isinstance(err.original, ValueError)
    assert err.info is not None and set(err.info.pids) == {"party0", "party1"}
    assert_nothing_left(children_before, err.info.pids.values(), err.info.port)


def test_hanging_party_and_its_grandchild_killed_at_timeout(
    children_before: set[int], tmp_path: Path
) -> None:
    # fork: the parties reach the hang within well under a second, so the 5 s timeout
    # reliably catches party 1 *after* it started its grandchild (spawn needs ~4-5 s
    # of startup on this machine); the kill path (process groups) is the same.
    marker = f"{1000 + time.time() % 1000:.4f}"  # unique `sleep` argument
    pid_file = tmp_path / "grandchild.pid"
    t0 = time.monotonic()
    with pytest.raises(LaunchTimeout) as caught:
        run_parties(
            mp.hang_party, {0: None, 1: (marker, str(pid_file))}, timeout=5.0, start_method="fork"
        )
    elapsed = time.monotonic() - t0
    err = caught.value
    assert 5.0 <= elapsed < 12.0, elapsed
    assert isinstance(err, TimeoutError) and "party1" in str(err)
    assert pid_file.exists(), "party 1 never started its grandchild"
    grandchild = int(pid_file.read_text())
    assert err.info is not None
    # the grandchild is in party 1's process group, so this covers it too
    assert_nothing_left(children_before, err.info.pids.values(), err.info.port)
    assert _state(grandchild) in (None, "Z"), f"grandchild {grandchild} survived"
    for entry in os.listdir("/proc"):
        if entry.isdigit() and f"sleep {marker}" in _cmdline(int(entry)):
            assert _state(int(entry)) in (None, "Z"), f"`sleep {marker}` survived as {entry}"


def test_party_exit_reported_as_died(children_before: set[int]) -> None:
    with pytest.raises(PartyDied) as caught:
        run_parties(mp.exit_party, {0: None, 1: None}, timeout=90, start_method="spawn")
    err = caught.value
    assert err.rank == 1 and err.label == "party1" and err.exitcode == 3
    assert "party1 died with exit code 3" in str(err)
    assert err.info is not None
    assert_nothing_left(children_before, err.info.pids.values(), err.info.port)


# --------------------------------------------------------------------------- 8: in-process


def test_run_simulated_in_process_restores_state(monkeypatch: pytest.MonkeyPatch) -> None:
    crypten = load_crypten()
    import torch.distributed as dist

    monkeypatch.setenv("WORLD_SIZE", "7")  # a pre-existing value must come back
    monkeypatch.delenv("RENDEZVOUS", raising=False)  # an absent one must stay absent
    monkeypatch.delenv("RANK", raising=False)
    env_before = dict(os.environ)
    bits_before = crypten.cfg.encoder.precision_bits
    assert not crypten.is_initialized()

    out = run_simulated(mp.simulated_party, (A, B), config=MPCConfig(precision_bits=20))

    assert out["pid"] == os.getpid()  # ran here, not in a child
    assert out["initialized"] and out["env_world_size"] == "1"
    assert (out["rank"], out["world_size"], out["comm_world_size"]) == (0, 1, 1)
    assert out["precision_bits"] == 20 != bits_before
    assert out["dot"] == pytest.approx(DOT, abs=TOL)
    assert not crypten.is_initialized()
    assert not (dist.is_available() and dist.is_initialized())
    assert crypten.cfg.encoder.precision_bits == bits_before
    assert dict(os.environ) == env_before
    assert os.environ["WORLD_SIZE"] == "7" and "RENDEZVOUS" not in os.environ
    # crypten can be initialised again after the uninit
    again = run_simulated(mp.simulated_party, (A, B))
    assert again["dot"] == pytest.approx(DOT, abs=TOL) and not crypten.is_initialized()
