"""What running an appraiser returns, wherever it ran: one ``Appraisal``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The cost columns of each candidate's row, as explorer.experiments writes them.
COST_COLUMNS = ("seconds", "plaintext_seconds", "private_seconds", "bytes", "rounds")


@dataclass(frozen=True)
class Appraisal:
    """An appraiser's values for a list of candidates and what they cost.

    ``values`` (n,): one per candidate, higher = more valuable (in bit mode the revealed bits,
    1.0 = value > threshold). ``costs`` maps each of COST_COLUMNS to (n,) per-candidate shares:
    ``seconds`` of wall time, ``plaintext_seconds`` (the appraiser's set-up shared evenly
    included), ``private_seconds`` of encrypted computation, ``bytes`` sent on the wire by every
    party and the dealer, each byte once, and ``rounds`` of the critical path (0 in plaintext).
    A private appraisal also carries its session ``account`` (explorer.mpc.account: who held,
    encrypted, sent and learned what), the query ledger's ``ledger_counts`` after it (real
    parties only), each ``sessions`` result (explorer.mpc.session.SessionResult) and the
    ``totals`` summed over those sessions (private, bytes, rounds, wall, prep: the sessions'
    inputs made in plaintext, startup and offline: parts of wall, sessions).
    """

    appraiser: str
    backend: str  # "plaintext" | "crypten"
    values: np.ndarray
    costs: dict[str, np.ndarray]
    setup_seconds: float
    account: Any = None
    ledger_counts: dict[str, int] | None = None
    sessions: tuple = ()
    totals: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.values)
        if set(self.costs) != set(COST_COLUMNS) or any(len(v) != n for v in self.costs.values()):
            raise ValueError(f"an Appraisal's costs have the columns {COST_COLUMNS}, one value "
                             f"per candidate.")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def last_session(self):
        """The last private session's result (None in plaintext)."""
        return self.sessions[-1] if self.sessions else None

    def rows(self) -> list[dict[str, float]]:
        """Per candidate: its value and its cost columns."""
        return [{"value": float(v), **{k: self.costs[k][i].item() for k in COST_COLUMNS}}
                for i, v in enumerate(self.values)]
