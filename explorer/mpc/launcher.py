"""Run CrypTen party code in real OS processes (or in-process for quick tests).

Three ways to run the same party function ``fn(rank, world_size, payload) -> result``:

* :func:`run_parties` -- one machine, N party processes (+ a TTP dealer process
  when ``config.provider == "TTP"``), torch.distributed/gloo over 127.0.0.1.
* :func:`run_simulated` -- world size 1 inside the calling process (fast, for
  fixed-point / approximation tests; no real secret sharing or communication).
* :func:`run_party_from_env` / :func:`run_dealer_from_env` (``appraisal-explorer party``) --
  one party per machine, configured with RENDEZVOUS / WORLD_SIZE / RANK like plain CrypTen.

Design of :func:`run_parties`
-----------------------------
* Processes are started with ``subprocess.Popen([sys.executable, "-c", BOOT])``
  ("spawn" semantics) by default: the child gets a fresh interpreter, the
  parent's ``sys.path``, and -- through a private pipe -- only its own payload.
  ``start_new_session=True`` puts each child in its own process group, so the
  parent can ``killpg`` it together with anything it spawned. We do not use
  ``multiprocessing``'s spawn/forkserver contexts because both leave a
  ``resource_tracker`` (and a forkserver) process behind as children of the
  caller. ``start_method="fork"`` is available for speed (no torch re-import),
  but a forked child inherits the parent's whole memory -- including the other
  parties' payloads -- so it is for tests only.
* ``fn`` must be picklable by reference: a module-level function in an
  importable module (not ``__main__``, not a lambda/closure) in spawn mode.
* Rendezvous: the *parent* hosts the c10d TCPStore on a socket it binds to
  127.0.0.1 port 0 (no free-port race; torch's own TCPStore would listen on
  all interfaces). Children connect as clients only
  (``TORCHELASTIC_USE_AGENT_STORE=True`` makes torch's ``tcp://`` handler skip
  starting a server on rank 0). ``GLOO_SOCKET_IFNAME=lo`` keeps gloo's pair
  sockets on loopback.
* Data is pickled with plain :mod:`pickle` and sent with ``send_bytes`` (not
  ``Connection.send``): torch registers shared-memory reducers on
  multiprocessing's ForkingPickler, which would create /dev/shm files or a
  resource-sharer socket.
* The parent waits on all result pipes with one deadline. A party that raises
  sends ``(type, message, traceback, pickled exception)`` and exits; a party
  that dies is detected by EOF on its pipe (exit code from ``waitpid``). After
  the first failure the parent waits ``settle`` seconds for more reports
  (a peer's gloo "connection closed" error often arrives together with the
  root cause), picks the root cause (non-communication errors first), kills
  every process group and raises. On timeout all are killed and
  :class:`LaunchTimeout` names the parties still running.
* ``finally`` always: SIGKILL every process group still alive, reap every
  child, close every fd, destroy the store (closing its port).

Separate machines
-----------------
The same party code runs one process per machine with CrypTen's environment variables:
RENDEZVOUS=tcp://<model owner's address>:<port>, WORLD_SIZE=2 (parties only), RANK=0 (model
owner), 1 (data owner) or 2 (the TTP dealer). Rank 0 hosts the rendezvous store bound to that
address only. ``appraisal-explorer party model-owner|data-owner|dealer`` wraps
:func:`run_party_from_env` and :func:`run_dealer_from_env`; the README shows a full run. Gloo
traffic is not encrypted: put a VPN or SSH tunnel between machines, and pass a collective
timeout so that a hung peer fails the others instead of blocking them for 30 minutes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

from explorer.mpc.crypten_compat import MPCConfig, apply_config, crypten_config, load_crypten

__all__ = [
    "LaunchResult",
    "LaunchTimeout",
    "MPCLaunchError",
    "PartyDied",
    "PartyError",
    "PartyFailure",
    "PartyFn",
    "RunInfo",
    "run_dealer_from_env",
    "run_parties",
    "run_party_from_env",
    "run_simulated",
    "set_collective_timeout",
]

PartyFn = Callable[[int, int, Any], Any]
StartMethod = Literal["spawn", "fork"]

_LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------- results & errors


@dataclass(frozen=True)
class RunInfo:
    """What a run started: process ids by label ("party0", ..., "dealer") and the store port."""

    pids: dict[str, int]
    port: int | None
    start_method: str


@dataclass(frozen=True)
class PartyTimings:
    """Wall-clock timestamps (``time.time()``) reported by a party process."""

    launched: float  # parent, just before starting the process
    entered: float  # child, first line of party code (after interpreter start)
    imported: float  # child, torch + crypten imported
    initialized: float  # child, crypten.init() returned
    computed: float  # child, fn returned
    finished: float  # child, crypten.uninit() returned


@dataclass(frozen=True)
class LaunchResult:
    results: list[Any]  # index = party rank
    wall_s: float
    timings: dict[int, PartyTimings]
    info: RunInfo


@dataclass(frozen=True)
class PartyFailure:
    label: str  # "party1" / "dealer"
    rank: int
    kind: Literal["raised", "died"]
    exc_type: str | None = None  # qualified name, e.g. "builtins.ValueError"
    message: str | None = None
    remote_traceback: str | None = None
    exitcode: int | None = None
    exception: BaseException | None = None  # unpickled original, when possible

    @property
    def is_communication_error(self) -> bool:
        """True for errors that are typically a *consequence* of a peer failing."""
        if self.kind != "raised":
            return False
        name = self.exc_type or ""
        text = f"{name} {self.message or ''}"
        return name.rsplit(".", 1)[-1] in {
            "DistBackendError",
            "DistNetworkError",
            "DistStoreError",
        } or any(
            marker in text
            for marker in (
                "Connection closed by peer",
                "Connection reset by peer",
                "Broken pipe",
                "gloo",
                "Gloo",
            )
        )

    def describe(self) -> str:
        if self.kind == "died":
            return f"{self.label} died with exit code {self.exitcode}{_signal_name(self.exitcode)}"
        return f"{self.label} raised {self.exc_type}: {self.message}"


def _signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return f" (killed by {signal.Signals(-exitcode).name})"
    return ""


def _context(primary: PartyFailure, failures: Sequence[PartyFailure], killed: Sequence[str]) -> str:
    text = ""
    others = [f.describe() for f in failures if f is not primary]
    if others:
        text += "\n(also: " + "; ".join(others) + ")"
    if killed:
        text += f"\n(killed while still running: {', '.join(killed)})"
    return text


class MPCLaunchError(RuntimeError):
    """Base class for launcher failures. ``failures`` lists every failure seen."""

    def __init__(
        self, message: str, failures: Sequence[PartyFailure] = (), info: RunInfo | None = None
    ):
        super().__init__(message)
        self.failures: list[PartyFailure] = list(failures)
        self.info = info


class _PartyFailed(MPCLaunchError):
    """A run that failed because of one party (``primary``): its rank and label, and which
    processes were still running when all were killed."""

    def __init__(
        self,
        message: str,
        primary: PartyFailure,
        failures: Sequence[PartyFailure],
        info: RunInfo | None,
        killed: Sequence[str],
    ):
        super().__init__(message + _context(primary, failures, killed), failures, info)
        self.killed = list(killed)
        self.rank = primary.rank
        self.label = primary.label


class PartyError(_PartyFailed):
    """A party raised. ``exc_type``/``exc_message``/``remote_traceback`` describe it;
    the unpickled original exception (if picklable) is ``original`` and ``__cause__``."""

    def __init__(
        self,
        primary: PartyFailure,
        failures: Sequence[PartyFailure],
        info: RunInfo | None,
        killed: Sequence[str] = (),
    ):
        super().__init__(primary.describe(), primary, failures, info, killed)
        self.args = (
            f"{self.args[0]}\n--- remote traceback ({primary.label}) ---\n"
            f"{primary.remote_traceback}",
        )
        self.exc_type = primary.exc_type
        self.exc_message = primary.message
        self.remote_traceback = primary.remote_traceback
        self.original = primary.exception


class PartyDied(_PartyFailed):
    """A party process exited without reporting (os._exit, signal, segfault...)."""

    def __init__(
        self,
        primary: PartyFailure,
        failures: Sequence[PartyFailure],
        info: RunInfo | None,
        killed: Sequence[str] = (),
    ):
        super().__init__(
            primary.describe() + " before reporting a result", primary, failures, info, killed
        )
        self.exitcode = primary.exitcode


class LaunchTimeout(MPCLaunchError, TimeoutError):
    """The run exceeded its timeout; every process was killed."""


class LaunchCancelled(MPCLaunchError):
    """The caller cancelled the run; every process was killed."""


# How often a waiting launcher wakes to check for cancellation and report that it is alive.
HEARTBEAT_SECONDS = 0.25


# --------------------------------------------------------------------------- store hosting


@contextlib.contextmanager
def host_store(host: str = _LOOPBACK, port: int = 0, timeout_s: float = 300.0) -> Iterator[int]:
    """Host a c10d TCPStore bound to ``host`` only; yields the port. Closed on exit."""
    import torch.distributed as dist

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        bound_port = int(sock.getsockname()[1])
        store = dist.TCPStore(
            host,
            bound_port,
            None,
            True,
            timeout=_dt.timedelta(seconds=timeout_s),
            wait_for_workers=False,
            master_listen_fd=sock.fileno(),
        )
    except BaseException:
        sock.close()
        raise
    sock.detach()  # the store owns (and closes) the fd now
    try:
        yield bound_port
    finally:
        del store  # stops the server thread and closes the listening socket


# --------------------------------------------------------------------------- child side


def _set_thread_env(threads: int) -> dict[str, str]:
    value = str(threads)
    return {"OMP_NUM_THREADS": value, "MKL_NUM_THREADS": value, "OPENBLAS_NUM_THREADS": value}


def _party_main(fd_in: int, fd_out: int) -> None:
    """Body of every launched process. Never returns (exits with os._exit)."""
    entered = time.time()
    conn_in = Connection(fd_in, writable=False)
    conn_out = Connection(fd_out, readable=False)
    code = 1
    try:
        # heavy imports first (overlaps with the parent sending the bootstrap)
        crypten = load_crypten()
        import torch

        imported = time.time()
        boot: dict[str, Any] = pickle.loads(conn_in.recv_bytes())
        conn_in.close()
        os.environ.update(boot["env"])
        torch.set_num_threads(boot["torch_threads"])
        crypten.cfg.load_config(
            None
        )  # start from defaults in both modes (fork inherits the parent's cfg)
        apply_config(boot["config"])
        set_collective_timeout(boot["collective_timeout"])
        rank: int = boot["rank"]
        world_size: int = boot["world_size"]
        if boot["dealer"]:
            _serve_as_dealer(crypten)
            initialized = computed = time.time()
            result = None
        else:
            crypten.init()
            initialized = time.time()
            result = boot["fn"](rank, world_size, boot["payload"])
            computed = time.time()
            if crypten.is_initialized():
                crypten.uninit()  # rank 0 tells the TTP dealer to terminate here
        finished = time.time()
        timings = PartyTimings(boot["launched"], entered, imported, initialized, computed, finished)
        conn_out.send_bytes(pickle.dumps(("ok", result, timings), protocol=pickle.HIGHEST_PROTOCOL))
        code = 0
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            conn_out.send_bytes(pickle.dumps(("err", *_describe_exception(exc))))
    finally:
        with contextlib.suppress(BaseException):
            conn_out.close()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        # skip interpreter teardown: gloo/torch destructors in a half-dead group can hang
        os._exit(code)


def set_collective_timeout(seconds: float | None) -> None:
    """Default timeout of gloo collectives/recv created by ``crypten.init()``.

    CrypTen calls ``init_process_group``/``new_group`` without a timeout, so
    torch's default (30 min) applies: a peer that hangs blocks the others that
    long. Call before ``crypten.init()``. ``None`` keeps torch's default.
    """
    if seconds is None:
        return
    import torch.distributed.distributed_c10d as c10d

    c10d.default_pg_timeout = _dt.timedelta(seconds=seconds)


def _serve_as_dealer(crypten: Any) -> None:
    """Run crypten's TTPServer until rank 0 sends "terminate" (in its crypten.uninit())."""
    from crypten.mpc.provider.ttp_provider import TTPServer

    TTPServer()  # calls crypten.init() itself; serves until terminated
    # no crypten.uninit(): the dealer is not in the parties' main group, and
    # the process exits right away anyway.


def _describe_exception(exc: BaseException) -> tuple[str, str, str, bytes | None]:
    exc_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
    tb = "".join(traceback.format_exception(exc))
    try:
        blob: bytes | None = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:
        blob = None
    return exc_type, str(exc), tb, blob


def _subprocess_entry(fd_in: int, fd_out: int, parent_pid: int) -> None:
    """Entry point of a spawned party (see ``_BOOT``)."""
    _die_with_parent(parent_pid)
    _party_main(fd_in, fd_out)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGKILL when the launching process dies (belt and braces)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "import importlib; importlib.import_module(sys.argv[2])._subprocess_entry("
    "int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))"
)


# --------------------------------------------------------------------------- parent side


@dataclass
class _Child:
    label: str
    rank: int
    launched: float
    result_conn: Connection
    boot_conn: Connection
    popen: subprocess.Popen[bytes] | None = None
    mp_process: Any = None
    writer: threading.Thread | None = None
    exitcode: int | None = None

    @property
    def pid(self) -> int:
        return int(self.popen.pid if self.popen is not None else self.mp_process.pid)

    def poll(self) -> int | None:
        if self.popen is not None:
            return self.popen.poll()
        return self.mp_process.exitcode  # type: ignore[no-any-return]

    def wait(self, timeout: float) -> int | None:
        if self.popen is not None:
            try:
                return self.popen.wait(timeout=max(timeout, 0.0))
            except subprocess.TimeoutExpired:
                return None
        self.mp_process.join(max(timeout, 0.0))
        return self.mp_process.exitcode  # type: ignore[no-any-return]

    def kill_group(self) -> None:
        for target in (
            lambda: os.killpg(self.pid, signal.SIGKILL),
            lambda: os.kill(self.pid, signal.SIGKILL),
        ):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                target()


def _module_name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__module__", "") or ""


def _check_picklable_fn(fn: PartyFn, start_method: StartMethod) -> None:
    if start_method == "spawn" and _module_name_of(fn) == "__main__":
        raise ValueError(
            "run_parties(start_method='spawn') needs fn importable by module path; "
            f"{fn!r} lives in __main__. Move it to a module."
        )
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise ValueError(
            f"fn {fn!r} is not picklable by reference (module-level function required)"
        ) from exc


def _start_child(label: str, rank: int, start_method: StartMethod, torch_threads: int) -> _Child:
    boot_r, boot_w = os.pipe()
    res_r, res_w = os.pipe()
    launched = time.time()
    child = _Child(
        label,
        rank,
        launched,
        result_conn=Connection(res_r, writable=False),
        boot_conn=Connection(boot_w, readable=False),
    )
    try:
        if start_method == "spawn":
            env = dict(os.environ)
            env.update(_set_thread_env(torch_threads))
            env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
            module = _importable_module_name()
            child.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _BOOT,
                    json.dumps(sys.path),
                    module,
                    str(boot_r),
                    str(res_w),
                    str(os.getpid()),
                ],
                pass_fds=(boot_r, res_w),
                start_new_session=True,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("fork")
            parent_fds = [boot_w, res_r]
            child.mp_process = ctx.Process(
                target=_fork_entry,
                args=(boot_r, res_w, parent_fds, os.getpid()),
                name=f"mpc-{label}",
                daemon=False,
            )
            child.mp_process.start()
            with contextlib.suppress(OSError):
                os.setpgid(child.mp_process.pid, child.mp_process.pid)
    except BaseException:
        for fd in (boot_r, res_w):
            os.close(fd)
        child.result_conn.close()
        child.boot_conn.close()
        raise
    # the child's ends live in the child now
    os.close(boot_r)
    os.close(res_w)
    return child


def _importable_module_name() -> str:
    """Module path under which a fresh interpreter can import this file."""
    spec = globals().get("__spec__")
    name = spec.name if spec is not None else __name__
    if name == "__main__":  # run as a script: fall back to the file name (dir is on sys.path[0])
        name = os.path.splitext(os.path.basename(__file__))[0]
    return name


def _fork_entry(fd_in: int, fd_out: int, parent_fds: list[int], parent_pid: int) -> None:
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _die_with_parent(parent_pid)
    for fd in parent_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _party_main(fd_in, fd_out)


def _send_boot(child: _Child, blob: bytes) -> None:
    try:
        child.boot_conn.send_bytes(blob)
    except (BrokenPipeError, OSError):
        pass  # the child died; detected through its result pipe
    finally:
        with contextlib.suppress(OSError):
            child.boot_conn.close()


def run_parties(
    fn: PartyFn,
    payloads: Mapping[int, Any],
    *,
    world_size: int | None = None,
    config: MPCConfig | None = None,
    timeout: float = 120.0,
    start_method: StartMethod = "spawn",
    torch_threads: int = 1,
    settle: float = 0.5,
    exit_grace: float = 5.0,
    loopback_ifname: str = "lo",
    collective_timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> LaunchResult:
    """Run ``fn(rank, world_size, payloads.get(rank))`` in ``world_size`` processes.

    ``world_size`` defaults to ``max(payloads) + 1``. Party ``r`` receives only
    ``payloads.get(r)`` (None when absent); the TTP dealer (started when
    ``config.provider == "TTP"``) receives nothing. Returns the results by rank.

    ``cancel`` (an event) stops the run within a heartbeat when set; ``on_wait`` is
    called with the elapsed seconds at every heartbeat while the parties compute.
    ``collective_timeout`` (seconds) bounds every gloo operation inside the
    parties (see :func:`set_collective_timeout`); the run as a whole is bounded
    by ``timeout`` regardless. ``start_method="fork"`` requires
    ``torch_threads=1``.

    Raises :class:`PartyError` (a party raised), :class:`PartyDied` (a party
    exited without reporting) or :class:`LaunchTimeout`. In every case all
    processes are killed and reaped and the store port is closed before return.
    """
    config = config or MPCConfig()
    if world_size is None:
        world_size = max(payloads, default=-1) + 1
    if world_size < 1:
        raise ValueError("world_size must be >= 1")
    if unknown := sorted(set(payloads) - set(range(world_size))):
        raise ValueError(f"payloads for ranks outside 0..{world_size - 1}: {unknown}")
    if start_method not in ("spawn", "fork"):
        raise ValueError(f"unknown start_method {start_method!r}")
    _check_picklable_fn(fn, start_method)
    if start_method == "fork" and torch_threads != 1:
        # libgomp is not fork-safe: a forked child that enters an OpenMP parallel
        # region after the parent did deadlocks (reproduced with torch 2.13).
        raise ValueError(
            "start_method='fork' requires torch_threads=1 (OpenMP deadlocks after fork)"
        )
    if start_method == "fork":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            # the child would inherit a "initialized" flag without the gloo threads behind it
            raise RuntimeError(
                "fork mode: torch.distributed is initialized in the parent; "
                "call crypten.uninit() first"
            )
        load_crypten()  # import once here; forked children inherit the loaded modules
    t0 = time.time()
    labels = [(f"party{r}", r) for r in range(world_size)]
    if config.uses_ttp:
        labels.append(("dealer", world_size))

    children: list[_Child] = []
    info: RunInfo | None = None
    try:
        for label, rank in labels:
            children.append(_start_child(label, rank, start_method, torch_threads))
        with host_store(_LOOPBACK, 0, timeout_s=timeout) as port:
            info = RunInfo({c.label: c.pid for c in children}, port, start_method)
            base_env = {
                "RENDEZVOUS": f"tcp://{_LOOPBACK}:{port}",
                "WORLD_SIZE": str(world_size),
                "DISTRIBUTED_BACKEND": "gloo",
                "GLOO_SOCKET_IFNAME": loopback_ifname,
                "TORCHELASTIC_USE_AGENT_STORE": "True",
                **_set_thread_env(torch_threads),
            }
            for child in children:
                is_dealer = child.label == "dealer"
                blob = pickle.dumps(
                    {
                        "fn": None if is_dealer else fn,
                        "payload": None if is_dealer else payloads.get(child.rank),
                        "rank": child.rank,
                        "world_size": world_size,
                        "dealer": is_dealer,
                        "config": config,
                        "env": {**base_env, "RANK": str(child.rank)},
                        "torch_threads": torch_threads,
                        "collective_timeout": collective_timeout,
                        "launched": child.launched,
                    },
                    protocol=pickle.HIGHEST_PROTOCOL,
                )
                child.writer = threading.Thread(target=_send_boot, args=(child, blob), daemon=True)
                child.writer.start()
            results, timings = _collect(
                children, info, t0 + timeout, settle, timeout, cancel, on_wait
            )
            _await_exit(children, exit_grace)
        return LaunchResult(
            [results[r] for r in range(world_size)], time.time() - t0, timings, info
        )
    finally:
        _cleanup(children)


def _collect(
    children: list[_Child],
    info: RunInfo,
    deadline: float,
    settle: float,
    timeout: float,
    cancel: threading.Event | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> tuple[dict[int, Any], dict[int, PartyTimings]]:
    by_conn = {c.result_conn: c for c in children}
    pending = dict(by_conn)
    results: dict[int, Any] = {}
    timings: dict[int, PartyTimings] = {}
    failures: list[PartyFailure] = []
    settle_deadline: float | None = None
    while pending:
        now = time.time()
        limit = deadline if settle_deadline is None else min(deadline, settle_deadline)
        if now >= limit:
            break
        if cancel is not None and cancel.is_set():
            _kill_all(children)
            raise LaunchCancelled("MPC run cancelled; all processes were stopped", [], info)
        if on_wait is not None:
            on_wait(now - (deadline - timeout))
        for conn in wait(list(pending), timeout=min(limit - now, HEARTBEAT_SECONDS)):
            child = pending.pop(conn)  # type: ignore[call-overload]
            try:
                message = pickle.loads(conn.recv_bytes())  # type: ignore[union-attr]
            except (EOFError, OSError):
                child.exitcode = child.wait(2.0)
                failures.append(
                    PartyFailure(child.label, child.rank, "died", exitcode=child.exitcode)
                )
                continue
            if message[0] == "ok":
                if child.label != "dealer":
                    results[child.rank] = message[1]
                    timings[child.rank] = message[2]
                continue
            _, exc_type, text, tb, blob = message
            original = None
            if blob is not None:
                with contextlib.suppress(Exception):
                    original = pickle.loads(blob)
            failures.append(
                PartyFailure(
                    child.label, child.rank, "raised", exc_type, text, tb, exception=original
                )
            )
        if failures and settle_deadline is None:
            settle_deadline = time.time() + settle
    if failures:
        _kill_all(children)
        primary = next((f for f in failures if not f.is_communication_error), failures[0])
        killed = sorted(c.label for c in pending.values())
        if primary.kind == "died":
            raise PartyDied(primary, failures, info, killed)
        error = PartyError(primary, failures, info, killed)
        if primary.exception is not None:
            raise error from primary.exception
        raise error
    if pending:
        _kill_all(children)
        names = ", ".join(sorted(c.label for c in pending.values()))
        raise LaunchTimeout(
            f"MPC run timed out after {timeout:.1f}s; still running: {names} (all killed)", [], info
        )
    return results, timings


def _await_exit(children: list[_Child], grace: float) -> None:
    end = time.time() + grace
    for child in children:
        child.exitcode = child.wait(end - time.time())


def _kill_all(children: list[_Child]) -> None:
    for child in children:
        if child.poll() is None:
            child.kill_group()
        else:  # leader gone, but the group may have stragglers
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)


def _cleanup(children: list[_Child]) -> None:
    _kill_all(children)
    for child in children:
        child.wait(10.0)  # reap (SIGKILL cannot be ignored)
        if child.mp_process is not None:
            with contextlib.suppress(Exception):
                child.mp_process.close()
        for conn in (child.result_conn, child.boot_conn):
            with contextlib.suppress(OSError):
                conn.close()
        if child.writer is not None:
            child.writer.join(1.0)


# --------------------------------------------------------------------------- in-process & env modes


def run_simulated(fn: PartyFn, payload: Any = None, *, config: MPCConfig | None = None) -> Any:
    """Run ``fn(0, 1, payload)`` with crypten initialised at world size 1 in *this* process.

    Shares equal the encoded plaintext and truncation is exact, so use this for
    fixed-point/approximation checks only. Env vars and the crypten config are
    restored afterwards; crypten is uninitialised (it can be re-initialised).
    """
    config = config or MPCConfig()
    if config.uses_ttp:
        raise ValueError("run_simulated does not support the TTP provider (needs a dealer process)")
    crypten = load_crypten()
    if crypten.is_initialized():
        raise RuntimeError("crypten is already initialised in this process")
    keys = (
        "RENDEZVOUS",
        "WORLD_SIZE",
        "RANK",
        "DISTRIBUTED_BACKEND",
        "GLOO_SOCKET_IFNAME",
        "TORCHELASTIC_USE_AGENT_STORE",
    )
    saved = {k: os.environ.get(k) for k in keys}
    try:
        with host_store(_LOOPBACK, 0) as port, crypten_config(config):
            os.environ.update(
                RENDEZVOUS=f"tcp://{_LOOPBACK}:{port}",
                WORLD_SIZE="1",
                RANK="0",
                DISTRIBUTED_BACKEND="gloo",
                GLOO_SOCKET_IFNAME="lo",
                TORCHELASTIC_USE_AGENT_STORE="True",
            )
            crypten.init()
            try:
                return fn(0, 1, payload)
            finally:
                if crypten.is_initialized():
                    crypten.uninit()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _env_store_for_rank0(rank: int) -> Iterator[None]:
    """Rank 0 hosts the store bound to RENDEZVOUS's host only (see module doc)."""
    from urllib.parse import urlparse

    url = urlparse(os.environ["RENDEZVOUS"])
    if rank != 0 or url.scheme != "tcp" or os.environ.get("MPC_HOST_STORE", "1") == "0":
        yield
        return
    assert url.hostname is not None and url.port is not None, "RENDEZVOUS must be tcp://host:port"
    previous = os.environ.get("TORCHELASTIC_USE_AGENT_STORE")
    with host_store(url.hostname, url.port):
        os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "True"
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("TORCHELASTIC_USE_AGENT_STORE", None)
            else:
                os.environ["TORCHELASTIC_USE_AGENT_STORE"] = previous


def _env_rank_and_size() -> tuple[int, int]:
    for key in ("RENDEZVOUS", "WORLD_SIZE", "RANK"):
        if key not in os.environ:
            raise RuntimeError(f"environment variable {key} must be set (see the README)")
    os.environ.setdefault("DISTRIBUTED_BACKEND", "gloo")
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def run_party_from_env(
    fn: PartyFn,
    payload: Any = None,
    *,
    config: MPCConfig | None = None,
    collective_timeout: float | None = None,
) -> Any:
    """Multi-machine mode: this process is party RANK of WORLD_SIZE (env vars)."""
    rank, world_size = _env_rank_and_size()
    crypten = load_crypten()
    apply_config(config or MPCConfig())
    set_collective_timeout(collective_timeout)
    with _env_store_for_rank0(rank):
        crypten.init()
        try:
            return fn(rank, world_size, payload)
        finally:
            if crypten.is_initialized():
                crypten.uninit()


def run_dealer_from_env(
    *, config: MPCConfig | None = None, collective_timeout: float | None = None
) -> None:
    """Multi-machine mode: this process is the TTP dealer (RANK == WORLD_SIZE)."""
    rank, world_size = _env_rank_and_size()
    if rank != world_size:
        raise RuntimeError(f"the dealer must have RANK == WORLD_SIZE ({world_size}), got {rank}")
    config = config or MPCConfig(provider="TTP")
    if not config.uses_ttp:
        raise RuntimeError("dealer requires provider TTP")
    crypten = load_crypten()
    apply_config(config)
    set_collective_timeout(collective_timeout)
    _serve_as_dealer(crypten)
