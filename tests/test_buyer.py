"""The budgeted buyer: buying by appraised value per asking price within a budget, against
random buying and the oracle, from Python, the command line and the figure."""

import itertools
import math
import os
import re

import mpc_parties
import numpy as np
import pandas as pd
import pytest

from explorer import plots
from explorer.acquisition import (
    BUDGET_COLUMNS,
    BUYING,
    budget_summary,
    budgeted_acquisition,
    market_acquisition,
)
from explorer.asks import asking_prices
from explorer.cli import main
from explorer.config import AppraiserConfig
from explorer.errors import ExplorerError
from explorer.experiments import INFLUENCE
from explorer.market import make_market
from explorer.utility import absorb, ground_truth

ORDERS = 3
# Test losses of the same purchases retrained in another order agree to about 1e-9 nats: each
# fit stops at a gradient norm of 1e-8 (relative), and the test loss is first-order in theta.
RETRAINED = 1e-8


@pytest.fixture(scope="module")
def market(wdbc):
    """Eight WDBC candidates of 30, labels flipped with probability 0 .. 0.2: some help, some
    hurt."""
    return make_market(wdbc, "label-noise", 8, 30, 0.2, random_state=0)


@pytest.fixture(scope="module")
def prices(market):
    return asking_prices(market)


def bought(frame, strategy, run=0):
    rows = frame[(frame.strategy == strategy) & (frame.run == run)].sort_values("round")
    return rows[rows["round"] > 0]


def model_after(seed, market, candidates):
    """The model owner's model after buying ``candidates`` in this order."""
    for i in candidates:
        seed = absorb(seed, market[i].X, market[i].y)
    return seed


def test_asks_are_seeded_and_proportional_to_size_without_noise(market):
    np.testing.assert_array_equal(asking_prices(market, random_state=3),
                                  asking_prices(market, random_state=3))
    assert not np.array_equal(asking_prices(market, random_state=3), asking_prices(market))
    flat = asking_prices(market, per_sample=2.0, noise=0.0)
    np.testing.assert_allclose(flat, [2.0 * c.size for c in market])
    noisy = asking_prices(market, per_sample=2.0, noise=0.5, random_state=3)
    z = np.random.default_rng([3, 8]).standard_normal(len(market))  # the declared model
    np.testing.assert_allclose(noisy, flat * np.exp(0.5 * z))


@pytest.mark.parametrize("budget", [45.0, 110.0])
def test_no_strategy_spends_past_the_budget_and_each_stops_only_when_it_must(
        wdbc_seed, market, prices, budget):
    frame = budgeted_acquisition(wdbc_seed, market, prices, budget, random_orders=ORDERS)
    assert list(frame.columns) == BUDGET_COLUMNS and (frame.budget == budget).all()
    for (strategy, run), rows in frame.groupby(["strategy", "run"]):
        rows = rows.sort_values("round")
        assert rows["round"].tolist() == list(range(len(rows)))
        assert rows.test_loss.iloc[0] == pytest.approx(wdbc_seed.test_loss, abs=0)
        purchases = rows[rows["round"] > 0]
        assert purchases.candidate.is_unique
        np.testing.assert_array_equal(purchases.price, prices[purchases.candidate])
        spent = [math.fsum(prices[purchases.candidate[:k]]) for k in range(1, len(purchases) + 1)]
        np.testing.assert_array_equal(purchases.spent, spent)
        assert (purchases.spent <= budget).all(), (strategy, run)
        # each test loss is the retrained model's after these purchases
        final = model_after(wdbc_seed, market, purchases.candidate)
        assert rows.test_loss.iloc[-1] == pytest.approx(final.test_loss, abs=RETRAINED)
        left = [i for i in range(len(market)) if i not in set(purchases.candidate)]
        affordable = [i for i in left if math.fsum([*prices[purchases.candidate], prices[i]])
                      <= budget]
        if strategy == "random":  # buys until nothing more fits
            assert affordable == []
        elif strategy == "greedy":  # ... or until nothing that fits is worth buying
            values = INFLUENCE.appraise("influence", final,
                                        [(market[i].X, market[i].y) for i in affordable]).values
            assert (np.asarray(values) <= 0).all()
            assert (purchases.value > 0).all()
    assert frame[frame.strategy == "random"].run.nunique() == ORDERS


def test_with_equal_prices_the_buyer_buys_unbudgeted_greedys_order(wdbc_seed, market):
    """Equal asks turn value per price into value: the budget of three purchases buys the
    first three of greedy acquisition by influence, and random buying draws the same orders
    as random acquisition."""
    rounds = 3
    frame = budgeted_acquisition(wdbc_seed, market, np.full(len(market), 10.0), 35.0,
                                 random_orders=2, oracle="greedy")
    unbudgeted = market_acquisition(wdbc_seed, market, rounds, random_orders=2)
    for strategy, name in (("greedy", "influence"), ("random", "random")):
        for run in range(2 if strategy == "random" else 1):
            expected = unbudgeted[(unbudgeted.strategy == name) & (unbudgeted.run == run)]
            got = bought(frame, strategy, run)
            assert got.candidate.tolist() == expected.candidate.tolist()[1:rounds + 1]
            np.testing.assert_allclose(got.test_loss, expected.test_loss.iloc[1:], atol=RETRAINED)
    assert bought(frame, "greedy").spent.iloc[-1] == 30.0


def test_the_knapsack_oracle_reaches_the_lowest_test_loss_within_the_budget(
        wdbc_seed, market, prices):
    """Every affordable subset retrained from the seed model here, one by one: the oracle's
    last test loss is their minimum, and no greedy or random sequence ends lower."""
    budget = 60.0
    frame = budgeted_acquisition(wdbc_seed, market, prices, budget, random_orders=ORDERS,
                                 oracle="knapsack")
    losses = {(): wdbc_seed.test_loss}
    for k in range(1, len(market) + 1):
        for subset in itertools.combinations(range(len(market)), k):
            if math.fsum(prices[list(subset)]) <= budget:
                X = np.concatenate([market[i].X for i in subset])
                y = np.concatenate([market[i].y for i in subset])
                losses[subset] = ground_truth(wdbc_seed, X, y).test_loss
    assert len(losses) > len(market) + 1  # pairs fit: the search is not trivial
    best = min(losses.values())
    oracle = bought(frame, "oracle")
    assert set(oracle.method) == {"knapsack: every affordable subset"}
    assert oracle.test_loss.iloc[-1] == pytest.approx(best, abs=RETRAINED)
    assert losses[tuple(sorted(oracle.candidate))] == pytest.approx(best, abs=RETRAINED)
    finals = frame.sort_values("round").groupby(["strategy", "run"]).test_loss.last()
    for (strategy, run), loss in finals.items():
        assert finals["oracle", 0] <= loss + RETRAINED, (strategy, run)
    assert finals["oracle", 0] < finals["random"].mean()
    # each oracle step's value is the true test-loss reduction it made
    steps = frame[(frame.strategy == "oracle")].sort_values("round").test_loss.to_numpy()
    np.testing.assert_allclose(oracle.value, steps[:-1] - steps[1:], atol=1e-12)


def test_auto_takes_the_knapsack_only_while_the_subsets_are_few(wdbc, wdbc_seed):
    market = make_market(wdbc, "label-noise", 12, 10, 0.2, random_state=1)
    prices = np.full(12, 10.0)  # 2^12 = 4096 subsets fit 120; C(12, <= 1) = 13 fit 10
    small = budgeted_acquisition(wdbc_seed, market, prices, 10.0, random_orders=1)
    large = budgeted_acquisition(wdbc_seed, market, prices, 20.5, random_orders=1)
    assert set(small.method[small.strategy == "oracle"]) == {"knapsack: every affordable subset"}
    assert set(large.method[large.strategy == "oracle"]) == {"knapsack: every affordable subset"}
    huge = budgeted_acquisition(wdbc_seed, market, prices, 120.0, random_orders=1)
    assert set(huge.method[huge.strategy == "oracle"]) == {"utility per price (ground truth)"}
    with pytest.raises(ExplorerError, match="more than 1024 fit this budget"):
        budgeted_acquisition(wdbc_seed, market, prices, 120.0, oracle="knapsack")


def test_progress_and_summary(wdbc_seed, market, prices):
    events = []
    frame = budgeted_acquisition(wdbc_seed, market, prices, 45.0, random_orders=2,
                                 progress=lambda *e: events.append(e))
    assert events == [(BUYING, done, 4) for done in range(1, 5)]
    summary = budget_summary(frame)
    assert summary.index.tolist() == ["greedy", "random", "oracle"]
    last = frame.sort_values("round").groupby(["strategy", "run"]).tail(1)
    randoms = last[last.strategy == "random"]
    assert summary.loc["random", "runs"] == 2
    assert summary.loc["random", "test_loss_mean"] == pytest.approx(randoms.test_loss.mean())
    assert summary.loc["random", "test_loss_std"] == pytest.approx(randoms.test_loss.std())
    assert summary.loc["greedy", "bought_mean"] == len(bought(frame, "greedy"))
    assert summary.loc["greedy", "test_loss_std"] == 0.0


def test_the_private_buyer_buys_what_the_plaintext_buyer_buys(wdbc_seed, market, prices):
    """Real parties, one session per round (each appraising only the affordable candidates):
    the same purchases as in plaintext."""
    private = AppraiserConfig.from_options(names=("influence",), backend="crypten",
                                           mode="parties", provider="TTP")
    with private.warm_processes():
        got = budgeted_acquisition(wdbc_seed, market, prices, 45.0, config=private,
                                   random_orders=1, oracle="greedy")
    expected = budgeted_acquisition(wdbc_seed, market, prices, 45.0, random_orders=1,
                                    oracle="greedy")
    assert len(bought(expected, "greedy")) >= 1
    pd.testing.assert_frame_equal(got.drop(columns="value"), expected.drop(columns="value"))
    greedy = bought(got, "greedy").value.to_numpy()
    np.testing.assert_allclose(greedy, bought(expected, "greedy").value, rtol=0.01)
    live = [p for p, state in mpc_parties.children_of(os.getpid()).items() if state != "Z"]
    assert live == []


@pytest.mark.parametrize(("change", "message"), [
    ({"budget": 0.0}, "the budget .* must be a positive number up to 1e\\+12, got 0.0"),
    ({"budget": -5}, "the budget .* must be a positive number"),
    ({"budget": float("nan")}, "the budget .* must be a positive number"),
    ({"budget": float("inf")}, "the budget .* must be a positive number"),
    ({"budget": "100"}, "the budget .* must be a positive number"),
    ({"prices": [10.0] * 7}, "one asking price per candidate: 8 candidates, 7 prices"),
    ({"prices": [10.0] * 7 + [0.0]}, "an asking price must be a positive number .* candidate 7"),
    ({"prices": [10.0] * 7 + [-1.0]}, "an asking price must be .* got -1 for candidate 7"),
    ({"prices": [float("nan")] + [10.0] * 7}, "an asking price must be .* candidate 0"),
    ({"prices": ["ten"] * 8}, "asking prices must be numbers"),
    ({"random_orders": 0}, "the number of random orders .* between 1 and 1000"),
    ({"oracle": "best"}, "unknown oracle .* 'best'; choose one of auto, knapsack, greedy"),
    ({"appraiser": "shapley"}, "unknown appraiser 'shapley'"),
    ({"config": AppraiserConfig.from_options(backend="crypten", mode="simulated",
                                             provider="TFP", reveal="bit")},
     "a bit cannot say; reveal values"),
    ({"candidates": []}, "needs a market"),
])
def test_bad_budgets_prices_and_settings_fail_with_one_sentence(wdbc_seed, market, prices,
                                                                change, message):
    args = {"candidates": market, "prices": prices, "budget": 50.0, **change}
    with pytest.raises(ExplorerError, match=message) as raised:
        budgeted_acquisition(wdbc_seed, **args)
    text = str(raised.value)
    assert text.endswith(".") and "\n" not in text


@pytest.mark.parametrize(("change", "message"), [
    ({"per_sample": 0.0}, "the asking price per sample .* must be a positive number"),
    ({"noise": -0.1}, r"log-normal spread .* must be a number within \[0, 3\]"),
    ({"noise": float("nan")}, r"log-normal spread .* must be a number within \[0, 3\]"),
])
def test_bad_asks_models_fail_with_one_sentence(market, change, message):
    with pytest.raises(ExplorerError, match=message):
        asking_prices(market, **change)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


MARKET = ["--task", "wdbc", "--corruption", "label-noise", "--candidates", "8", "--size", "30",
          "--max-level", "0.2"]


def test_acquire_writes_each_strategys_purchases(tmp_path, capsys, wdbc_seed, market, prices):
    out = tmp_path / "purchases.csv"
    code, stdout, err = run(capsys, "acquire", *MARKET, "--budget", "45", "--random-orders",
                            "2", "--out", str(out))
    assert code == 0, err
    written = pd.read_csv(out)
    expected = budgeted_acquisition(wdbc_seed, market, prices, 45.0, random_orders=2)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    summary = budget_summary(expected)
    greedy = summary.loc["greedy"]
    assert (f"greedy (influence value per price): {greedy.bought_mean:.0f} bought for "
            f"{greedy.spent_mean:.4g}, test loss {greedy.test_loss_mean:.4f}") in stdout
    assert "random (uniform among affordable, 2 orders)" in stdout
    assert f"wrote {len(expected)} rows to {out}" in stdout


def test_acquire_takes_the_sellers_prices_as_given(tmp_path, capsys, wdbc_seed, market):
    out = tmp_path / "purchases.csv"
    given = [20.0, 35.5, 10.0, 12.0, 40.0, 18.0, 25.0, 30.0]
    code, _, err = run(capsys, "acquire", *MARKET, "--budget", "50", "--random-orders", "1",
                       "--oracle", "greedy", "--prices", ",".join(map(str, given)),
                       "--out", str(out))
    assert code == 0, err
    written = pd.read_csv(out)
    paid = written[written["round"] > 0]
    np.testing.assert_array_equal(paid.price, np.array(given)[paid.candidate])
    assert (paid.spent <= 50).all()


@pytest.mark.parametrize(("argv", "message"), [
    (["--budget", "0"], r"argument --budget: the budget must be a positive number up to "
                        r"1e\+12, got '0'"),
    (["--budget", "-5"], "the budget must be a positive number"),
    (["--budget", "nan"], "argument --budget: expected a finite number, got 'nan'"),
    (["--budget", "lots"], "argument --budget: expected a number, got 'lots'"),
    ([], "the following arguments are required: --budget"),
    (["--budget", "50", "--prices", "10,20"], "one asking price per candidate: 8 candidates, "
                                              "2 prices"),
    (["--budget", "50", "--prices", "10,0,1,1,1,1,1,1"], "argument --prices: expected each "
                                                         "price to be a positive number"),
    (["--budget", "50", "--prices", "10,x"], "expected numbers separated by commas"),
    (["--budget", "50", "--prices", ",".join(["10"] * 8), "--price-noise", "0.2"],
     "--price-noise sets the asks model, which --prices replaces; drop one of them"),
    (["--budget", "50", "--price-per-sample", "-1"], "the asking price per sample must be"),
    (["--budget", "50", "--random-orders", "0"], "the number of random orders must be"),
    (["--budget", "50", "--oracle", "best"], "invalid choice: 'best'"),
    (["--budget", "50", "--backend", "crypten", "--mode", "simulated", "--provider", "TFP",
      "--reveal", "bit"], "a bit cannot say; use --reveal value"),
])
def test_bad_acquire_input_is_one_sentence_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "purchases.csv"
    code, _, err = run(capsys, "acquire", *MARKET, *argv, "--out", str(out))
    assert code == 2
    assert err.startswith("appraisal-explorer: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == []


def test_budget_curves_draw_the_steps_mean_and_band(wdbc_seed, market, prices):
    frame = budgeted_acquisition(wdbc_seed, market, prices, 60.0, random_orders=ORDERS)
    fig = plots.budget_curves(frame)
    lines = {t.name: t for t in fig.data if t.mode == "lines" and t.fill != "toself"}
    assert set(lines) == {"greedy: influence value per price",
                          f"random: uniform among affordable (mean of {ORDERS})",
                          "oracle: knapsack: every affordable subset"}
    for strategy in ("greedy", "oracle"):
        (line,) = [t for name, t in lines.items() if name.startswith(strategy)]
        rows = frame[frame.strategy == strategy].sort_values("round")
        assert line.x[-1] == 60.0 and line.y[-1] == pytest.approx(rows.test_loss.iloc[-1])
        assert line.y[0] == pytest.approx(wdbc_seed.test_loss)
    (mean,) = [t for name, t in lines.items() if name.startswith("random")]
    finals = frame.sort_values("round").groupby(["strategy", "run"]).test_loss.last()["random"]
    assert mean.y[-1] == pytest.approx(finals.mean())
    (band,) = [t for t in fig.data if t.fill == "toself"]
    assert max(band.y) >= finals.mean() + finals.std() - 1e-12
    assert "lower is better" in plots.caption(fig) and plots.GROUND_TRUTH in plots.caption(fig)
    with pytest.raises(ExplorerError, match="draws one budget"):
        plots.budget_curves(pd.concat([frame, frame.assign(budget=90.0)]))
