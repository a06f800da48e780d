"""Fetch a file into a cache directory atomically: either the whole file appears, or nothing."""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path

from explorer.errors import ExplorerError


def download(url: str, dest: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (a file path) unless it exists; return ``dest``."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dest)
    except OSError as exc:
        raise ExplorerError(f"could not download {url} ({exc}); put the file at {dest} "
                            f"yourself or pass a directory that holds it.") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
