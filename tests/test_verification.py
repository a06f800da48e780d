"""Private values are right within tolerance or replaced by a clear failure: each failure mode
of two-party fixed point forced, its outcome asserted."""

import numpy as np
import pytest

from explorer.appraisers import make_appraiser
from explorer.errors import AppraisalWarning, ExplorerError
from explorer.market import make_market


@pytest.fixture(scope="module")
def market(wdbc):
    return make_market(wdbc, "label-noise", 30, 30, max_level=0.6, random_state=4)


def pairs(market):
    return [(c.X, c.y) for c in market]


def test_copies_that_disagree_or_break_a_bound_are_not_trusted(wdbc_seed):
    influence = make_appraiser("influence").fit(wdbc_seed)
    values = np.array([[0.10, -0.05, 0.02, 2.0e9, 0.030],
                       [0.10, -0.05, 0.02, 0.0301, 0.0301]])
    assert influence.verified(values, bits=False).tolist() == [True, True, True, False, True]
    norm = make_appraiser("gradient-norm").fit(wdbc_seed)
    assert norm.verified(np.array([[3.0, -2.0], [3.0, -2.0]]), False).tolist() == [True, False]
    finetune = make_appraiser("finetune").fit(wdbc_seed)
    too_big = wdbc_seed.test_loss * 2  # more than the whole test loss can go
    assert finetune.verified(np.array([[0.01, too_big], [0.01, too_big]]),
                             False).tolist() == [True, False]
    bits = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert influence.verified(bits, bits=True).tolist() == [True, False, True]


def test_copies_of_a_value_near_zero_agree_within_its_rounding_noise(wdbc_seed):
    """A candidate alone in its session whose value is a few units of 2^-16: copies six units
    apart are rounding noise (1% of the value would be far below one unit); a failed
    truncation is still caught."""
    influence = make_appraiser("influence", "crypten").fit(wdbc_seed)
    unit = 2.0 ** -influence.mpc.precision_bits
    assert influence.verified(np.array([[2 * unit], [8 * unit]]), False).tolist() == [True]
    assert influence.verified(np.array([[2 * unit], [2.0 ** 30]]), False).tolist() == [False]


def test_truncation_failures_give_right_values_or_a_clear_failure(wdbc_seed, market):
    """At 26 fractional bits two-party truncation fails on a few of the thousands of logits
    of every session (probability about |x| / 4096 each): copies disagree, the candidates are
    appraised again, and what comes back is either right or an error naming a candidate."""
    plain = make_appraiser("influence").fit(wdbc_seed)
    expected = np.array([plain.value(X, y) for X, y in pairs(market)])
    private = make_appraiser("influence", "crypten", mode="parties", precision_bits=26)
    try:
        rows = private.fit(wdbc_seed).appraise_many(pairs(market))
    except ExplorerError as exc:
        assert "could not be verified" in str(exc) and "candidate" in str(exc)
        assert private.last_session_ is not None
        return
    got = np.array([r["value"] for r in rows])
    assert np.abs(got - expected).max() <= 0.01 * np.abs(expected).max()
    assert private.session_costs_["sessions"] >= 1


def test_unverified_sessions_reveal_one_copy(wdbc_seed, market):
    private = make_appraiser("influence", "crypten", mode="simulated", provider="TFP",
                             verify=False).fit(wdbc_seed)
    rows = private.appraise_many(pairs(market)[:3])
    assert private.last_session_.values.shape == (1, 3) and len(rows) == 3


def test_a_large_learning_rate_stays_right_under_mpc(wdbc_seed, market):
    """lr 10 (one of the paper's rates): the clamped exponentials keep the encrypted steps
    right where unbounded sigmoids and logs used to overflow."""
    with pytest.warns(AppraisalWarning, match="stability bound"):
        plain = make_appraiser("finetune", lr=10.0, steps=4).fit(wdbc_seed)
    expected = np.array([plain.value(X, y) for X, y in pairs(market)[:6]])
    with pytest.warns(AppraisalWarning, match="stability bound"):
        private = make_appraiser("finetune", "crypten", mode="simulated", provider="TFP",
                                 lr=10.0, steps=4).fit(wdbc_seed)
    got = np.array([r["value"] for r in private.appraise_many(pairs(market)[:6])])
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()


def test_a_threshold_beyond_the_ring_is_refused(wdbc_seed, market):
    private = make_appraiser("influence", "crypten", mode="simulated", provider="TFP",
                             reveal="bit", threshold=-2e14).fit(wdbc_seed)
    with pytest.raises(ExplorerError, match="threshold reach 2e\\+14"):
        private.appraise_many(pairs(market)[:2])
