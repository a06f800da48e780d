"""Pricing: useless, harmful and duplicate data at the floor; useful data paid by the rate."""

import numpy as np
import pytest
from appraising import value

from explorer.appraisers import Influence
from explorer.errors import ExplorerError
from explorer.market import make_market
from explorer.market_prices import priced_market
from explorer.pricing import PricingRule, own_data_baseline


def test_rule_prices_values_and_bits():
    rule = PricingRule(rate=100.0, threshold=0.01, floor=1.0)
    assert rule.prices([0.05, 0.005, -0.2]) == pytest.approx([4.0, 1.0, 1.0])
    flat = PricingRule(rate=0.0, threshold=0.5, flat=20.0)
    assert flat.prices([1, 0]).tolist() == [20.0, 0.0]


def test_own_data_baseline_matches_random_subsets(wdbc_seed, rng):
    mean, sd = own_data_baseline(wdbc_seed, 20)
    influence = Influence().fit(wdbc_seed)
    draws = [value(influence, wdbc_seed.X_train[idx], wdbc_seed.y_train[idx])
             for idx in (rng.choice(wdbc_seed.n_seed, 20, replace=False) for _ in range(400))]
    assert np.mean(draws) == pytest.approx(mean, abs=3 * sd / np.sqrt(400))
    assert np.std(draws) == pytest.approx(sd, rel=0.15)


def test_duplicates_and_harmful_data_are_priced_at_the_floor(wdbc, wdbc_seed):
    rule = PricingRule.calibrated(wdbc_seed, 30, rate=1000.0)
    frame = priced_market(wdbc_seed, wdbc, rule, n_per_kind=6, size=30)
    by_kind = frame.groupby("kind").price
    assert (by_kind.get_group("duplicates") == 0).all()
    assert (by_kind.get_group("label-noise") == 0).all()  # every label of the pair flipped
    paid = frame[frame.price > 0]
    assert len(paid) >= 2 and set(paid.kind) <= {"none", "feature-noise"}
    assert np.allclose(paid.price, 1000.0 * (paid.value - rule.threshold))


def test_calibrated_rule_refuses_a_candidate_copied_from_the_seed_set(wdbc, wdbc_seed):
    (dup,) = make_market(wdbc, "duplicates", 1, 30, 1.0, 1.0)
    rule = PricingRule.calibrated(wdbc_seed, 30, rate=1.0)
    assert rule.prices([value(Influence().fit(wdbc_seed), dup.X, dup.y)])[0] == 0.0


def test_bad_rules():
    with pytest.raises(ExplorerError, match="negative"):
        PricingRule(rate=-1.0)
    with pytest.raises(ExplorerError, match="finite"):
        PricingRule(rate=float("nan"))
