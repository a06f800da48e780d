"""Helpers for the notebook and browser tests: an isolated Jupyter environment, a Voila server
that always goes away, and process-tree bookkeeping. Nothing here depends on pytest.

Jupyter, Voila, IPython and Chromium write into HOME (~/.jupyter, ~/.local/share/jupyter,
~/.ipython, ~/.config/chromium); every helper points those at a temporary folder instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from explorer.memory import children_of

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BIN = Path(sys.executable).parent  # the virtualenv's bin: voila, jupyter, python
CHROMIUM = Path("/usr/bin/chromium")
SERVER_CONFIG = ROOT / "binder"  # voila.py: the settings `make demo` and Binder serve with


def isolated_env(home: Path) -> dict[str, str]:
    """os.environ with HOME, the JUPYTER_* folders and IPYTHONDIR inside ``home``, the venv's bin
    first on PATH (so the kernel is the venv's python) and the project importable."""
    home = Path(home)
    folders = {"HOME": home, "JUPYTER_CONFIG_DIR": home / "jupyter-config",
               "JUPYTER_DATA_DIR": home / "jupyter-data",
               "JUPYTER_RUNTIME_DIR": home / "jupyter-runtime",
               "IPYTHONDIR": home / "ipython", "XDG_CONFIG_HOME": home / "config",
               "XDG_CACHE_HOME": home / "cache", "MPLCONFIGDIR": home / "mpl"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update({k: str(v) for k, v in folders.items()})
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["JUPYTER_PLATFORM_DIRS"] = "1"  # no deprecation warning about the folders' future
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # no debugger warning on stderr
    return env


@contextlib.contextmanager
def patched_environ(env: dict[str, str]) -> Iterator[None]:
    """Run a block (e.g. nbclient in this process) with os.environ replaced by ``env``."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every live (non-zombie) process below ``pid``, from /proc."""
    return children_of(pid)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def in_group(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found


def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group started by ``proc`` (start_new_session=True), then SIGKILL
    whatever is left of the group and of the process tree after ``grace`` seconds."""
    tree = [proc.pid, *descendants(proc.pid)]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (proc.poll() is None or in_group(proc.pid)):
        time.sleep(0.05)
    for pid in {*tree, *in_group(proc.pid)}:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


@dataclass
class Voila:
    url: str  # http://127.0.0.1:<port>
    process: subprocess.Popen
    log: Path


@contextlib.contextmanager
def voila_server(target: Path, home: Path, timeout: float = 60.0,
                 options: tuple[str, ...] = ()) -> Iterator[Voila]:
    """Serve ``target`` (a notebook or a folder of them) with Voila on 127.0.0.1 and a free port,
    with the project's server settings (binder/voila.py, as `make demo`) and then ``options``
    (e.g. ``--MappingKernelManager.cull_interval=1``); yield once it answers; always stop the
    whole process group (server and kernels)."""
    port = free_port()
    log = Path(home) / "voila.log"
    env = isolated_env(home)
    cmd = [str(BIN / "voila"), str(target), "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", "--show_tracebacks=True",
           f"--Voila.connection_dir_root={env['JUPYTER_RUNTIME_DIR']}",
           f"--Voila.config_file_paths={SERVER_CONFIG}", *options]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=Path(target).parent, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/voila/static/extension.js", proc, log, timeout)
        yield Voila(url, proc, log)
    finally:
        kill_group(proc)


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll ``url`` until anything answers over HTTP (403 included); fail with the server's log
    if it exits or does not answer in time. (Polling ``/`` would start a kernel.)"""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with {proc.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"voila did not answer {url} within {timeout:g} s:\n{tail(log)}")
        time.sleep(0.1)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
