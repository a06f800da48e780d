"""Experiment frames: columns, dtypes and the quantities they promise."""

import numpy as np
import pandas as pd
import pytest

from explorer.acquisition import ACQUISITION_COLUMNS, acquisition_curves, market_acquisition
from explorer.config import AppraiserConfig
from explorer.errors import ExplorerError
from explorer.experiments import (
    BREAKDOWN_COLUMNS,
    RESULT_COLUMNS,
    appraise_market,
    market_utilities,
    runtime_breakdown,
)
from explorer.market import make_market
from explorer.market_prices import bit_configs, bit_prices, own_data_thresholds
from explorer.pricing import PricingRule
from explorer.seed import fit_seed_model
from explorer.sweeps import (
    finetune_budgets,
    finetune_grid,
    finetune_steps,
    repeated_rank_correlations,
)
from explorer.tasks import load_task


def test_appraise_market_columns_and_dtypes(wdbc, wdbc_seed):
    market = make_market(wdbc, "label-noise", 4, 20, 0.5)
    frame = appraise_market(wdbc_seed, market, AppraiserConfig(names=("influence",)))
    assert list(frame.columns) == RESULT_COLUMNS
    assert frame.candidate.dtype.kind == "i" and frame.value.dtype.kind == "f"
    assert (frame.backend == "plaintext").all() and (frame.bytes == 0).all()


def test_acquisition_curve_starts_at_the_seed_models_test_loss():
    frame = acquisition_curves("wdbc", "label-noise", 12, 30, 0.5, rounds=4, runs=2)
    assert list(frame.columns) == ACQUISITION_COLUMNS
    assert len(frame) == 2 * 2 * 5
    for run in (0, 1):
        start = fit_seed_model(load_task("wdbc", random_state=run)).test_loss
        first = frame[(frame.run == run) & (frame["round"] == 0)]
        assert np.allclose(first.test_loss, start) and (first.loss_reduction == 0).all()
        for _, curve in frame[frame.run == run].groupby("strategy"):
            picked = curve.candidate[curve["round"] > 0]
            assert picked.is_unique  # acquired without replacement
        seed_loss = first.test_loss.iloc[0]
        rows = frame[frame.run == run]
        # reduction = seed loss - current loss (positive = better), on the seed loss' scale
        np.testing.assert_allclose(rows.loss_reduction, seed_loss - rows.test_loss)
        np.testing.assert_allclose(rows.relative_reduction, rows.loss_reduction / seed_loss)


def test_acquisition_rejects_more_rounds_than_candidates():
    with pytest.raises(ExplorerError, match="rounds"):
        acquisition_curves("wdbc", "none", 3, 10, 0.0, rounds=4, runs=1)
    with pytest.raises(ExplorerError, match="strategies"):
        acquisition_curves("wdbc", "none", 3, 10, 0.0, rounds=2, runs=1,
                           strategies=("influence", "best"))


def test_buying_by_utility_beats_random_and_reads_higher(wdbc, wdbc_seed):
    """On a small real market the oracle (buying by utility) reduces the test loss more than
    random buying: with reductions, the better strategy has the higher curve."""
    market = make_market(wdbc, "label-noise", 10, 30, 0.5, random_state=3)
    frame = market_acquisition(wdbc_seed, market, rounds=3, random_orders=4, oracle=True)
    assert list(frame.columns) == ACQUISITION_COLUMNS
    assert sorted(frame.run[frame.strategy == "random"].unique()) == [0, 1, 2, 3]
    mean = frame.groupby(["strategy", "round"]).relative_reduction.mean()
    for r in (1, 2, 3):
        assert mean["oracle", r] > mean["random", r]
    # round 1 of the oracle buys the best candidate: its reduction is the highest utility
    best = market_utilities(wdbc_seed, market).utility.max()
    oracle = frame[(frame.strategy == "oracle") & (frame["round"] == 1)]
    assert oracle.loss_reduction.iloc[0] == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert best > 0


def test_market_acquisition_reports_every_round(wdbc, wdbc_seed):
    """One event per round of every sequence (greedy, then each random order), ``done``
    growing by one up to ``total``; without a callback the curves are the same."""
    market = make_market(wdbc, "label-noise", 6, 30, 0.5, random_state=1)
    events: list[tuple[str, int, int]] = []
    frame = market_acquisition(wdbc_seed, market, rounds=3, random_orders=2,
                               progress=lambda *event: events.append(event))
    assert events == [("acquisition", done, 9) for done in range(1, 10)]
    pd.testing.assert_frame_equal(frame, market_acquisition(wdbc_seed, market, rounds=3,
                                                            random_orders=2))


def test_finetune_steps_is_a_function_of_public_sizes():
    assert finetune_steps(16, 600, 740) == round(16 * 740 / 1340) == 9
    assert finetune_steps(4, 600, 200) == 1 and finetune_steps(1, 600, 200) == 1  # at least 1
    assert finetune_steps(16, 600, 200) == 4
    with pytest.raises(ExplorerError, match="positive"):
        finetune_steps(0, 600, 200)


def test_finetune_budgets_ignore_the_clock(wdbc, wdbc_seed, monkeypatch):
    """Table 1's steps and rhos are the same whatever the clock says (a loaded machine, a
    faster one): two runs under clocks of different speeds give identical frames."""
    import time

    market = make_market(wdbc, "label-noise", 5, 30, 1.0, 0.2, random_state=0)
    truth = market_utilities(wdbc_seed, market)
    frames = []
    for speed in (1.0, 37.0):
        ticks = iter(np.cumsum(np.random.default_rng(int(speed)).uniform(0, speed, 10**6)))
        monkeypatch.setattr(time, "perf_counter", lambda ticks=ticks: float(next(ticks)))
        frames.append(finetune_budgets(wdbc_seed, market, truth, lrs=(0.1,),
                                       budgets=(1, 4, 16)))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert frames[0].steps.tolist() == [finetune_steps(b, wdbc_seed.n_seed, 30)
                                        for b in (1, 4, 16)]
    with pytest.raises(ExplorerError, match="one size"):
        finetune_budgets(wdbc_seed, [*market, make_market(wdbc, "none", 1, 20)[0]], truth)


def test_own_data_thresholds_per_appraiser(wdbc_seed):
    config = AppraiserConfig(names=("influence", "gradient-norm"))
    thresholds = own_data_thresholds(wdbc_seed, config, size=30, samples=200)
    assert set(thresholds) == {"influence", "gradient-norm"}
    # different scales: one number could not serve both
    assert thresholds["gradient-norm"] > 10 * abs(thresholds["influence"])
    # influence's agrees with pricing's exact own-data baseline (mean + 3 sd)
    exact = PricingRule.calibrated(wdbc_seed, 30, rate=1.0).threshold
    assert thresholds["influence"] == pytest.approx(exact, rel=0.2)
    assert own_data_thresholds(wdbc_seed, config, 30, samples=5) == \
        own_data_thresholds(wdbc_seed, config, 30, samples=5)


def test_bit_configs_take_each_its_threshold():
    config = AppraiserConfig.from_options(names=("influence", "gradient-norm"),
                                          backend="crypten", provider="TFP")
    built = bit_configs(config, {"influence": 0.05, "gradient-norm": 9.0})
    assert [(c.names, c.mpc.reveal, c.mpc.threshold) for c in built] == [
        (("influence",), "bit", 0.05), (("gradient-norm",), "bit", 9.0)]
    with pytest.raises(ExplorerError, match="gradient-norm"):
        bit_configs(config, {"influence": 0.05})
    with pytest.raises(ExplorerError, match="crypten"):
        bit_configs(config.with_(backend="plaintext"), {"influence": 0.05,
                                                        "gradient-norm": 9.0})


def test_bit_prices_are_flat():
    results = pd.DataFrame({"candidate": [0, 1, 2, 0], "appraiser": ["influence"] * 3 + ["x"],
                            "value": [1.0, 0.0, np.nan, 1.0]})
    priced = bit_prices(results, flat=50.0, floor=2.0, thresholds={"influence": 0.1, "x": 3.0})
    assert priced.accepted.tolist() == [True, False, False, True]  # NaN: not verified
    assert priced.price.tolist() == [50.0, 2.0, 2.0, 50.0]
    assert priced.threshold.tolist() == [0.1, 0.1, 0.1, 3.0]
    with pytest.raises(ExplorerError, match="x"):
        bit_prices(results, flat=50.0, thresholds={"influence": 0.1})


def test_runtime_breakdown_sums_the_market(wdbc, wdbc_seed):
    market = make_market(wdbc, "none", 3, 20)
    frame = runtime_breakdown(wdbc_seed, market, [AppraiserConfig(names=("influence",)),
                                                  AppraiserConfig(names=("gradient-norm",))])
    assert list(frame.columns) == BREAKDOWN_COLUMNS
    assert frame.candidates.tolist() == [3, 3] and (frame.private_seconds == 0).all()
    assert (frame.plaintext_seconds > 0).all()


def test_finetune_grid_counts_steps(wdbc, wdbc_seed):
    market = make_market(wdbc, "label-noise", 4, 20, 0.5)
    truth = market_utilities(wdbc_seed, market)
    frame = finetune_grid(wdbc_seed, market, truth, [16, None], [1, 3])
    n_union = wdbc_seed.n_seed + 20
    expected = {(16, 1): -(-n_union // 16), (16, 3): 3 * -(-n_union // 16)}
    for row in frame.itertuples():
        if not pd.isna(row.batch_size):
            assert row.steps == expected[(row.batch_size, row.epochs)]
        else:
            assert row.steps == row.epochs
    assert frame.spearman.between(-1, 1).all()


def test_repeated_rank_correlations_frame():
    config = AppraiserConfig(names=("influence", "gradient-norm"))
    frame = repeated_rank_correlations("wdbc", "label-noise", 10, 20, 0.5, runs=2,
                                       config=config, first_run=100)
    assert set(frame.columns) >= {"run", "appraiser", "backend", "spearman", "spearman_level"}
    assert len(frame) == 4 and frame.spearman.between(-1, 1).all()
    assert sorted(frame.run.unique()) == [100, 101]
