"""Private values are right within tolerance or replaced by a clear failure: each failure mode
of two-party fixed point forced, its outcome asserted."""

import numpy as np
import pytest
from appraising import configured, value

import explorer.mpc.runner
from explorer.constraints import DEFAULTS
from explorer.errors import AppraisalWarning, ExplorerError
from explorer.market import make_market


def verified(appraiser, values, bits):
    """Which values to trust with no grid and the default fixed point."""
    return appraiser.verified(values, bits, 0.0, DEFAULTS["precision_bits"])


@pytest.fixture(scope="module")
def market(wdbc):
    return make_market(wdbc, "label-noise", 30, 30, max_level=0.6, random_state=4)


def pairs(market):
    return [(c.X, c.y) for c in market]


def test_copies_that_disagree_or_break_a_bound_are_not_trusted(wdbc_seed):
    influence = configured("influence")[0].fit(wdbc_seed)
    values = np.array([[0.10, -0.05, 0.02, 2.0e9, 0.030],
                       [0.10, -0.05, 0.02, 0.0301, 0.0301]])
    assert verified(influence, values, bits=False).tolist() == [True, True, True, False, True]
    norm = configured("gradient-norm")[0].fit(wdbc_seed)
    assert verified(norm, np.array([[3.0, -2.0], [3.0, -2.0]]), False).tolist() == [True, False]
    finetune = configured("finetune")[0].fit(wdbc_seed)
    too_big = wdbc_seed.test_loss * 2  # more than the whole test loss can go
    assert verified(finetune, np.array([[0.01, too_big], [0.01, too_big]]),
                    False).tolist() == [True, False]
    bits = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert verified(influence, bits, bits=True).tolist() == [True, False, True]


def test_copies_of_a_value_near_zero_agree_within_its_rounding_noise(wdbc_seed):
    """A candidate alone in its session whose value is a few units of 2^-16: copies six units
    apart are rounding noise (1% of the value would be far below one unit); a failed
    truncation is still caught."""
    influence, runner = configured("influence", "crypten")
    influence.fit(wdbc_seed)
    unit = 2.0 ** -runner.options.precision_bits
    assert runner.verified(influence, np.array([[2 * unit], [8 * unit]])).tolist() == [True]
    assert runner.verified(influence, np.array([[2 * unit], [2.0 ** 30]])).tolist() == [False]


def test_truncation_failures_give_right_values_or_a_clear_failure(wdbc_seed, market,
                                                                   monkeypatch):
    """At 26 fractional bits two-party truncation fails on a few of the thousands of logits
    of every session (probability about |x| / 4096 each): copies disagree, the candidates are
    appraised again, and what comes back is either right or an error naming a candidate."""
    plain = configured("influence")[0].fit(wdbc_seed)
    expected = np.array([value(plain, X, y) for X, y in pairs(market)])
    private, runner = configured("influence", "crypten", mode="parties", precision_bits=26)
    sessions = []
    run_session = explorer.mpc.runner.run_session

    def counted(*args, **kwargs):
        sessions.append(run_session(*args, **kwargs))
        return sessions[-1]

    monkeypatch.setattr(explorer.mpc.runner, "run_session", counted)
    try:
        appraisal = runner.run(private.fit(wdbc_seed), pairs(market))
    except ExplorerError as exc:
        assert "could not be verified" in str(exc) and "candidate" in str(exc)
        assert sessions and sessions[-1] is not None
        return
    got = appraisal.values
    assert np.abs(got - expected).max() <= 0.01 * np.abs(expected).max()
    assert appraisal.totals["sessions"] >= 1


def test_unverified_sessions_reveal_one_copy(wdbc_seed, market):
    private, runner = configured("influence", "crypten", mode="simulated", provider="TFP",
                                 verify=False)
    appraisal = runner.run(private.fit(wdbc_seed), pairs(market)[:3])
    assert appraisal.last_session.values.shape == (1, 3) and len(appraisal.rows()) == 3


def test_a_large_learning_rate_stays_right_under_mpc(wdbc_seed, market):
    """lr 10 (one of the paper's rates): the clamped exponentials keep the encrypted steps
    right where unbounded sigmoids and logs used to overflow."""
    with pytest.warns(AppraisalWarning, match="stability bound"):
        plain = configured("finetune", lr=10.0, steps=4)[0].fit(wdbc_seed)
    expected = np.array([value(plain, X, y) for X, y in pairs(market)[:6]])
    private, runner = configured("finetune", "crypten", mode="simulated", provider="TFP",
                                 lr=10.0, steps=4)
    with pytest.warns(AppraisalWarning, match="stability bound"):
        private.fit(wdbc_seed)
    got = runner.run(private, pairs(market)[:6]).values
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()


def test_a_threshold_beyond_the_ring_is_refused(wdbc_seed, market):
    private, runner = configured("influence", "crypten", mode="simulated", provider="TFP",
                                 reveal="bit", threshold=-2e14)
    private.fit(wdbc_seed)
    with pytest.raises(ExplorerError, match="threshold reach 2e\\+14"):
        runner.run(private, pairs(market)[:2])
