"""Writing result files so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from explorer.errors import ExplorerError


def _probe_directory(directory: Path, what: str) -> None:
    """Refuse a directory in which no new file can be created (creates and removes one)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".appraisal-explorer-probe."):
            pass
    except OSError as exc:
        raise ExplorerError(f"cannot write to {directory} ({exc.strerror or exc}); choose "
                            f"another place for {what}.") from None


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse, before any work, a path that cannot receive a new file."""
    path = Path(path)
    if not str(path).strip():
        raise ExplorerError("the output file name is empty; name a file to write.")
    if path.is_dir():
        raise ExplorerError(f"{path} is a directory; name a file to write, e.g. "
                            f"{path / 'results.csv'}.")
    if path.exists() and not path.is_file():
        raise ExplorerError(f"{path} exists and is not a regular file; name a file to write.")
    if path.parent.exists() and not path.parent.is_dir():
        raise ExplorerError(f"{path.parent} is a file, not a directory; name a file in a "
                            f"directory.")
    if not path.parent.is_dir():
        raise ExplorerError(f"the output directory {path.parent} does not exist; create it "
                            f"first.")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ExplorerError(f"the output directory {path.parent} is not writable; choose "
                            f"another place for {path.name}.")
    _probe_directory(path.parent, path.name)
    return path


def check_output_directory(path: str | os.PathLike) -> Path:
    """Refuse, before any work and without creating anything, a directory path that cannot be
    created or written to."""
    path = Path(path)
    if not str(path).strip():
        raise ExplorerError("the output directory name is empty; name a directory.")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ExplorerError(f"cannot create the output directory {path}: {existing} is a file; "
                            f"choose another directory.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExplorerError(f"the directory {existing} is not writable; choose another output "
                            f"directory than {path}.")
    _probe_directory(existing, str(path))
    return path


def ensure_directory(path: str | os.PathLike) -> Path:
    """Create the directory ``path`` (and its parents) if missing; refuse one that cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExplorerError(f"cannot create the output directory {path} ({exc.strerror}); "
                            f"choose a writable directory.") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ExplorerError(f"the output directory {path} is not writable; choose another.")
    return path


@contextlib.contextmanager
def atomic_file(path: Path, binary: bool = False, private: bool = True,
                suffix: str = ".tmp") -> Iterator[IO]:
    """A new file beside ``path`` (text in UTF-8, or ``binary``) that replaces ``path`` when the
    block ends, and is removed if it raises: either the whole file appears, or nothing.
    ``private`` leaves it readable by its owner only, as created; else as any new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with (os.fdopen(fd, "wb") if binary
              else os.fdopen(fd, "w", newline="", encoding="utf-8")) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: str | os.PathLike, write: Callable[[IO[str]], object],
                 private: bool = False) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then move it into place;
    ``private`` keeps it readable by its owner only, from creation on (secrets)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ExplorerError(f"the output directory {path.parent} does not exist; create it "
                            f"first.")
    try:
        with atomic_file(path, private=private) as f:
            write(f)
    except OSError as exc:
        raise ExplorerError(f"cannot write {path} ({exc.strerror or exc}); choose another "
                            f"place.") from None
    return path
