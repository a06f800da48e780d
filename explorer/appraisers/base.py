"""What every appraiser shares: fit once to the model owner's seed model, then value candidates.

Orientation everywhere: a higher value means a more valuable candidate.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch

from explorer.errors import Cancelled, ExplorerError
from explorer.seed import SeedModel

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class Appraiser(ABC):
    """Scikit-learn-shaped: ``fit(seed)`` does the model owner's one-off work, ``value(X, y)``
    appraises one candidate (standardised features (m, d), labels (m,))."""

    name: ClassVar[str]
    backend: ClassVar[str] = "plaintext"

    def fit(self, seed: SeedModel) -> Appraiser:
        start = time.perf_counter()
        self.seed_ = seed
        self._setup(seed)
        self.setup_seconds_ = time.perf_counter() - start
        return self

    def _setup(self, seed: SeedModel) -> None:  # noqa: B027 - most appraisers need no set-up
        pass

    def value(self, X, y) -> float:
        """The appraised value of one candidate dataset; higher is more valuable."""
        if not hasattr(self, "seed_"):
            raise ExplorerError(f"the {self.name} appraiser is not fitted; call fit(seed_model) "
                                f"first.")
        X, y = self.seed_.check_candidate(X, y)
        return float(self._value(X, y))

    @abstractmethod
    def _value(self, X: torch.Tensor, y: torch.Tensor) -> float: ...

    def appraise_many(self, candidates: Sequence[tuple], progress: Progress | None = None,
                      cancel: threading.Event | None = None) -> list[dict]:
        """Appraise [(X, y), ...]; per candidate its value, its seconds and the cost columns
        (plaintext_seconds includes this appraiser's share of the set-up).

        ``progress(phase, done, total)`` is called as candidates are done; setting ``cancel``
        stops the job with Cancelled.
        """
        rows = []
        for i, (X, y) in enumerate(candidates):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"the {self.name} appraisal was cancelled.")
            start = time.perf_counter()
            value = self.value(X, y)
            seconds = time.perf_counter() - start
            rows.append({"value": value, "seconds": seconds,
                         "plaintext_seconds": seconds + self.setup_seconds_ / len(candidates),
                         "private_seconds": 0.0, "bytes": 0, "rounds": 0})
            if progress:
                progress(self.name, i + 1, len(candidates))
        return rows

    def params(self) -> dict:
        """The appraiser's hyper-parameters, for reports."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
