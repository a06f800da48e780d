"""Fetch a file into a cache directory atomically: either the whole file appears, or nothing."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from explorer.errors import ExplorerError
from explorer.output import atomic_file


def download(url: str, dest: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (a file path) unless it exists; return ``dest``."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(dest, binary=True, suffix=".part") as out, \
                urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
    except OSError as exc:
        raise ExplorerError(f"could not download {url} ({exc}); put the file at {dest} "
                            f"yourself or pass a directory that holds it.") from exc
    return dest
