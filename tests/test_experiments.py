"""Experiment frames: columns, dtypes and the quantities they promise."""

import numpy as np
import pandas as pd
import pytest

from explorer.appraisers import AppraiserConfig, make_appraiser
from explorer.errors import ExplorerError
from explorer.experiments import (
    ACQUISITION_COLUMNS,
    BREAKDOWN_COLUMNS,
    RESULT_COLUMNS,
    acquisition_curves,
    appraise_market,
    finetune_grid,
    market_utilities,
    repeated_rank_correlations,
    runtime_breakdown,
)
from explorer.market import make_market
from explorer.seed import fit_seed_model
from explorer.tasks import load_task


def test_appraise_market_columns_and_dtypes(wdbc, wdbc_seed):
    market = make_market(wdbc, "label-noise", 4, 20, 0.5)
    frame = appraise_market(wdbc_seed, market, [make_appraiser("influence")])
    assert list(frame.columns) == RESULT_COLUMNS
    assert frame.candidate.dtype.kind == "i" and frame.value.dtype.kind == "f"
    assert (frame.backend == "plaintext").all() and (frame.bytes == 0).all()


def test_acquisition_curve_starts_at_the_seed_models_test_loss():
    frame = acquisition_curves("wdbc", "label-noise", 12, 30, 0.5, rounds=4, runs=2)
    assert list(frame.columns) == ACQUISITION_COLUMNS
    assert len(frame) == 2 * 2 * 5
    for run in (0, 1):
        start = fit_seed_model(load_task("wdbc", seed=run)).test_loss
        first = frame[(frame.run == run) & (frame["round"] == 0)]
        assert np.allclose(first.test_loss, start) and (first.loss_change == 0).all()
        for _, curve in frame[frame.run == run].groupby("strategy"):
            picked = curve.candidate[curve["round"] > 0]
            assert picked.is_unique  # acquired without replacement
    random_best = frame[frame.strategy == "random"].groupby("run").normalised_change.min()
    assert ((random_best == -1) | (random_best >= 0)).all()


def test_acquisition_rejects_more_rounds_than_candidates():
    with pytest.raises(ExplorerError, match="rounds"):
        acquisition_curves("wdbc", "none", 3, 10, 0.0, rounds=4, runs=1)


def test_runtime_breakdown_sums_the_market(wdbc, wdbc_seed):
    market = make_market(wdbc, "none", 3, 20)
    frame = runtime_breakdown(wdbc_seed, market, [make_appraiser("influence"),
                                                  make_appraiser("gradient-norm")])
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
