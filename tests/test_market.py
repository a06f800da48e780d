"""Each corruption does what it says."""

import numpy as np
import pytest
from scipy import stats

from explorer.errors import ExplorerError
from explorer.market import CORRUPTIONS, make_market


def binomial_bounds(n, p, alpha=1e-6):
    return stats.binom.ppf(alpha, n, p), stats.binom.ppf(1 - alpha, n, p)


def test_levels_are_spread_and_candidates_carry_kind(wdbc):
    market = make_market(wdbc, "label-noise", n_candidates=5, size=30, max_level=0.4)
    assert [c.level for c in market] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert all(c.kind == "label-noise" and c.size == 30 for c in market)
    assert [c.index for c in market] == list(range(5))


def test_none_has_level_zero(wdbc):
    assert {c.level for c in make_market(wdbc, "none", 4, 20, max_level=0.9)} == {0.0}


def test_disjoint_when_pool_allows(digits):
    market = make_market(digits, "none", 10, 100)
    rows = np.concatenate([c.X for c in market])
    assert len(np.unique(rows.round(10), axis=0)) == 1000


def test_pair_label_noise_flip_rate_within_binomial_bounds(digits):
    market = make_market(digits, "label-noise", 3, 1000, max_level=0.6, min_level=0.2)
    for c in market:
        eligible, flipped = c.details["eligible"], c.details["flipped"]
        lo, hi = binomial_bounds(eligible, c.level)
        assert lo <= flipped <= hi
        # only 1s and 7s change, and they swap
        assert set(np.unique(c.y[np.isin(c.y, [1, 7])])) <= {1, 7}


def test_pair_label_noise_changes_only_the_pair(digits):
    (clean,) = make_market(digits, "none", 1, 500, random_state=5)
    (noisy,) = make_market(digits, "label-noise", 1, 500, max_level=1.0, min_level=1.0,
                           random_state=5)
    # same draws (same seed), so compare label multisets outside the pair
    for k in (0, 2, 3, 4, 5, 6, 8, 9):
        assert np.sum(clean.y == k) == np.sum(noisy.y == k)
    assert np.sum(noisy.y == 1) == np.sum(clean.y == 7)


def test_any_label_noise_never_keeps_a_flipped_label(wdbc):
    (c,) = make_market(wdbc, "label-noise", 1, 300, 0.5, 0.5, flip="any", random_state=2)
    lo, hi = binomial_bounds(300, 0.5)
    assert lo <= c.details["flipped"] <= hi


def test_imbalance_class_fraction_is_exact(wdbc):
    market = make_market(wdbc, "imbalance", 4, 40, max_level=0.75, target_class=1)
    for c, want in zip(market, [0, 10, 20, 30], strict=True):
        assert np.sum(c.y == 1) == want


def test_missing_features_zeroes_columns(wdbc):
    market = make_market(wdbc, "missing-features", 3, 30, max_level=1 / 3)
    for c in market:
        cols = c.details["missing_columns"]
        assert len(cols) == round(c.level * 30)
        assert np.all(c.X[:, cols] == 0)
        others = np.setdiff1d(np.arange(30), cols)
        assert np.all(np.any(c.X[:, others] != 0, axis=0))


def test_duplicates_copy_the_seed_set(wdbc):
    (c,) = make_market(wdbc, "duplicates", 1, 40, 0.5, 0.5)
    seed_rows = {tuple(r) for r in wdbc.X_train.round(10)}
    assert sum(tuple(r) in seed_rows for r in c.X.round(10)) == 20


def test_feature_noise_has_the_level_as_standard_deviation(digits):
    (clean,) = make_market(digits, "none", 1, 1000, random_state=9)
    (noisy,) = make_market(digits, "feature-noise", 1, 1000, 0.5, 0.5, random_state=9)
    assert np.array_equal(np.sort(clean.y), np.sort(noisy.y))
    # compare the same rows: both candidates hold the same draw, shuffled the same way
    assert np.std(noisy.X - clean.X) == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "bogus"}, "unknown corruption"),
    ({"size": 0}, "positive integer"),
    ({"size": 10_000}, "larger than the pool"),
    ({"max_level": 1.5}, r"within \[0, 1\]"),
    ({"max_level": float("nan")}, r"within \[0, 1\]"),
    ({"n_candidates": 0}, "number of candidates"),
    ({"kind": "label-noise", "flip": (1, 1)}, "two different classes"),
    ({"kind": "imbalance", "target_class": 5}, "not a class"),
])
def test_bad_market_requests(wdbc, kwargs, message):
    args = {"kind": "none", "n_candidates": 3, "size": 10, "max_level": 0.5, **kwargs}
    with pytest.raises(ExplorerError, match=message):
        make_market(wdbc, **args)


def test_every_corruption_builds(wdbc):
    for kind in CORRUPTIONS:
        assert len(make_market(wdbc, kind, 2, 10, 0.5)) == 2
