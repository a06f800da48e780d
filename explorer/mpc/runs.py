"""What every way of running the parties shares: the party function's signature, the parties'
names in messages, and what a run between real processes ends in (its result, or an error
naming the party at its root)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# fn(rank, world_size, payload) -> result: the code every party (and a rehearsing dealer) runs
PartyFn = Callable[[int, int, Any], Any]


def role(rank: int | None, world_size: int = 2) -> str:
    """The party's name in messages: model owner (rank 0), data owner (1), dealer (TTP); with
    several data owners (world size above 2), data owner j is rank j."""
    if rank is None or rank >= world_size:
        return "dealer"
    if rank == 0:
        return "model owner"
    return "data owner" if world_size <= 2 else f"data owner {rank}"


@dataclass(frozen=True)
class LaunchResult:
    """What a run of party processes returned: each party's result by rank, the run's wall
    seconds (starting the processes included), their pids by role, the dealer's result and
    the seconds until every process was up with its payload (start-up and handoff)."""

    results: list[Any]  # index = party rank
    wall_s: float
    pids: dict[str, int]  # by role
    dealer: Any = None  # what the dealer returned: its wire count, {"bytes", "rounds"}
    up_s: float = 0.0  # from the launch until the last process had its payload


class LaunchError(RuntimeError):
    """A run failed. ``party`` names the process at its root (None: the launcher itself),
    ``original`` is that party's own exception when it could be sent back, ``pids`` the run's
    processes by role."""

    def __init__(self, message: str, party: str | None = None,
                 original: BaseException | None = None, pids: Mapping[str, int] | None = None):
        super().__init__(message)
        self.party, self.original, self.pids = party, original, dict(pids or {})


class LaunchTimeout(LaunchError, TimeoutError):
    """The whole run exceeded its deadline."""


class LaunchCancelled(LaunchError):
    """The run was cancelled by its caller."""
