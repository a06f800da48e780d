"""What every appraiser is: one definition of its computation, which knows nothing of where it runs.

An appraiser says three things:

- ``model_owner_inputs(public)``: what the model owner enters, prepared in the clear from its
  own data only (with ``model_owner_shapes``, the public shapes the data owner expects);
- the data owner's input is always the candidate batch (explorer.appraisers.batch);
- ``compute(inputs, A, Y, public)``: the value of each candidate, written once with operations
  torch tensors and CrypTensors share;
- ``check_fixed_point(inputs, bits)``: its fixed-point needs, checked before encryption.

Where it runs is a runner's business: ``explorer.appraisers.plaintext.PlaintextRunner`` runs
``compute`` on torch tensors, ``explorer.mpc.runner.PrivateRunner`` on CrypTensors in a private
session (explorer.mpc.protocol). Both return one ``explorer.appraisers.result.Appraisal``.

Orientation everywhere: a higher value means a more valuable candidate.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from explorer.errors import ExplorerError
from explorer.seed import SeedModel

# Copies of a private value always agree within this many units of 2^-precision_bits (see
# Appraiser.agreement).
AGREEMENT_ULPS = 64


@dataclass(frozen=True)
class Public:
    """What both parties know before an appraisal: the appraiser and its hyper-parameters, the
    model's shape, the candidates' sizes and the seed set's public sizes and L2 strength."""

    appraiser: str
    params: tuple[tuple[str, Any], ...]
    n_features: int  # d
    n_outputs: int  # C
    sizes: tuple[int, ...]  # |D_a| of each candidate
    n_seed: int  # |D_tr|
    n_test: int  # |D_te|
    lam: float
    family: str = "logistic"  # the seed model's family (explorer.constraints.MODELS)
    hidden: tuple[int, ...] = ()  # an mlp's hidden widths
    activation: str = ""  # an mlp's hidden activation

    @property
    def n_candidates(self) -> int:
        return len(self.sizes)

    @property
    def size(self) -> int:
        """Rows of the padded candidate batch."""
        return max(self.sizes)

    @property
    def d1(self) -> int:
        return self.n_features + 1

    def sizes_tensor(self) -> torch.Tensor:
        return torch.tensor(self.sizes, dtype=torch.float64)


def candidate_pairs(candidates) -> list[tuple]:
    """The candidates as a list of (X, y) pairs; one sentence when they are not."""
    if candidates is None or isinstance(candidates, (str, bytes)) \
            or not isinstance(candidates, Iterable):
        raise ExplorerError(f"an appraisal takes a list of (X, y) pairs, got "
                            f"{type(candidates).__name__}.")
    pairs = list(candidates)
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ExplorerError(f"candidate {i} must be a pair (X, y) of features and labels, got "
                                f"{type(pair).__name__}; for a market's Candidate c pass "
                                f"(c.X, c.y).")
    return pairs


class Appraiser(ABC):
    """Scikit-learn-shaped: ``fit(seed)`` does the model owner's one-off work on its seed model;
    a runner then appraises candidates (standardised features (m, d), labels (m,)) with it."""

    name: ClassVar[str]
    model_owner_data: ClassVar[str]  # in words: what the model owner enters

    # -- the definition ------------------------------------------------------------------

    def params(self) -> dict:
        """The hyper-parameters, public: both parties build the same definition from them."""
        return {}

    @abstractmethod
    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        """The public shape of each of the model owner's inputs."""

    @abstractmethod
    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        """The model owner's inputs (float64), prepared in the clear from its own data."""

    @abstractmethod
    def compute(self, inputs: dict, A, Y, public: Public):
        """Values (B,) of the candidates A (B, m, d1), Y (B, m, C); torch or CrypTen."""

    # whether the model owner's inputs have a norm a public weight bound can limit
    bounds_weights: ClassVar[bool] = False

    def weight_excess(self, inputs: dict, public: Public, weight_bound: float):
        """A vector that is <= 0 everywhere iff the inputs respect ``weight_bound`` (torch or
        CrypTen; see explorer.appraisers.reveal)."""
        raise ExplorerError(f"the {self.name} appraiser has no weight bound.")

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        """Refuse inputs that could overflow the fixed-point ring (see explorer.mpc.protocol)."""
        from explorer.appraisers.fixed_point import check_parameters

        check_parameters(inputs["theta"], precision_bits)

    def diagnose(self, values: Sequence[float]) -> list[str]:
        """Per candidate, "" or a short note a model owner can act on. No test-loss reduction
        can exceed the seed's whole test loss (losses are non-negative)."""
        loss = self._fitted().test_loss
        return [self._beyond_test_loss if v > loss else "" for v in values]

    _beyond_test_loss = "exceeds the seed's whole test loss, which no data can remove"

    # Two independently shared copies of a private value agree within this fraction of the
    # larger of their magnitudes and the batch's median magnitude (README: verified values),
    # and always within AGREEMENT_ULPS units of the fixed-point resolution 2^-precision_bits:
    # copies of a value near zero differ by a few units of rounding noise, while a failed
    # truncation is off by about 2^(64 - 2 precision_bits) or more.
    agreement: ClassVar[float] = 0.01

    def possible(self, values: np.ndarray) -> np.ndarray:
        """Per value: whether it obeys the bounds every value of this appraiser obeys."""
        return np.isfinite(values)

    def verified(self, values: np.ndarray, bits: bool, grid: float,
                 precision_bits: int) -> np.ndarray:
        """Which candidates' private values to trust: values (copies, B) revealed from
        independent sharings; bits when only value > threshold was revealed; ``grid`` the public
        rounding step (0: none) and ``precision_bits`` the fixed point's fractional bits."""
        first = values[0]
        if bits:
            ok = np.isin(first, (0.0, 1.0))
            return ok & (values[0] == values[-1])
        # the bounds need the model owner's seed model; a data owner checks agreement only.
        # A grid rounds each copy stochastically: within one step of the value, and of the
        # other copy (both copies carry the same noise, see explorer.appraisers.reveal)
        step = grid
        if hasattr(self, "seed_"):
            ok = self.possible(first - step) | self.possible(first + step)
        else:
            ok = np.isfinite(first)
        if len(values) > 1:
            floor = float(np.median(np.abs(values)))
            tol = self.agreement * np.maximum(np.abs(values).max(axis=0), floor) + step \
                + AGREEMENT_ULPS * 2.0 ** -precision_bits
            ok &= np.abs(values[0] - values[1]) <= tol
        return ok

    # -- the model owner's one-off work ------------------------------------------------

    # the seed models of this appraiser's family (explorer.seed)
    family: ClassVar[str] = "logistic"
    seed_type: ClassVar[type] = SeedModel

    def fit(self, seed) -> Appraiser:
        if not isinstance(seed, self.seed_type):
            got = getattr(seed, "family", None)
            raise ExplorerError(
                f"the {self.family} family's {self.name} appraiser takes a {self.family} seed "
                f"model (fit_seed_model(task, model={self.family!r})), got "
                + (f"a {got} seed model." if isinstance(got, str) else
                   f"{type(seed).__name__}."))
        start = time.perf_counter()
        self.seed_ = seed
        self._setup(seed)
        self.setup_seconds_ = time.perf_counter() - start
        return self

    def _setup(self, seed: SeedModel) -> None:  # noqa: B027 - most appraisers need no set-up
        pass

    def public(self, sizes: Sequence[int]) -> Public:
        """The public metadata of appraising candidates of these sizes with this model."""
        s = self._fitted()
        return Public(appraiser=self.name, params=tuple(sorted(self.params().items())),
                      n_features=s.n_features, n_outputs=s.theta.shape[1],
                      sizes=tuple(int(n) for n in sizes), n_seed=s.n_seed,
                      n_test=len(s.y_test), lam=s.lam)

    def _fitted(self) -> SeedModel:
        if not hasattr(self, "seed_"):
            raise ExplorerError(f"the {self.name} appraiser is not fitted; call "
                                f"fit(seed_model) first.")
        return self.seed_

    def check_candidates(self, candidates) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(X, y), ...] checked against the fitted seed model (see SeedModel.check_candidate)."""
        seed = self._fitted()
        return [seed.check_candidate(X, y) for X, y in candidate_pairs(candidates)]

    def check_private(self) -> None:  # noqa: B027 - most appraisers run privately as defined
        """Refuse, in one sentence, a definition that cannot run under MPC."""

    def work_per_row(self) -> int:
        """Relative memory per candidate row (C and steps), to size plaintext chunks."""
        return int(self.seed_.theta.shape[1])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
