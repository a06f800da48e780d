"""How a private appraisal runs: ``MPCOptions``, validated once where they are made.

Importing this module imports neither torch.distributed nor CrypTen: the configuration
(explorer.config) and the command line read it before anything private starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from explorer.appraisers.reveal import Defences
from explorer.constraints import DEFAULTS, check_params, default_provider
from explorer.errors import ExplorerError
from explorer.ledger import Budget


@dataclass(frozen=True)
class MPCOptions:
    """Processes (``mode``: real parties or one simulated process), fixed point, triple
    provider, what is revealed (value or bit, with the model owner's threshold in bit mode),
    the whole session's deadline (s), whether every value is computed twice from independent
    sharings (``verify``), the number of data owners (``sellers``: the candidates split into
    that many consecutive blocks, each entered by its own process, real parties only) and the
    query ledger's limits (``budget``, real parties only)."""

    mode: str = DEFAULTS["mode"]
    precision_bits: int = DEFAULTS["precision_bits"]
    provider: str = DEFAULTS["provider"]
    reveal: str = DEFAULTS["reveal"]
    threshold: float = DEFAULTS["threshold"]
    timeout: float = DEFAULTS["timeout"]
    verify: bool = DEFAULTS["verify"]
    sellers: int = DEFAULTS["sellers"]
    budget: Budget = field(default_factory=Budget)

    def __post_init__(self) -> None:
        check_params({k: v for k, v in asdict(self).items() if k != "budget"})
        if not isinstance(self.budget, Budget):
            raise ExplorerError("budget must be an explorer.ledger.Budget.")
        if self.mode == "simulated" and self.provider == "TTP":
            raise ExplorerError("simulated mode runs one process and has no dealer; use "
                                "provider TFP or mode parties.")
        if self.mode == "simulated" and self.sellers > 1:
            raise ExplorerError(f"simulated mode runs one process for every party, so it has "
                                f"no {self.sellers} data owners to keep apart; use mode "
                                f"parties or one data owner.")

    @classmethod
    def for_mode(cls, mode: str, **options) -> MPCOptions:
        """Options for ``mode`` with its own provider (explorer.constraints.default_provider)
        unless ``options`` name one."""
        return cls(mode=mode, **{"provider": default_provider(mode), **options})

    def sellers_of(self, n: int) -> list[int]:
        """The data owner (1 .. sellers) of each of ``n`` candidates: consecutive blocks, as
        even as they go (the first n mod sellers blocks one candidate larger)."""
        if n < self.sellers:
            raise ExplorerError(f"{self.sellers} data owners (--sellers) need at least "
                                f"{self.sellers} candidates, one each, but there are {n}; use "
                                f"fewer data owners or more candidates.")
        base, extra = divmod(n, self.sellers)
        return [j + 1 for j in range(self.sellers) for _ in range(base + (j < extra))]

    @property
    def bits(self) -> bool:
        """Whether only the bit value > threshold is revealed."""
        return self.reveal == "bit"

    def check_defences(self, defences: Defences) -> None:
        """The rules that join these options and the public reveal defences."""
        if not isinstance(defences, Defences):
            raise ExplorerError("defences must be an explorer.appraisers.reveal.Defences.")
        grid = defences.grid
        if grid > 0 and self.sellers > 1:
            raise ExplorerError("the grid (--grid) rounds by two-party CrypTen's local "
                                "truncation, which several data owners do not have; drop the "
                                "grid or appraise with one data owner.")
        if grid > 0 and self.bits:
            raise ExplorerError("the grid (--grid) rounds revealed values; bit mode reveals "
                                "bits, so drop one of them.")
        if 0 < grid < 2.0 ** -self.precision_bits:
            raise ExplorerError(f"the grid (--grid) {grid:g} is finer than "
                                f"{self.precision_bits}-bit fixed point resolves; use at least "
                                f"{2.0 ** -self.precision_bits:.3g}.")
