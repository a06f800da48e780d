"""Seed tasks: splits, standardisation from the seed set only, determinism."""

import numpy as np
import pytest

from explorer.errors import ExplorerError
from explorer.tasks import TASKS, load_task, standardisation


def test_wdbc_split_sizes_and_disjointness(wdbc):
    assert wdbc.n_features == 30 and wdbc.n_classes == 2
    assert len(wdbc.y_train) == 57 and len(wdbc.y_test) == 171
    assert len(wdbc.y_train) + len(wdbc.y_test) + len(wdbc.y_pool) == 569
    raw = wdbc.to_raw(np.concatenate([wdbc.X_train, wdbc.X_test, wdbc.X_pool]))
    assert len(np.unique(raw.round(8), axis=0)) == 569  # no sample in two parts


def test_standardised_with_seed_statistics_only(wdbc):
    assert np.allclose(wdbc.X_train.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(wdbc.X_train.std(axis=0), 1, atol=1e-12)
    assert not np.allclose(wdbc.X_test.mean(axis=0), 0, atol=1e-3)
    assert np.allclose(wdbc.standardise(wdbc.to_raw(wdbc.X_pool)), wdbc.X_pool)


def test_near_constant_pixels_are_floored_but_other_units_are_not():
    X = np.column_stack([np.r_[np.zeros(99), 1e-6], np.arange(100.0), np.arange(100.0) * 2,
                         np.zeros(100)])
    _, pixels = standardisation(X, shared_units=True)
    assert pixels[0] == pytest.approx(0.1 * X[:, 1].std())
    _, mixed = standardisation(X, shared_units=False)
    assert mixed[0] == pytest.approx(X[:, 0].std()) and mixed[3] == 1.0


def test_same_seed_same_task_other_seed_other_split():
    a, b, c = (load_task("digits", random_state=r) for r in (3, 3, 4))
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_pool, b.y_pool)
    assert not np.array_equal(a.X_train, c.X_train)


def test_digits_seed_set_is_stratified(digits):
    assert np.bincount(digits.y_train).tolist() == [10] * 10


def test_drop_features_removes_columns():
    task = load_task("wdbc", drop_features=10, random_state=1)
    assert task.n_features == 20 and task.X_pool.shape[1] == 20
    assert len(set(task.feature_names)) == 20


def test_unknown_task_and_bad_options():
    with pytest.raises(ExplorerError, match="unknown task 'nope'; choose one of wdbc"):
        load_task("nope")
    with pytest.raises(ExplorerError, match="drop_features"):
        load_task("wdbc", drop_features=30)
    with pytest.raises(ExplorerError, match="takes no data directory"):
        load_task("wdbc", data_dir="/tmp")


def test_every_task_has_a_description():
    assert all(spec.description for spec in TASKS.values())
