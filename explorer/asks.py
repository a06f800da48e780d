"""Sellers' asking prices: what each data owner asks for its candidate, before any appraisal.

The declared model: a seller prices its data by size alone, since it cannot see the buyer's
model and so cannot know what its data is worth to it. Candidate i of ``size_i`` samples asks

    price_i = per_sample * size_i * exp(noise * z_i),   z_i ~ N(0, 1) drawn from random_state,

a log-normal spread around ``per_sample * size_i`` (its median; ``noise`` is the log-price's
standard deviation, 0 for prices exactly proportional to size). The same random state gives
the same asks. Given asks (one per candidate) are checked by ``check_prices``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explorer.constraints import CONSTRAINTS, LABELS, check_params
from explorer.errors import ExplorerError
from explorer.market import Candidate

PRICE_PER_SAMPLE = 1.0  # currency units per sample: a 30-sample candidate asks about 30
PRICE_NOISE = 0.5  # the log-price's standard deviation: most asks within x0.37 .. x2.7


def asking_prices(candidates: Sequence[Candidate], per_sample: float = PRICE_PER_SAMPLE,
                  noise: float = PRICE_NOISE, random_state: int = 0) -> np.ndarray:
    """Each candidate's asking price (n,) float64, currency units, by the module's model."""
    check_params({"price_per_sample": per_sample, "price_noise": noise,
                  "random_state": random_state})
    sizes = np.array([c.size for c in candidates], dtype=np.float64)
    z = np.random.default_rng([random_state, 8]).standard_normal(len(sizes))
    return check_prices(per_sample * sizes * np.exp(noise * z), len(sizes))


def check_prices(prices, n_candidates: int) -> np.ndarray:
    """Asking prices as a float64 array (n_candidates,), or one sentence on what is wrong."""
    try:
        array = np.asarray(prices, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExplorerError(f"asking prices must be numbers, one per candidate, got "
                            f"{prices!r}.") from None
    if array.shape != (n_candidates,):
        raise ExplorerError(f"give one asking price per candidate: {n_candidates} candidates, "
                            f"{array.size} prices.")
    bad = [i for i, p in enumerate(array) if not CONSTRAINTS["price"].ok(float(p))]
    if bad:
        raise ExplorerError(f"{LABELS['price'].split(' (')[0]} must be "
                            f"{CONSTRAINTS['price'].describe()}, got {array[bad[0]]:g} for "
                            f"candidate {bad[0]}.")
    return array
