"""One process that imports torch, CrypTen and the protocol once and forks a kept party set's
processes from itself, so that what those imports hold in memory is shared between them.

Importing torch and CrypTen leaves about 160 MB of private memory in a process (torch's
operator tables and Python objects), and a fresh ``python -m explorer.mpc.party_process`` process
per party held it three times for every dashboard kernel. Forked from one process that has
imported everything, the parties share those pages copy-on-write and each holds privately only
what its sessions write (measured in benchmarks/class_load.py and tests/test_kernel_parties.py).

The forker is started like any party process (its own process group, a parent-death signal
towards the thread that started it, one thread per BLAS/OpenMP pool) and never runs a tensor
operation itself, so no thread pool exists when it forks. It receives each new process's two
pipe ends over a Unix socket (SCM_RIGHTS) and answers with the process's id; it is the parent
of what it forks, so the launcher asks it for their exit status (``poll``), as it would ask
``subprocess.Popen``. A forked process starts its own process group and session, re-seeds every
random generator it inherited (two forks must never draw the same masks), gets a parent-death
signal towards the forker, and runs :func:`explorer.mpc.party_process.serve_sessions`. When the
launching process ends, the forker's socket closes or its parent-death signal arrives; it
exits, and its processes receive their parent-death signal in turn.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from explorer.mpc.crypten_compat import load_crypten
from explorer.mpc.party_process import die_with_parent, serve_sessions
from explorer.mpc.runs import LaunchError

REQUEST_BYTES = 64


class ForkedProcess:
    """A process forked by a :class:`Forker`, with the part of ``subprocess.Popen``'s interface
    the launcher uses (``pid``, ``returncode``, ``poll``, ``wait``)."""

    def __init__(self, forker: Forker, pid: int):
        self.forker, self.pid = forker, pid
        self._code: int | None = None

    @property
    def returncode(self) -> int | None:
        """Its exit status once known to have ended and been reaped (by the forker, or, once
        the forker has ended and taken it along, by init), else None."""
        if self._code is None and not self.forker.alive():
            self._code = -signal.SIGKILL
        return self._code

    def poll(self) -> int | None:
        """Its exit status (negative: killed by that signal) once it has ended, else None."""
        if self.returncode is None:
            self._code = self.forker.status(self.pid)
        return self._code

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status, waiting up to ``timeout`` seconds (subprocess.TimeoutExpired)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"forked party process {self.pid}", timeout)
            time.sleep(0.02)
        return code


class Forker:
    """The forking process of one kept party set (module docstring). ``start`` returns at
    once; the first ``fork`` waits until the forker has imported everything."""

    def __init__(self, preload: Sequence[str] = ()):
        self.preload = tuple(preload)
        self.lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1"}
        env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "explorer.mpc.forker", str(theirs.fileno()),
                 str(os.getpid()), *self.preload],
                pass_fds=(theirs.fileno(),), start_new_session=True, env=env,
                stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours

    @property
    def pid(self) -> int:
        return int(self.popen.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _ask(self, request: bytes, fds: Sequence[int] = ()) -> bytes:
        """The forker's reply; OSError if it has ended (or ends meanwhile)."""
        with self.lock:
            socket.send_fds(self.sock, [request], list(fds))
            reply = self.sock.recv(REQUEST_BYTES)
        if not reply:
            raise ConnectionResetError("the forker closed its socket")
        return reply

    def fork(self, fd_in: int, fd_out: int) -> ForkedProcess:
        """A new party process reading its boots from ``fd_in`` and writing to ``fd_out`` (the
        caller closes its copies of both). Raises LaunchError if the forker has ended."""
        try:
            return ForkedProcess(self, int(self._ask(b"fork", (fd_in, fd_out))))
        except OSError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5.0)
            code = self.popen.returncode
            raise LaunchError(
                f"the process that starts the party processes (pid {self.pid}) ended"
                + (f" with exit code {code}" if code is not None else "")
                + " before starting them; its error, if any, is printed above.") from None

    def status(self, pid: int) -> int | None:
        """The exit status of forked process ``pid`` (reaping it), None while it runs. A
        process the forker no longer knows, or a forker that has ended, reads as killed."""
        try:
            reply = self._ask(b"poll %d" % pid)
        except OSError:
            return -signal.SIGKILL  # the forker's end took its processes along
        return None if reply == b"running" else int(reply)

    def close(self) -> None:
        """Kill the forker (its processes get their parent-death signal) and reap it."""
        if self.popen.poll() is None:  # once reaped, its group id may be someone else's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10.0)


# --------------------------------------------------------------------------- forker side


def _reseed() -> None:
    """Every generator a fork inherited gets fresh entropy (Python's ``random`` does so by
    itself at fork): torch's default generator and NumPy's global one."""
    import numpy as np
    import torch

    torch.seed()
    np.random.seed()


def _forked(sock: socket.socket, fd_in: int, fd_out: int, forker_pid: int) -> None:
    """The body of a forked party process; never returns."""
    try:
        sock.close()
        os.setsid()  # its own process group: the launcher kills it with its stragglers
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _reseed()
        serve_sessions(fd_in, fd_out, forker_pid)  # exits the process
    finally:
        os._exit(1)


def serve(sock_fd: int, parent_pid: int, preload: Sequence[str]) -> None:
    """The forker's main loop: import everything, then fork on request until the launching
    process closes the socket."""
    import importlib

    die_with_parent(parent_pid)
    load_crypten()
    for module in preload:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()  # the collector never writes to what the forks share
    sock = socket.socket(fileno=sock_fd)
    me = os.getpid()
    while True:
        try:
            request, fds, _, _ = socket.recv_fds(sock, REQUEST_BYTES, 2)
        except OSError:
            break
        if not request:  # the launching process closed its end
            break
        if request == b"fork" and len(fds) == 2:
            pid = os.fork()
            if pid == 0:
                _forked(sock, fds[0], fds[1], me)
            for fd in fds:
                os.close(fd)
            sock.send(b"%d" % pid)
        elif request.startswith(b"poll "):
            try:
                done, status = os.waitpid(int(request.split()[1]), os.WNOHANG)
            except ChildProcessError:  # reaped already, or never ours
                sock.send(b"%d" % -signal.SIGKILL)
                continue
            sock.send(b"running" if done == 0 else b"%d" % os.waitstatus_to_exitcode(status))
        else:
            for fd in fds:
                os.close(fd)
            sock.send(b"%d" % -signal.SIGKILL)
    os._exit(0)


if __name__ == "__main__":  # python -m explorer.mpc.forker SOCKET_FD PARENT_PID [MODULE...]
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
