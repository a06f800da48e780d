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

from explorer.appraisers import Appraiser, PlaintextRunner, definition
from explorer.errors import ExplorerError
from explorer.seed import AnySeed

# The calibrated threshold: the own-data baseline's mean plus this many standard deviations.
PRICE_THRESHOLD_SD = 3.0


def per_sample_influence(seed: AnySeed, influence: Appraiser | None = None) -> np.ndarray:
    """The influence value (nats) of each seed training sample on its own, (n_seed,), by the
    seed model's family's influence appraiser (``influence``, unfitted: its definition with
    the run's hyper-parameters; default: the family's with its defaults). Every family's
    influence value is a sum over the candidate's rows (v · G(D_a) / n_seed), so a subset's
    value is the sum of these."""
    appraiser = definition(seed.family, "influence") if influence is None else influence
    if not isinstance(appraiser, Appraiser) or appraiser.name != "influence":
        raise ExplorerError("the own-data baseline needs an influence appraiser's definition "
                            "(AppraiserConfig.build('influence', family)).")
    appraiser.fit(seed)
    rows = [(seed.X_train[i:i + 1], seed.y_train[i:i + 1]) for i in range(seed.n_seed)]
    return np.asarray(PlaintextRunner().run(appraiser, rows).values, dtype=np.float64)


def own_data_baseline(seed: AnySeed, size: int,
                      influence: Appraiser | None = None) -> tuple[float, float]:
    """Mean and standard deviation (nats) of the influence of `size` samples drawn at random
    from D_tr (without replacement when size <= |D_tr|): exact finite-population moments of
    ``per_sample_influence`` (``influence``: the influence appraiser's definition, as there)."""
    if size < 1:
        raise ExplorerError(f"the candidate size must be positive, got {size}.")
    a = per_sample_influence(seed, influence)
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
    def calibrated(cls, seed: AnySeed, size: int, rate: float, z: float = PRICE_THRESHOLD_SD,
                   floor: float = 0.0, flat: float | None = None,
                   influence: Appraiser | None = None) -> PricingRule:
        """Threshold = own-data baseline mean + z sd for candidates of ``size`` samples, by
        the seed model's family's ``influence`` appraiser (``own_data_baseline``)."""
        mean, sd = own_data_baseline(seed, size, influence)
        return cls(rate=rate, threshold=mean + z * sd, floor=floor, flat=flat)
