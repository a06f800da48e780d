"""A market's prices: influence values priced by a calibrated rule (explorer.pricing), and bit
mode's per-appraiser thresholds and flat prices."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from explorer.config import AppraiserConfig
from explorer.errors import AppraisalWarning, ExplorerError
from explorer.experiments import INFLUENCE, appraise_market
from explorer.market import Candidate, make_market
from explorer.pricing import PRICE_THRESHOLD_SD, PricingRule
from explorer.seed import AnySeed

PRICE_KINDS = (("none", 0.0), ("label-noise", 1.0), ("duplicates", 1.0), ("feature-noise", 1.0))


def priced_market(seed: AnySeed, task, rule, n_per_kind: int = 5, size: int = 30,
                  kinds: Sequence[tuple[str, float]] = PRICE_KINDS,
                  random_state: int = 0, config: AppraiserConfig = INFLUENCE) -> pd.DataFrame:
    """A market mixing clean, harmful (labels flipped), duplicate and noisy candidates, priced
    by ``rule`` (a pricing.PricingRule) from their influence values (under ``config``'s
    settings, e.g. a network's damping; its names are ignored).

    Columns: candidate, kind, level, value, utility, accuracy_change, price, accepted.
    """
    market: list[Candidate] = []
    for i, (kind, level) in enumerate(kinds):
        for c in make_market(task, kind, n_per_kind, size, level, level,
                             random_state=random_state + i):
            market.append(Candidate(len(market), c.X, c.y, c.kind, c.level, c.details))
    results = appraise_market(seed, market, config.with_(names=("influence",)))
    prices = rule.prices(results.value)
    return results.assign(price=prices, accepted=results.value > rule.threshold,
                          threshold=rule.threshold)[
        ["candidate", "kind", "level", "value", "utility", "accuracy_change", "price",
         "accepted", "threshold"]]


def own_data_thresholds(seed: AnySeed, config: AppraiserConfig, size: int,
                        z: float = PRICE_THRESHOLD_SD,
                        samples: int = 20, random_state: int = 0) -> dict[str, float]:
    """A bit-mode threshold per appraiser, each on that appraiser's own scale.

    The model owner appraises, in plaintext, ``samples`` random ``size``-sample subsets of its
    own training set (drawn without replacement when size <= n_seed): data it already holds,
    so buying a candidate should beat them. Each threshold is the mean of those values plus
    ``z`` sample standard deviations, in the appraiser's unit (nats for influence, finetune and
    newton; the gradient norm's own unit). One number cannot serve every appraiser: their
    scales differ by orders of magnitude, and the gradient norm's is not a loss at all.
    """
    if size < 1 or samples < 2:
        raise ExplorerError(f"own_data_thresholds needs a positive size and at least two "
                            f"samples, got size {size} and {samples} samples.")
    rng = np.random.default_rng([random_state, 7])
    subsets = []
    for _ in range(samples):
        rows = rng.choice(seed.n_seed, size, replace=size > seed.n_seed)
        subsets.append((seed.X_train[rows].numpy(), seed.y_train[rows].numpy()))
    plain = config.with_(backend="plaintext")
    thresholds = {}
    for name in config.names:
        with warnings.catch_warnings():
            # own data can trip the linearisation and stability notes meant for candidates
            warnings.simplefilter("ignore", AppraisalWarning)
            values = plain.appraise(name, seed, subsets).values
        thresholds[name] = float(values.mean() + z * values.std(ddof=1))
    return thresholds


def bit_configs(config: AppraiserConfig, thresholds: Mapping[str, float]
                ) -> list[AppraiserConfig]:
    """The configuration's appraisers in bit mode, one configuration each with its own
    threshold (e.g. from ``own_data_thresholds``): only value > threshold is revealed, per
    candidate."""
    if not config.private:
        raise ExplorerError("bit mode needs the crypten backend: in plaintext the value itself "
                            "is computed in the clear.")
    missing = [n for n in config.names if n not in thresholds]
    if missing:
        raise ExplorerError(f"bit mode needs a threshold for every appraiser; none for "
                            f"{', '.join(missing)}.")
    return [config.with_(names=(n,), reveal="bit", threshold=float(thresholds[n]))
            for n in config.names]


def bit_prices(results: pd.DataFrame, flat: float, floor: float = 0.0,
               thresholds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Bit-mode results (``value`` is the revealed bit, 1 = value > threshold) with
    ``accepted`` and the flat ``price``: ``flat`` for an accepted candidate, ``floor`` for the
    rest (currency units). A bit that is NaN (not verified) is not accepted. With
    ``thresholds`` (appraiser -> threshold), a ``threshold`` column records each row's."""
    rule = PricingRule(rate=0.0, threshold=0.0, floor=floor, flat=flat)
    bits = results["value"].to_numpy(float)
    accepted = np.nan_to_num(bits, nan=0.0) > 0.5
    out = results.assign(accepted=accepted, price=rule.prices(accepted.astype(float)))
    if thresholds is not None:
        missing = sorted(set(out["appraiser"]) - set(thresholds))
        if missing:
            raise ExplorerError(f"no threshold for {', '.join(missing)}.")
        out = out.assign(threshold=out["appraiser"].map(thresholds).astype(float))
    return out
