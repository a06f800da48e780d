"""Cross-validated choice of the seed model's L2 strength (explorer.seed.choose_lam)."""

import functools

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from explorer import seed
from explorer.errors import ExplorerError
from explorer.seed import LAM_GRID, LamChoice, choose_lam, fit_seed_model

SHORT_GRID = np.logspace(-3, 0, 4)  # keeps the multiclass (digits) tests quick


def sklearn_curve(X, y, n_classes, grid, folds=5, random_state=0):
    """Mean held-out log-loss per lam, with scikit-learn only (C = 1 / (lam * n_train_fold))."""
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state).split(X, y)
    splits = list(splits)
    out = []
    for lam in grid:
        scores = []
        for tr, te in splits:
            clf = LogisticRegression(C=1.0 / (lam * len(tr)), tol=1e-12, max_iter=100_000)
            clf.fit(X[tr], y[tr])
            scores.append(log_loss(y[te], clf.predict_proba(X[te]), labels=range(n_classes)))
        out.append(np.mean(scores))
    return np.array(out)


def test_grid_constant():
    assert np.allclose(LAM_GRID, np.logspace(-4, 2, 13))


def test_wdbc_choice_matches_sklearn(wdbc):
    choice = choose_lam(wdbc.X_train, wdbc.y_train, wdbc.n_classes)
    assert isinstance(choice, LamChoice)
    assert choice.folds == 5
    assert list(choice.curve.columns) == ["lam", "log_loss", "log_loss_sd"]
    assert np.allclose(choice.curve["lam"], LAM_GRID)
    ref = sklearn_curve(wdbc.X_train, wdbc.y_train, wdbc.n_classes, LAM_GRID)
    np.testing.assert_allclose(choice.curve["log_loss"].to_numpy(), ref, rtol=1e-4)
    assert choice.lam == pytest.approx(LAM_GRID[np.argmin(ref)])
    assert (choice.curve["log_loss_sd"] >= 0).all()


def test_fit_seed_model_cv_wdbc(wdbc):
    s = fit_seed_model(wdbc, lam="cv")
    assert s.lam_choice is not None
    assert s.lam == s.lam_choice.lam == choose_lam(wdbc.X_train, wdbc.y_train, 2).lam
    assert s.converged
    assert fit_seed_model(wdbc).lam_choice is None  # default path unchanged


def test_digits_multiclass(digits, monkeypatch):
    choice = choose_lam(digits.X_train, digits.y_train, digits.n_classes, grid=SHORT_GRID)
    ref = sklearn_curve(digits.X_train, digits.y_train, digits.n_classes, SHORT_GRID)
    np.testing.assert_allclose(choice.curve["log_loss"].to_numpy(), ref, rtol=1e-4)
    assert choice.lam == pytest.approx(SHORT_GRID[np.argmin(ref)])
    monkeypatch.setattr(seed, "choose_lam", functools.partial(choose_lam, grid=SHORT_GRID))
    s = fit_seed_model(digits, lam="cv")
    assert s.lam == choice.lam and s.lam_choice is not None
    assert s.theta.shape == (digits.n_features + 1, digits.n_classes)


def test_rare_class_reduces_folds(wdbc):
    y = wdbc.y_train.copy()
    keep = np.concatenate([np.flatnonzero(y == 0)[:3], np.flatnonzero(y == 1)])
    choice = choose_lam(wdbc.X_train[keep], y[keep], 2, grid=[0.1, 1.0])
    assert choice.folds == 3
    with pytest.raises(ExplorerError, match="rarest"):
        keep = np.concatenate([np.flatnonzero(y == 0)[:1], np.flatnonzero(y == 1)])
        choose_lam(wdbc.X_train[keep], y[keep], 2, grid=[0.1])


def test_ties_pick_larger_lam(wdbc):
    choice = choose_lam(wdbc.X_train, wdbc.y_train, 2, grid=[0.1, 0.1])
    assert choice.lam == 0.1 and len(choice.curve) == 1


@pytest.mark.parametrize("kwargs", [
    {"folds": 1}, {"folds": 2.5}, {"grid": []}, {"grid": [0.1, -1.0]}, {"grid": [0.0]},
    {"grid": [np.inf]},
])
def test_bad_inputs(wdbc, kwargs):
    with pytest.raises(ExplorerError):
        choose_lam(wdbc.X_train, wdbc.y_train, 2, **kwargs)


def test_bad_lam_string(wdbc):
    with pytest.raises(ExplorerError, match="positive number or 'cv'"):
        fit_seed_model(wdbc, lam="abc")
