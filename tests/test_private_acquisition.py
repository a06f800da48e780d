"""Greedy acquisition in one private session against the plaintext greedy sequence."""

import os
import threading

import mpc_parties
import numpy as np
import pytest
from appraising import configured

from explorer.acquisition import market_acquisition
from explorer.config import AppraiserConfig
from explorer.errors import Cancelled, ExplorerError
from explorer.market import make_market
from explorer.utility import absorb

ROUNDS = 4


@pytest.fixture(scope="module")
def market(wdbc):
    return make_market(wdbc, "label-noise", 12, 30, max_level=0.5, random_state=0)


def plaintext_greedy(seed, pairs, rounds):
    """The plaintext greedy sequence: picks (rounds,) and each round's values (rounds, B),
    NaN where bought earlier."""
    plain = configured("influence")[1]
    current, remaining = seed, list(range(len(pairs)))
    picks, values = [], np.full((rounds, len(pairs)), np.nan)
    for r in range(rounds):
        appraisal = plain.run(configured("influence")[0].fit(current),
                              [pairs[i] for i in remaining])
        values[r, remaining] = appraisal.values
        picks.append(remaining.pop(int(np.argmax(appraisal.values))))
        current = absorb(current, *pairs[picks[-1]])
    return picks, values


@pytest.mark.parametrize(("mode", "provider"), [("simulated", "TFP"), ("parties", "TTP"),
                                                ("parties", "TFP")])
def test_one_session_buys_what_plaintext_greedy_buys(wdbc_seed, market, mode, provider):
    """Every round's values within fixed-point tolerance of the plaintext ones, the same picks,
    bought candidates not revealed again, and one session for all the rounds."""
    pairs = [(c.X, c.y) for c in market]
    picks, values = plaintext_greedy(wdbc_seed, pairs, ROUNDS)
    appraiser, runner = configured("influence", "crypten", mode=mode, provider=provider)
    got = runner.acquire(appraiser.fit(wdbc_seed), pairs, ROUNDS)
    assert list(got.picks) == picks
    assert np.array_equal(np.isnan(got.values), np.isnan(values))
    shown = ~np.isnan(values)
    assert np.abs(got.values[shown] - values[shown]).max() <= 0.01 * np.abs(values[shown]).max()
    assert got.totals["sessions"] == 1 and len(got.sessions) == 1
    if mode == "parties":
        assert got.totals["bytes"] > 0 and got.totals["rounds"] > 0
        live = [p for p, state in mpc_parties.children_of(os.getpid()).items() if state != "Z"]
        assert live == []


def test_market_acquisition_runs_greedy_privately(wdbc_seed, market):
    """A private configuration's greedy curve equals the plaintext one (same picks), and its
    random orders are the plaintext ones (random buying appraises nothing)."""
    private = AppraiserConfig.from_options(backend="crypten", mode="simulated", provider="TFP")
    got = market_acquisition(wdbc_seed, market, ROUNDS, random_orders=2, config=private)
    expected = market_acquisition(wdbc_seed, market, ROUNDS, random_orders=2)
    assert got.candidate.tolist() == expected.candidate.tolist()
    assert np.allclose(got.test_loss, expected.test_loss)


@pytest.mark.parametrize(("options", "message"), [
    ({"reveal": "bit"}, "a bit cannot say"),
    ({"grid": 0.01}, "without reveal defences"),
])
def test_settings_a_private_acquisition_cannot_run(wdbc_seed, market, options, message):
    appraiser, runner = configured("influence", "crypten", mode="simulated", provider="TFP",
                                   **options)
    with pytest.raises(ExplorerError, match=message):
        runner.acquire(appraiser.fit(wdbc_seed), [(c.X, c.y) for c in market], 2)


def test_more_rounds_than_candidates_is_refused(wdbc_seed, market):
    appraiser, runner = configured("influence", "crypten", mode="simulated", provider="TFP")
    with pytest.raises(ExplorerError, match="rounds must be between 1"):
        runner.acquire(appraiser.fit(wdbc_seed), [(c.X, c.y) for c in market[:3]], 4)


def test_a_cancelled_acquisition_stops(wdbc_seed, market):
    appraiser, runner = configured("influence", "crypten", mode="parties", provider="TTP")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        runner.acquire(appraiser.fit(wdbc_seed), [(c.X, c.y) for c in market], 2, cancel)
