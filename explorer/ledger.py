"""A query ledger each party keeps for itself: what it has revealed to which counterparty.

Revealed values leak (the paper's §6, explorer.leakage): a party that may ask many times can
reconstruct what the other side holds. Each party therefore counts, per counterparty, the
sessions it took part in and the values and bits those sessions revealed, and refuses a session
that would take any count past the budget it set for that counterparty, before anything is
computed.

The counterparty is identified by the session key (a SHA-256 fingerprint of it, never the key)
or, where no key exists (local runs, which make a fresh key per session), by the fingerprint of
the model owner's public encoding. The ledger is a JSON file in the user's cache directory
(``$APPRAISAL_EXPLORER_CACHE`` or ``~/.cache/appraisal-explorer``); every update takes an
exclusive lock and replaces the file atomically, so two processes never lose a count and a crash
mid-write leaves the previous ledger intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from explorer.errors import ExplorerError
from explorer.loaders.base import cache_dir
from explorer.output import atomic_file

COUNTS = ("sessions", "values", "bits")


def fingerprint(data: bytes | str | dict) -> str:
    """A short public identifier of a session key or an encoding (SHA-256, 16 hex digits)."""
    if isinstance(data, dict):
        data = json.dumps(data, sort_keys=True)
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(b"appraisal-explorer counterparty|" + data).hexdigest()[:16]


@dataclass(frozen=True)
class Budget:
    """The most a party will reveal to one counterparty, over all sessions (None: no limit)."""

    sessions: int | None = None
    values: int | None = None
    bits: int | None = None

    def __post_init__(self) -> None:
        for name in COUNTS:
            limit = getattr(self, name)
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                      or limit < 0):
                raise ExplorerError(f"the ledger budget for {name} must be a whole number "
                                    f"of at least 0, got {limit!r}.")


class Ledger:
    """The counts one user's parties have revealed, by (role, counterparty)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else cache_dir("ledger") / "ledger.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        """The ledger's entries under an exclusive lock; written back atomically on exit."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path.with_suffix(".lock"), "a")  # noqa: SIM115 - held below
        except OSError as exc:
            raise ExplorerError(f"cannot open the query ledger in {self.path.parent} "
                                f"({exc.strerror}); set APPRAISAL_EXPLORER_CACHE to a "
                                f"writable directory.") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            before = json.dumps(entries, sort_keys=True)
            yield entries
            if json.dumps(entries, sort_keys=True) != before:
                self._write(entries)

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ExplorerError(f"the query ledger {self.path} is unreadable ({exc}); move it "
                                f"aside to start counting anew.") from None
        if not isinstance(entries, dict):
            raise ExplorerError(f"the query ledger {self.path} is not a ledger; move it aside "
                                f"to start counting anew.")
        return entries

    def _write(self, entries: dict) -> None:
        with atomic_file(self.path) as f:
            json.dump(entries, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())

    @staticmethod
    def _key(role: str, counterparty: str) -> str:
        return f"{role} -> {counterparty}"

    def counts(self, role: str, counterparty: str) -> dict[str, int]:
        """What ``role`` has revealed to ``counterparty`` so far."""
        with self._locked() as entries:
            return {**dict.fromkeys(COUNTS, 0),
                    **entries.get(self._key(role, counterparty), {})}

    def spend(self, role: str, counterparty: str, budget: Budget, *, values: int = 0,
              bits: int = 0, sessions: int = 1) -> dict[str, int]:
        """Record a session that reveals ``values`` values and ``bits`` bits to
        ``counterparty``, or refuse it, recording nothing, if any count would pass ``budget``.
        Call before the session computes; returns the counts after it."""
        with self._locked() as entries:
            key = self._key(role, counterparty)
            now = {**dict.fromkeys(COUNTS, 0), **entries.get(key, {})}
            after = {"sessions": now["sessions"] + sessions, "values": now["values"] + values,
                     "bits": now["bits"] + bits}
            for name in COUNTS:
                limit = getattr(budget, name)
                if limit is not None and after[name] > limit:
                    raise ExplorerError(
                        f"this session would reveal {after[name] - now[name]} more {name} to "
                        f"counterparty {counterparty}, past the {role}'s budget of {limit} "
                        f"({now[name]} already); nothing was computed. Raise the budget "
                        f"(--budget-{name}) only if you accept what more answers leak.")
            entries[key] = after
            return after
