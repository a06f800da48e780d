"""Private appraisal between real parties against plaintext, and its failure modes."""

import os

import mpc_parties
import numpy as np
import pytest
import torch
from appraising import configured, value
from scipy import stats

from explorer.appraisers.batch import CandidateBatch
from explorer.errors import ExplorerError
from explorer.market import make_market
from explorer.mpc.session import run_session, session_inputs

# Largest error of a private value, relative to the largest plaintext value of the market:
# the sigmoid, square-root, softmax and log approximations dominate, not the fixed point.
MAX_RELATIVE_ERROR = {"influence": 0.01, "gradient-norm": 0.01, "finetune": 0.05,
                      "newton": 0.05}


def children_of_this_process():
    """Live (non-zombie) child processes of the test process."""
    return [pid for pid, state in mpc_parties.children_of(os.getpid()).items() if state != "Z"]


@pytest.fixture(scope="module")
def market(wdbc):
    return make_market(wdbc, "label-noise", 12, 30, max_level=0.6, random_state=4)


def pairs(market):
    return [(c.X, c.y) for c in market]


@pytest.mark.parametrize("name", ["influence", "gradient-norm", "finetune", "newton"])
def test_private_matches_plaintext_between_real_parties(wdbc_seed, market, name):
    """The same definition on torch tensors and on CrypTensors between real parties."""
    params = {"finetune": {"lr": 0.1, "steps": 4}, "newton": {"newton_steps": 2}}.get(name, {})
    plain = configured(name, **params)[0].fit(wdbc_seed)
    expected = np.array([value(plain, X, y) for X, y in pairs(market)])
    private, runner = configured(name, "crypten", mode="parties", **params)
    appraisal = runner.run(private.fit(wdbc_seed), pairs(market))
    rows = appraisal.rows()
    got = appraisal.values
    assert stats.spearmanr(got, expected).statistic >= 0.99
    assert np.abs(got - expected).max() <= MAX_RELATIVE_ERROR[name] * np.abs(expected).max()
    session = appraisal.last_session
    assert session.bytes > 0 and session.rounds > 0 and session.private_seconds > 0
    assert all(r["bytes"] > 0 and r["private_seconds"] > 0 for r in rows)
    assert children_of_this_process() == []


def test_single_bit_makes_the_plaintext_decisions(wdbc_seed, market):
    plain = configured("influence")[0].fit(wdbc_seed)
    expected = np.array([value(plain, X, y) for X, y in pairs(market)])
    threshold = float(np.median(expected))
    private, runner = configured("influence", "crypten", reveal="bit", threshold=threshold)
    got = runner.run(private.fit(wdbc_seed), pairs(market)).values
    assert set(np.unique(got)) <= {0.0, 1.0}
    clear = np.abs(expected - threshold) > 0.02 * np.ptp(expected)
    assert clear.sum() >= 8
    assert np.array_equal(got[clear], (expected[clear] > threshold).astype(float))


@pytest.mark.parametrize("name, tolerance", [("influence", 0.01), ("gradient-norm", 0.01),
                                             ("finetune", 0.2), ("newton", 0.05)])
def test_simulated_mode_matches_plaintext(digits_seed, digits, name, tolerance):
    """Softmax models: the same definition in simulated mode, within fixed-point tolerance
    (fine-tuning's 4 steps move the test loss by ~1e-3 nats, near the log's resolution)."""
    candidates = pairs(make_market(digits, "label-noise", 4, 60, max_level=0.8))
    params = {"finetune": {"steps": 4}, "newton": {"newton_steps": 2}}.get(name, {})
    plain = configured(name, **params)[0].fit(digits_seed)
    expected = np.array([value(plain, X, y) for X, y in candidates])
    private, runner = configured(name, "crypten", mode="simulated", provider="TFP", **params)
    got = runner.run(private.fit(digits_seed), candidates).values
    assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()


def influence_session(seed, market, **options):
    private, runner = configured("influence", "crypten", **options)
    return session_inputs(private.fit(seed), pairs(market), runner.options, runner.defences,
                          return_shares=True)


def test_data_owner_shares_reveal_nothing_of_the_model(digits_seed, digits):
    market = make_market(digits, "none", 2, 40)
    spec, mo, do = influence_session(digits_seed, market)
    result = run_session(spec, mo, do, mode="parties", provider="TTP")
    owner, data = result.reports
    scale = 2 ** spec.precision_bits
    for key in ("theta", "weights"):
        secret = mo.inputs[key]
        encoded = (secret * scale).long()  # CrypTen encodes by truncation
        theirs = data.shares[key]
        # the two shares add up to the secret in the 64-bit ring ...
        assert torch.equal(owner.shares[key] + theirs, encoded)
        # ... yet the data owner's share is neither the secret nor correlated with it
        assert not torch.equal(theirs, encoded)
        rho = np.corrcoef(theirs.double().flatten().numpy(), secret.flatten().numpy())[0, 1]
        assert abs(rho) < 0.2
        assert theirs.abs().double().median() > 2.0 ** 40  # uniform over the ring


def test_a_failing_party_fails_the_run_with_its_message(wdbc_seed, market):
    spec, mo, do = influence_session(wdbc_seed, market)
    broken = CandidateBatch(do.A.clone(), do.Y, do.sizes)
    broken.A[0, 0, 0] = float("nan")  # only the data owner's process sees this
    with pytest.raises(ExplorerError, match="NaN or infinite"):
        run_session(spec, mo, broken, mode="parties", provider="TTP", timeout=60)
    assert children_of_this_process() == []


def test_a_run_over_its_timeout_is_stopped_and_cleaned_up(wdbc_seed, market):
    spec, mo, do = influence_session(wdbc_seed, market)
    with pytest.raises(ExplorerError, match=r"did not finish within 0\.5 s"):
        run_session(spec, mo, do, mode="parties", provider="TTP", timeout=0.5)
    assert children_of_this_process() == []


@pytest.mark.parametrize("bits", [16, 24])
def test_overflow_prone_inputs_are_refused_before_encryption(wdbc_seed, market, bits):
    spec, mo, do = influence_session(wdbc_seed, market, precision_bits=bits)
    huge = CandidateBatch(do.A * 1e7, do.Y, do.sizes)
    with pytest.raises(ExplorerError, match=f"{bits}-bit fixed point"):
        run_session(spec, mo, huge, mode="simulated", provider="TFP")


@pytest.mark.parametrize("options, message", [
    ({"mode": "cloud"}, "unknown MPC mode"),
    ({"provider": "HE"}, "unknown provider"),
    ({"reveal": "all"}, "unknown reveal mode"),
    ({"precision_bits": 40}, "precision bits .* must be a whole number between 8 and 28"),
    ({"mode": "simulated", "provider": "TTP"}, "no dealer"),
    ({"threshold": float("nan")}, "threshold"),
])
def test_bad_private_options(options, message):
    with pytest.raises(ExplorerError, match=message):
        configured("influence", "crypten", **options)


def test_tiny_influence_weights_keep_their_precision(wdbc_seed, market):
    """v / n_seed can fall below 2^-16 (MNIST); the secret power-of-two scaling keeps it."""
    plain = configured("influence")[0].fit(wdbc_seed)
    expected = np.array([value(plain, X, y) for X, y in pairs(market)]) * 1e-4
    # simulated mode truncates exactly, so 24 bits resolve the values (~1e-5) themselves
    private, runner = configured("influence", "crypten", mode="simulated", provider="TFP",
                                 precision_bits=24)
    private.fit(wdbc_seed)
    private.weights_ = private.weights_ * 1e-4  # most entries now below 2^-24
    got = runner.run(private, pairs(market)).values
    assert np.abs(got - expected).max() <= 0.01 * np.abs(expected).max()
