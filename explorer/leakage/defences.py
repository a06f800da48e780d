"""What limits the leak: the defences an attack is measured under.

``bit-only`` and a public ``Policy`` need no protocol change; ``rounding`` (a public grid) and
``noise`` (each party's own, added inside MPC) are the protocol's own reveal defences
(explorer.appraisers.reveal), run exactly as a session runs them, under plaintext or CrypTen,
with the public weight bound that keeps the model owner from scaling its weights past them.
Both are random (the grid rounds stochastically), so the value-mode attackers repeat their
queries and average when the budget allows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from explorer.appraisers.base import Appraiser
from explorer.appraisers.reveal import Defences, weight_margin
from explorer.errors import ExplorerError

DEFENCES = ("none", "bit-only", "policy", "rounding", "noise")

# Public grid step and each party's noise standard deviation, nats on the revealed value: about
# 4% of the spread of WDBC's 30-row candidate values (benchmarks/leakage.py).
DEFAULT_GRID = 0.01
DEFAULT_NOISE = 0.01
# Public bound of a candidate row's feature norm (standardised units) that noise needs; WDBC's
# rows reach about 17, so the honest data owner's rows are not clipped.
DEFAULT_ROW_BOUND = 32.0


class Refused(ExplorerError):
    """A party refused a session under the public policy (or its ledger's budget is spent)."""


@dataclass(frozen=True)
class Policy:
    """A public policy both parties agree on before any session.

    Each rule is enforced by the party it protects, on what that party can see:

    - ``min_size`` and ``max_candidates`` (per session): the model owner, on the public sizes;
    - ``max_sessions``: each party's ledger of sessions with its counterpart (the data owner
      counts the sessions its candidate entered, the model owner those with this data owner);
    - ``distinct_rows`` (no repeated row in a candidate): protects the model owner, who cannot
      see the rows; it needs an MPC equality check that reveals one bit per candidate (a
      protocol addition). Here its outcome is computed in the clear as a stand-in. It catches
      exact repeats only: copies jittered by x ± 1e-3 r pass, and the attack loses nothing
      (the jitter's effect cancels to first order).

    An attacker waives the rules that protect itself: the model owner attacking a candidate
    meets only the data owner's ``max_sessions``.
    """

    min_size: int = 10
    max_candidates: int = 8
    max_sessions: int = 4
    distinct_rows: bool = True

    def __post_init__(self) -> None:
        for name in ("min_size", "max_candidates", "max_sessions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExplorerError(f"the policy's {name} must be a whole number of at least "
                                    f"1, got {value!r}.")

    def check_session(self, sizes: Sequence[int], sessions_so_far: int) -> None:
        """The model owner's check of a session's public metadata."""
        if sessions_so_far >= self.max_sessions:
            raise Refused(f"the policy allows {self.max_sessions} sessions and they are spent.")
        if len(sizes) > self.max_candidates:
            raise Refused(f"the policy allows {self.max_candidates} candidates a session, "
                          f"not {len(sizes)}.")
        if min(sizes) < self.min_size:
            raise Refused(f"the policy requires candidates of at least {self.min_size} rows, "
                          f"got one of {min(sizes)}.")


@dataclass(frozen=True)
class Defence:
    """What limits the leak: the reveal (``bits_only``), a public ``policy``, and the
    protocol's reveal ``defences`` (a public grid or each party's noise, with the weight bound
    checked inside MPC and, for noise, the data owner's row bound)."""

    name: str = "none"
    bits_only: bool = False
    policy: Policy | None = None
    defences: Defences = field(default_factory=Defences)

    @property
    def random(self) -> bool:
        """Whether a repeated query reveals a fresh draw (noise, or stochastic rounding)."""
        return self.defences.grid > 0 or self.defences.noise > 0

    @property
    def weight_bound(self) -> float | None:
        return self.defences.weight_bound


def make_defence(name: str, weight_bound: float | None = None, grid: float = DEFAULT_GRID,
                 noise: float = DEFAULT_NOISE, row_bound: float = DEFAULT_ROW_BOUND) -> Defence:
    """A defence by its command-line name. ``weight_bound`` is the public bound of the model
    owner's weight norm that rounding and noise need (``public_weight_bound``); the
    ``policy`` defence is the default ``Policy``."""
    if name not in DEFENCES:
        raise ExplorerError(f"unknown defence {name!r}; choose one of {', '.join(DEFENCES)}.")
    defences = Defences()
    if name in ("rounding", "noise"):
        if weight_bound is None:
            raise ExplorerError(f"the {name} defence needs the model owner's public weight "
                                f"bound (public_weight_bound).")
        level = grid if name == "rounding" else noise
        if not (isinstance(level, (int, float)) and math.isfinite(level) and level > 0):
            raise ExplorerError(f"the {'grid' if name == 'rounding' else 'noise'} must be a "
                                f"positive number, got {level!r}.")
        defences = Defences(grid=level, weight_bound=weight_bound) if name == "rounding" \
            else Defences(noise=level, weight_bound=weight_bound, row_bound=row_bound)
    return Defence(name=name, bits_only=name == "bit-only",
                   policy=Policy() if name == "policy" else None,
                   defences=defences)


def public_weight_bound(appraiser: Appraiser) -> float:
    """The bound the model owner announces for rounding and noise: its honest weight norm,
    with room for the check's margin, rounded up to a power of two (one public number)."""
    weights = appraiser.weights_
    norm = float(weights.norm()) / (1 - 2 * weight_margin(weights.numel()))
    return 2.0 ** math.ceil(math.log2(norm)) if norm > 0 else 1.0
