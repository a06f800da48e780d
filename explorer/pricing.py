"""Pricing appraised data: a rate per nat of predicted test-loss reduction, with a floor.

Following the marketplace blog post in the project's seeds: useful data is priced by how much
it would improve the model, useless and harmful data at the floor, and data the buyer already
holds (duplicates of its own training set) must not be paid for.

Duplicates do lower the test loss under the paper's objective (re-weighting one's own data acts
like weaker regularisation), but the buyer gets that for free. So a calibrated rule pays only for
the predicted reduction beyond re-using its own data: the model owner computes in the clear, from
its per-sample influences, the mean and standard deviation of the influence of a random m-sample
subset of its own training set, and the threshold is that mean plus ``z`` standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer import model
from explorer.appraisers.influence import influence_vector
from explorer.errors import ExplorerError
from explorer.seed import SeedModel

# The calibrated threshold: the own-data baseline's mean plus this many standard deviations.
PRICE_THRESHOLD_SD = 3.0


def own_data_baseline(seed: SeedModel, size: int) -> tuple[float, float]:
    """Mean and standard deviation (nats) of the influence of `size` samples drawn at random
    from D_tr (without replacement when size <= |D_tr|): exact finite-population moments."""
    if size < 1:
        raise ExplorerError(f"the candidate size must be positive, got {size}.")
    v = influence_vector(seed).reshape(-1)
    a = (model.per_sample_grads(seed.theta, seed.X_train, seed.y_train) @ v).numpy()
    a = a / seed.n_seed
    n = len(a)
    var = size * a.var() * ((n - size) / (n - 1) if size <= n else 1.0)
    return float(size * a.mean()), float(np.sqrt(max(var, 0.0)))


@dataclass(frozen=True)
class PricingRule:
    """price = max(rate * (value - threshold), floor): a candidate is paid for the predicted
    test-loss reduction (nats, influence's unit) beyond ``threshold``. With ``flat`` set only the
    bit value > threshold is needed, and the price is ``flat`` or ``floor``."""

    rate: float
    threshold: float = 0.0
    floor: float = 0.0
    flat: float | None = None

    def __post_init__(self):
        for name in ("rate", "threshold", "floor"):
            if not np.isfinite(getattr(self, name)):
                raise ExplorerError(f"the pricing {name} must be a finite number.")
        if self.rate < 0 or self.floor < 0 or (self.flat is not None and self.flat < 0):
            raise ExplorerError("prices, rates and floors cannot be negative.")

    def prices(self, values) -> np.ndarray:
        """Prices (n,) for appraisal values (n,), or for bits (0/1) when ``flat`` is set."""
        values = np.asarray(values, dtype=np.float64)
        if self.flat is not None:
            return np.where(values > self.threshold, self.flat, self.floor)
        return np.maximum(self.rate * (values - self.threshold), self.floor)

    @classmethod
    def calibrated(cls, seed: SeedModel, size: int, rate: float, z: float = PRICE_THRESHOLD_SD,
                   floor: float = 0.0, flat: float | None = None) -> PricingRule:
        """Threshold = own-data baseline mean + z sd for candidates of ``size`` samples."""
        mean, sd = own_data_baseline(seed, size)
        return cls(rate=rate, threshold=mean + z * sd, floor=floor, flat=flat)
