"""Run CrypTen party code in real OS processes on this machine.

:func:`run_parties` runs the party function ``fn(rank, world_size, payload) -> result`` of
every party (and, for the TTP provider, the dealer) in its own OS process, each started with
``python -m explorer.mpc.party_process`` in its own process group and handed only its own payload
through a private pipe. The same function runs at world size 1 in this process with
explorer.mpc.simulated, and one party per machine with explorer.mpc.rendezvous.

What every run guarantees:

* **Who is in the session.** After ``crypten.init()`` and before anything is secret-shared,
  every process proves that it holds the session key (explorer.mpc.keys); a process whose proof
  fails stops everyone with a sentence about the session key. A run makes a fresh key unless
  given one, and its processes rendezvous through a file store in a private (0700) directory,
  so no local user can join or write it.
* **Liveness.** Each process sends a heartbeat to the launcher four times a second; one silent
  for ``stall_timeout`` seconds after its first beat (stopped, swapping, hung) fails the run
  naming it; starting up is bounded by the run's timeout. Gloo collectives time out ten
  seconds later, so the launcher names the silent process before its peers' waits give up.
* **Nothing left behind.** On success, failure, timeout or cancel every process group is killed
  and reaped and the store directory removed; the root cause is reported in one sentence.
* **Warm processes.** Inside ``with warm_parties():`` the launcher takes processes that have
  already imported torch and CrypTen from a pool (refilled in the background). Each still
  receives only its own payload, and serves exactly one session before exiting.
* **Kept processes.** While a :class:`PartySet` serves (``with kernel_parties():``, or
  ``keep_parties()`` for the rest of the process: a dashboard kernel), the same processes
  serve one session after another: each still receives only its own payload through its own
  pipe, with a fresh session key and store, and tears its CrypTen session down before the next
  boot. A failed, timed-out or cancelled session kills the processes it used, and the set
  starts new ones. They are forked from one process that imported torch and CrypTen once
  (explorer.mpc.forker), so they share that memory. Only for a process that holds both
  parties' data anyway (DESIGN.md §8).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from explorer.mpc.crypten_compat import (
    MPCConfig,
)
from explorer.mpc.forker import ForkedProcess, Forker
from explorer.mpc.keys import SessionKeyError, new_session_key
from explorer.mpc.party_process import HEARTBEAT_SECONDS
from explorer.mpc.runs import (
    LaunchCancelled,
    LaunchError,
    LaunchResult,
    LaunchTimeout,
    PartyFn,
    role,
)

__all__ = ["PartySet", "keep_parties", "kept_parties", "kernel_parties", "run_parties",
           "warm_parties"]

STALL_SECONDS = 20.0  # a local process silent this long has stalled


# --------------------------------------------------------------------------- parent side


@dataclass
class _Child:
    popen: subprocess.Popen | ForkedProcess
    boot: Connection
    result: Connection
    label: str = "idle"
    rank: int = -1
    last_seen: float | None = None  # its last message; None until the first heartbeat
    first_seen: float | None = None  # its first message: it had its payload (monotonic)
    sent: int = 0  # bytes it has sent on the wire, as of its last heartbeat

    @property
    def pid(self) -> int:
        return int(self.popen.pid)

    def kill(self) -> None:
        """SIGKILL its process group (stragglers included) and, while it is not yet reaped,
        the process itself: a reaped pid may already belong to someone else, a live group id
        cannot be reused. A forked process known to have ended has been reaped already (by
        its forker, or by init after the forker's end), so nothing is sent to its pid."""
        if isinstance(self.popen, ForkedProcess) and self.popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10.0)  # reap (SIGKILL cannot be ignored)
        for conn in (self.boot, self.result):
            with contextlib.suppress(OSError):
                conn.close()


def _start_child(preload: Sequence[str] = (), forker: Forker | None = None) -> _Child:
    """A new party process: forked by ``forker`` (sharing its imports), else started afresh."""
    boot_r, boot_w = os.pipe()
    res_r, res_w = os.pipe()
    if forker is not None:
        try:
            popen: subprocess.Popen | ForkedProcess = forker.fork(boot_r, res_w)
        except BaseException:
            for fd in (boot_w, res_r):
                os.close(fd)
            raise
        finally:
            os.close(boot_r)
            os.close(res_w)
        return _Child(popen, Connection(boot_w, readable=False),
                      Connection(res_r, writable=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    try:
        popen = subprocess.Popen(
            [sys.executable, "-m", "explorer.mpc.party_process", str(boot_r), str(res_w),
             str(os.getpid()), *preload],
            pass_fds=(boot_r, res_w), start_new_session=True, env=env,
            stdin=subprocess.DEVNULL)
    finally:
        os.close(boot_r)
        os.close(res_w)
    return _Child(popen, Connection(boot_w, readable=False), Connection(res_r, writable=False))


class _Pool:
    """Processes that have imported torch and CrypTen and wait for their one payload."""

    def __init__(self, size: int, preload: Sequence[str]):
        self.size, self.idle, self.lock = size, [], threading.Lock()
        self.preload = tuple(preload)
        self.closed = False
        self.refill()

    def take(self, n: int) -> list[_Child]:
        with self.lock:
            alive, dead = [], []
            for c in self.idle:  # one poll each: a child dying meanwhile is in one list
                (alive if c.popen.poll() is None else dead).append(c)
            taken, self.idle = alive[:n], alive[n:]
        for child in dead:
            child.close()
        return taken + [_start_child(self.preload) for _ in range(n - len(taken))]

    def refill(self) -> None:
        with self.lock:
            while not self.closed and len(self.idle) < self.size:
                self.idle.append(_start_child(self.preload))

    def close(self) -> None:
        with self.lock:
            self.closed, idle, self.idle = True, self.idle, []
        for child in idle:
            child.close()


_POOL: _Pool | None = None


@contextlib.contextmanager
def warm_parties(size: int = 3, preload: Sequence[str] = ()) -> Iterator[None]:
    """Within this block, :func:`run_parties` takes warm processes (module docstring) that
    have also imported the modules named in ``preload`` (those the party function and its
    payload need: importing them on arrival would cost seconds of every session)."""
    global _POOL
    outer, _POOL = _POOL, _Pool(size, preload)
    try:
        yield
    finally:
        _POOL.close()
        _POOL = outer


class PartySet:
    """Party processes (model owner, data owner, dealer: by rank) that serve one session after
    another, for as long as this process (a dashboard kernel) keeps them.

    Each session still hands each process only its own payload through its own pipe, with a
    fresh session key and store; after it, each process tears its CrypTen session down and
    waits for the next boot. A session that fails, times out or is cancelled kills the
    processes it used, and the set starts their replacements at once. The processes are
    forked from the set's forker (explorer.mpc.forker), which imported torch, CrypTen and
    ``preload`` once: they share that memory instead of holding it each. The forker is started
    from one long-lived thread of the set: its parent-death signal follows the thread that
    started it, and a job's thread ends with its job; the processes' follows the forker.
    ``close`` (also at exit) kills them all.
    Sessions of different counterparties must never share a set (DESIGN.md §8).
    """

    def __init__(self, size: int = 3, preload: Sequence[str] = ()):
        if size < 2:
            raise ValueError(f"a party set holds at least the two parties, not {size}.")
        self.size, self.preload = size, tuple(preload)
        self.lock = threading.Lock()
        # by rank: a slot keeps its role (a replacement takes the place of the one it replaces)
        self.children: list[_Child | None] = []
        self.busy = self.closed = False
        self.forker: Forker | None = None  # explorer.mpc.forker: the processes share its imports
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="party-starter")
        self._starter.submit(self._fill)  # in the background: the caller goes on meanwhile
        atexit.register(self.close)

    def _fill(self, n: int | None = None) -> None:
        """Start processes until the set holds ``n`` (its size by default), forked from the
        set's forker (started, or restarted if it ended); on the starter."""
        with self.lock:
            if self.closed:
                return
            if self.forker is None or not self.forker.alive():
                if self.forker is not None:
                    self.forker.close()
                self.forker = Forker(self.preload)
            self.children += [None] * ((n or self.size) - len(self.children))
            for slot, child in enumerate(self.children):
                if child is None:
                    self.children[slot] = _start_child(forker=self.forker)

    def take(self, n: int) -> list[_Child] | None:
        """The first ``n`` processes (by rank), started or replaced where missing, dead or
        stopped; None when closed or serving another session (the caller starts its own)."""
        with self.lock:
            if self.closed or self.busy:
                return None
            self.busy = True
            dead = [c for c in self.children[:n] if c is not None and not _healthy(c)]
            self.children = [None if c in dead else c for c in self.children]
        for child in dead:
            child.close()
        try:
            filled = self._starter.submit(self._fill, max(n, self.size))
        except RuntimeError:  # closed meanwhile
            filled = None
        try:
            if filled is not None:
                filled.result()
        except BaseException:
            self.release([], ok=True)
            raise
        with self.lock:
            taken = self.children[:n]
            if not self.closed and len(taken) == n and None not in taken:
                return taken
            self.busy = False
            return None

    def release(self, used: list[_Child], ok: bool) -> None:
        """After a session: keep the processes, or (``ok`` false) kill the ones it used and
        start their replacements in the background."""
        if not ok:
            with self.lock:
                self.children = [None if c in used else c for c in self.children]
            for child in used:
                child.close()
        with self.lock:
            self.busy = False
            closed = self.closed
        if not ok and not closed:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                self._starter.submit(self._fill)

    @property
    def pids(self) -> list[int]:
        """The processes' ids, by rank."""
        with self.lock:
            return [c.pid for c in self.children if c is not None]

    def close(self) -> None:
        """Kill and reap every process of the set (idempotent)."""
        with self.lock:
            self.closed, children, self.children = True, self.children, []
        for child in children:
            if child is not None:
                child.close()
        with self.lock:
            forker, self.forker = self.forker, None
        if forker is not None:
            forker.close()
        self._starter.shutdown(wait=False)
        atexit.unregister(self.close)


def _healthy(child: _Child) -> bool:
    """Alive and not stopped (a stopped process would stall the next session)."""
    if child.popen.poll() is not None:
        return False
    try:
        state = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return not sys.platform.startswith("linux")
    return state not in ("T", "t", "Z", "X")


_SET: PartySet | None = None
_SET_LOCK = threading.Lock()


@contextlib.contextmanager
def kernel_parties(size: int = 3, preload: Sequence[str] = ()) -> Iterator[PartySet]:
    """Within this block, :func:`run_parties` takes its processes from a PartySet (reused
    session after session); the set is closed on leaving it."""
    global _SET
    party_set = PartySet(size, preload)
    with _SET_LOCK:
        outer, _SET = _SET, party_set
    try:
        yield party_set
    finally:
        party_set.close()
        with _SET_LOCK:
            _SET = outer


def keep_parties(size: int = 3, preload: Sequence[str] = ()) -> PartySet:
    """The PartySet that serves this process's sessions from now until it exits (a dashboard
    kernel's), started in the background on the first call; later calls return it."""
    global _SET
    with _SET_LOCK:
        if _SET is None or _SET.closed:
            _SET = PartySet(size, preload)
        return _SET


def kept_parties() -> PartySet | None:
    """The PartySet serving this process's sessions, if any."""
    party_set = _SET
    return None if party_set is None or party_set.closed else party_set


def run_parties(fn: PartyFn, payloads: Mapping[int, Any], *, config: MPCConfig | None = None,
                timeout: float = 120.0, stall_timeout: float = STALL_SECONDS,
                key: bytes | None = None, cancel: threading.Event | None = None,
                on_wait: Callable[[float, int, int], None] | None = None,
                dealer_payload: Any = None) -> LaunchResult:
    """Run ``fn(rank, world_size, payloads[rank])`` in one process per rank (ranks 0..max),
    plus the dealer for the TTP provider; return the results by rank. With ``dealer_payload``
    (public), the dealer rehearses ``fn(world_size, world_size, dealer_payload)`` to deal the
    session ahead (explorer.mpc.dealer).

    ``timeout`` bounds the whole run, ``stall_timeout`` the silence of any one process.
    ``cancel`` stops the run within a heartbeat; ``on_wait`` receives the elapsed seconds, how
    many processes have started and the bytes they have sent on the wire so far (all of them,
    the dealer included) at every heartbeat. ``key`` is the session key (a fresh one
    by default). Raises LaunchError (naming the failing party), LaunchTimeout or
    LaunchCancelled; in every case all processes are killed and reaped and the private store
    directory is removed.
    """
    config = config or MPCConfig()
    world_size = max(payloads) + 1
    key = key or new_session_key()
    start = time.monotonic()
    n = world_size + (1 if config.uses_ttp else 0)
    children: list[_Child] = []
    party_set, reused, ok = kept_parties(), None, False
    store_dir = tempfile.mkdtemp(prefix="appraisal-session-")  # 0700: this user only
    try:
        reused = party_set.take(n) if party_set is not None else None
        if reused is not None:
            children = reused
        elif _POOL is not None:
            children = _POOL.take(n)
        else:
            for _ in range(n):
                children.append(_start_child())
        for rank, child in enumerate(children):
            child.rank, child.label = rank, role(rank, world_size)
            child.last_seen, child.first_seen, child.sent = None, None, 0
            dealer = rank == world_size
            runs_fn = not dealer or dealer_payload is not None
            boot = {"fn": fn if runs_fn else None,
                    "payload": dealer_payload if dealer else payloads.get(rank),
                    "rank": rank, "world_size": world_size, "dealer": dealer, "key": key,
                    "config": config, "stall_timeout": stall_timeout,
                    "env": {"RENDEZVOUS": f"file://{store_dir}/store",
                            "WORLD_SIZE": str(world_size), "RANK": str(rank),
                            "DISTRIBUTED_BACKEND": "gloo", "GLOO_SOCKET_IFNAME": "lo"},
                    "reuse": reused is not None}
            with contextlib.suppress(OSError):  # a dead child is seen through its pipe
                child.boot.send_bytes(pickle.dumps(boot, protocol=pickle.HIGHEST_PROTOCOL))
                if reused is None:
                    child.boot.close()
        pids = {c.label: c.pid for c in children}
        results = _collect(children, start + timeout, timeout, stall_timeout, cancel, on_wait,
                           pids)
        # every process had its payload once the last one spoke (a process that said nothing
        # before its result was up by then): start-up and handoff end here
        up = max(c.first_seen if c.first_seen is not None else start for c in children)
        ok = True
        return LaunchResult([results[r] for r in range(world_size)],
                            time.monotonic() - start, pids, results.get(world_size),
                            up_s=up - start)
    finally:
        if reused is not None:
            party_set.release(children, ok)
        else:
            for child in children:
                child.close()
        shutil.rmtree(store_dir, ignore_errors=True)
        if _POOL is not None:
            # only now: new processes' imports take seconds of CPU, which on a small machine
            # would be taken from the session's parties. Started from this thread, not a
            # short-lived one: a child's parent-death signal follows the thread that started it
            _POOL.refill()


def _collect(children: list[_Child], deadline: float, timeout: float, stall: float,
             cancel: threading.Event | None, on_wait: Callable[[float, int, int], None] | None,
             pids: dict[str, int]) -> dict[int, Any]:
    """Results by rank; the first failure (after a short settle for its root cause) raises."""
    pending = {c.result: c for c in children}
    results: dict[int, Any] = {}  # the dealer's under its rank, world size
    failures: list[tuple[str, str, BaseException | None, bool]] = []  # who, what, exc, comm?
    settle: float | None = None
    while pending and (settle is None or time.monotonic() < settle):
        now = time.monotonic()
        if now >= deadline:
            still = ", ".join(sorted(c.label for c in pending.values()))
            raise LaunchTimeout(f"the session did not finish within {timeout:g} s (still "
                                f"running: {still}); all its processes were stopped.",
                                pids=pids)
        if cancel is not None and cancel.is_set():
            raise LaunchCancelled("the session was cancelled; its processes were stopped.",
                                  pids=pids)
        if on_wait is not None:
            on_wait(now - (deadline - timeout), sum(c.last_seen is not None for c in children),
                    sum(c.sent for c in children))
        for conn in wait(list(pending), timeout=min(deadline - now, HEARTBEAT_SECONDS)):
            child = pending[conn]
            try:
                message = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                del pending[conn]
                code = child.popen.wait(5.0)
                failures.append((child.label, f"its process ended with exit code {code}"
                                 f"{_signal_name(code)}", None, False))
                continue
            child.last_seen = time.monotonic()
            if child.first_seen is None:
                child.first_seen = child.last_seen
            if message[0] == "alive":
                child.sent = message[1] if len(message) > 1 else child.sent
                continue
            del pending[conn]
            if message[0] == "ok":
                results[child.rank] = message[1]
                continue
            _, name, text, blob = message
            original = None
            with contextlib.suppress(Exception):
                original = pickle.loads(blob) if blob else None
            failures.append((child.label, text.split("\n", 1)[0], original,
                             _is_consequence(name, text)))
        for child in list(pending.values()):
            if child.last_seen is None:  # still starting: the run's timeout bounds that
                continue
            silent = time.monotonic() - child.last_seen
            if silent > stall:
                del pending[child.result]
                failures.append((child.label, f"its process (pid {child.pid}) stopped "
                                 f"responding for {silent:.0f} s; check that it is not stopped "
                                 f"or short of memory", None, False))
        if failures and settle is None:
            settle = time.monotonic() + 1.0  # a peer's "connection closed" often comes first
    if failures:
        who, what, original, _ = next((f for f in failures if not f[3]), failures[0])
        if isinstance(original, (ValueError, SessionKeyError, LaunchError)):
            message = str(original)  # the party's own sentence (e.g. an ExplorerError)
        else:
            message = f"the {who} failed: {what}"
        raise LaunchError(message, party=who, original=original, pids=pids)
    return results


def _is_consequence(name: str, text: str) -> bool:
    """True for errors that are usually the echo of a peer failing first."""
    return name.rsplit(".", 1)[-1] in {"DistBackendError", "DistNetworkError",
                                       "DistStoreError"} or any(
        m in text for m in ("Connection closed by peer", "Connection reset by peer",
                            "Broken pipe", "gloo", "Gloo"))


def _signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f" (killed by {signal.Signals(-code).name})"
    return ""


