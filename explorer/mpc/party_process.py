"""The body of every party process the launcher starts (explorer.mpc.launcher): it receives its
boot (its own party's payload, the session key, the store) through its own pipe, runs the
session in CrypTen, beats four times a second on its result pipe, and sends its result or its
error back. Started as ``python -m explorer.mpc.party_process`` or forked from a kept set's forker
(explorer.mpc.forker); the launcher's side of the pipes is in explorer.mpc.launcher.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from explorer.mpc import exchange, wire
from explorer.mpc.crypten_compat import (
    apply_config,
    freeze_config,
    load_crypten,
    set_collective_timeout,
)
from explorer.mpc.keys import authenticate

HEARTBEAT_SECONDS = 0.25  # how often a party process beats (and the launcher wakes)


class _Pipe:
    """The child's end of its result pipe, shared by the main thread and the heartbeat."""

    def __init__(self, fd: int):
        self.conn, self.lock = Connection(fd, readable=False), threading.Lock()

    def send(self, message: tuple) -> None:
        with self.lock:
            self.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _heartbeat(pipe: _Pipe, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        with contextlib.suppress(OSError):
            pipe.send(("alive", wire.bytes_so_far()))  # progress: what it has sent on the wire


def serve_sessions(fd_in: int, fd_out: int, parent_pid: int, preload: Sequence[str] = ()) -> None:
    """Body of every launched process. Never returns (exits with os._exit). ``preload`` names
    modules to import before the payload arrives (those its unpickling would import). It
    serves one session, or one after another while each boot says ``reuse`` (a PartySet's
    processes), and exits when the launcher closes its boot pipe."""
    die_with_parent(parent_pid)
    pipe, code = _Pipe(fd_out), 1
    try:
        crypten = load_crypten()  # warm: imports happen before any payload exists
        for module in preload:
            importlib.import_module(module)
        conn_in = Connection(fd_in, writable=False)
        pristine = crypten.cfg.config  # CrypTen's defaults, before any session's settings
        while True:
            try:
                boot: dict[str, Any] = pickle.loads(conn_in.recv_bytes())
            except EOFError:  # the launcher closed the set: nothing went wrong
                code = 0
                break
            result = _serve(crypten, boot, pipe, pristine)
            pipe.send(("ok", result))  # after the heartbeat stopped: the session's last word
            if not boot.get("reuse"):
                code = 0
                break
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            pipe.send(("err", *_describe(exc)))
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        # skip interpreter teardown: gloo destructors in a half-dead group can hang
        os._exit(code)


def _serve(crypten: Any, boot: dict[str, Any], pipe: _Pipe, pristine: Any) -> Any:
    """One session in this process: the party's (or the dealer's) result. Raises what the
    session raised; the process is then killed, never reused."""
    import torch

    wire.new_session()  # heartbeats count this session's bytes, as in a fresh process
    pipe.send(("alive",))  # started: the launcher's stall clock runs from here
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(pipe, stop), daemon=True)
    beat.start()
    try:
        os.environ.update(boot["env"])
        torch.set_num_threads(1)
        crypten.cfg.config = pristine  # nothing of an earlier session's settings stays
        apply_config(boot["config"])
        freeze_config()  # plain attributes for this session
        # later than the launcher's stall check, which names the silent party
        set_collective_timeout(boot["stall_timeout"] + 10.0)
        rank, world_size = boot["rank"], boot["world_size"]
        if boot["dealer"]:
            fn, payload = boot["fn"], boot["payload"]
            from explorer.mpc.dealer import serve_as_dealer  # the dealer's process only

            result = serve_as_dealer(crypten, boot["key"], world_size,
                                     None if fn is None else lambda: fn(rank, world_size, payload))
        else:
            crypten.init()
            authenticate(boot["key"], crypten.communicator.get().ttp_group, rank, world_size)
            if world_size == 2:  # both parties on this machine: their own connection,
                # whose waits the launcher bounds (it watches every process, and the run)
                exchange.connect(boot["key"], crypten.communicator.get().main_group,
                                 boot["stall_timeout"] + 10.0)
            result = boot["fn"](rank, world_size, boot["payload"])
        if not boot["dealer"]:
            crypten.uninit()  # rank 0 tells the dealer to stop here; not after a failure
        if boot.get("reuse"):
            if crypten.is_initialized():  # the dealer's groups (the parties' are gone)
                crypten.uninit()
            _forget_session(crypten)
        return result
    finally:
        stop.set()
        beat.join()


def _forget_session(crypten: Any) -> None:
    """Leave nothing of the session that ended for the next one in this process: its own
    connection, the TTP client (crypten.uninit keeps it, with the generator it shares with
    the dealer and the deal's hook on its requests) and the provider's count of masks."""
    from crypten.mpc.provider.ttp_provider import TTPClient

    exchange.close()
    TTPClient.uninit()  # the next TTP session's init makes a new one, with fresh generators
    if "explorer.mpc.dealt" in sys.modules:  # the project's TTP provider is in use
        from explorer.mpc import dealt

        dealt.forget_session()


def _describe(exc: BaseException) -> tuple[str, str, bytes | None]:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        blob: bytes | None = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:
        blob = None
    return name, f"{exc}\n{''.join(traceback.format_exception(exc))}", blob


def die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGKILL when the launching process dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


if __name__ == "__main__":  # python -m explorer.mpc.party_process BOOT_FD RESULT_FD PARENT_PID ...
    serve_sessions(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
