"""The model owner's fitted seed model: theta_hat on D_tr, with D_tr and D_te kept beside it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from explorer import model
from explorer.constraints import check_params
from explorer.errors import ConvergenceWarning, ExplorerError
from explorer.loaders.user import check_magnitudes
from explorer.tasks import Task

# Candidate L2 strengths for cross-validation, 1e-4 .. 1e2 in half-decade steps (13 values): covers
# the tasks' recommended defaults (0.01 .. 1) with two decades of room either side.
LAM_GRID: np.ndarray = np.logspace(-4, 2, 13)


@dataclass(frozen=True)
class LamChoice:
    """A cross-validated choice of the L2 strength on the seed set D_tr.

    ``curve`` has one row per grid value, ascending: ``lam``, ``log_loss`` (mean over folds of
    the held-out mean cross-entropy, nats) and ``log_loss_sd`` (its standard deviation over folds).
    ``folds`` is the number of folds actually used.
    """

    lam: float
    curve: pd.DataFrame
    folds: int


@dataclass(frozen=True)
class SeedModel:
    """theta_hat (d + 1, C) minimising J on D_tr (see explorer.model), and what it was fitted on.

    Tensors are float64 (features) and int64 (labels).
    """

    theta: torch.Tensor
    lam: float
    n_classes: int
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    grad_norm: float
    converged: bool
    lam_choice: LamChoice | None = None  # set when lam was chosen by cross-validation

    @property
    def n_seed(self) -> int:
        return len(self.y_train)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def test_loss(self) -> float:
        """Mean test cross-entropy at theta_hat, nats."""
        return model.mean_loss(self.theta, self.X_test, self.y_test)

    @property
    def test_accuracy(self) -> float:
        return model.accuracy(self.theta, self.X_test, self.y_test)

    def check_candidate(self, X, y) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate a candidate dataset against this model; return it as tensors (m, d), (m,).

        X: real numbers (m, d), standardised, each within MAX_STANDARDISED seed-set standard
        deviations; y: whole class indices 0..K-1 (whole-valued floats are accepted).
        """
        X = _real_array(X, "the candidate's features")
        y = _real_array(y, "the candidate's labels", labels=True)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ExplorerError(f"a candidate must have shape (samples, {self.n_features}), got "
                                f"{X.shape}.")
        if len(X) == 0:
            raise ExplorerError("the candidate dataset is empty; give it at least one sample.")
        if y.shape != (len(X),):
            raise ExplorerError(f"a candidate of {len(X)} samples needs {len(X)} labels, got "
                                f"shape {y.shape}.")
        if not np.isfinite(X).all():
            raise ExplorerError("the candidate's features contain NaN or infinite values; remove "
                                "or impute them first.")
        check_magnitudes(X)
        if not np.issubdtype(y.dtype, np.integer):
            whole = np.isfinite(y) & (y == np.round(y))
            if not whole.all():
                i = int(np.flatnonzero(~whole)[0])
                raise ExplorerError(f"the candidate's label {y[i].item()!r} (sample {i}, from 0) "
                                    f"is not a whole number; labels must be whole class "
                                    f"indices 0..{self.n_classes - 1}.")
        if y.min() < 0 or y.max() >= self.n_classes:
            bad = sorted(set(np.unique(y).tolist()) - set(range(self.n_classes)))
            raise ExplorerError(f"the candidate has labels {bad[:5]} that the model does not "
                                f"know; labels must be 0..{self.n_classes - 1}.")
        return model.as_features(X), model.as_labels(y.astype(np.int64))


def _real_array(values, what: str, labels: bool = False) -> np.ndarray:
    """``values`` as a float64 (features) or numeric (labels) array; one sentence otherwise."""
    kinds = "iuf" if labels else "biuf"
    try:
        array = np.asarray(values.detach() if isinstance(values, torch.Tensor) else values)
        if array.dtype.kind == "O":
            array = array.astype(np.float64)
    except (TypeError, ValueError, RuntimeError):
        array = None
    if array is None or array.dtype.kind not in kinds:
        kind = "true/false values" if array is not None and array.dtype.kind == "b" else \
            f"{type(values).__name__}" + (f" of {array.dtype}" if array is not None else "")
        need = ("whole class indices (class names are read from candidate files only)"
                if labels else "an array of real numbers")
        raise ExplorerError(f"{what} must be {need}, got {kind}.")
    return array if labels else array.astype(np.float64)


def choose_lam(X, y, n_classes: int, grid: Sequence[float] | np.ndarray = LAM_GRID,
               folds: int = 5, random_state: int | None = 0) -> LamChoice:
    """Choose lam by stratified K-fold cross-validation on the seed set (X (n, d), y (n,)) alone.

    Each fold's model minimises J on its training folds with that part's own n, so lam keeps its
    mean-loss meaning; it is scored by the held-out mean log-loss (nats). The lam with the smallest
    mean over folds wins (ties: the larger lam). With a class rarer than ``folds``, as many folds
    as the rarest class allows are used (at least 2).
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ExplorerError(f"cross-validation needs a whole number of folds >= 2, got {folds!r}.")
    try:
        lams = np.asarray(grid, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ExplorerError("the lam grid must be a list of positive numbers.") from None
    if lams.size == 0 or not np.isfinite(lams).all() or (lams <= 0).any():
        raise ExplorerError(f"the lam grid must be a non-empty list of positive finite numbers, "
                            f"got {lams.tolist()[:5]}.")
    lams = np.unique(lams)  # ascending, duplicates dropped
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape != (len(X),):
        raise ExplorerError(f"cross-validation needs X of shape (n, d) and y of shape (n,), got "
                            f"{X.shape} and {y.shape}.")
    rarest = int(np.unique(y, return_counts=True)[1].min()) if len(y) else 0
    k = min(int(folds), rarest)
    if k < 2:
        raise ExplorerError(f"cross-validation needs at least 2 seed samples of every class but "
                            f"the rarest has {rarest}; add samples or give lam as a number.")
    splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
                  .split(X, y))
    labels = list(range(n_classes))
    losses = np.empty((len(lams), k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, lam in enumerate(lams):
            for j, (tr, te) in enumerate(splits):
                res = model.fit(X[tr], y[tr], n_classes, float(lam))
                p = model.class_probabilities(res.theta, model.as_features(X[te])).numpy()
                losses[i, j] = log_loss(y[te], p, labels=labels)
    mean = losses.mean(axis=1)
    best = int(np.flatnonzero(mean == mean.min())[-1])
    curve = pd.DataFrame({"lam": lams, "log_loss": mean, "log_loss_sd": losses.std(axis=1)})
    return LamChoice(lam=float(lams[best]), curve=curve, folds=k)


def fit_seed_model(task: Task, lam: float | str | None = None, tol: float = 1e-8,
                   max_iter: int = 2000) -> SeedModel:
    """Fit theta_hat on the task's seed training set to gradient norm ``tol``.

    ``lam`` is the L2 strength (default ``task.lam``), or ``"cv"`` to choose it by
    cross-validation on the seed set (``choose_lam``; the result is kept as ``lam_choice``).
    """
    if not isinstance(task, Task):
        raise ExplorerError(f"fit_seed_model takes a Task from load_task, got "
                            f"{type(task).__name__}.")
    check_params({"tol": tol, "max_iter": max_iter})
    choice = None
    if isinstance(lam, str):
        if lam != "cv":
            raise ExplorerError(f"lam must be a number or 'cv', got {lam!r}; use a positive "
                                f"number or 'cv'.")
        choice = choose_lam(task.X_train, task.y_train, task.n_classes)
        lam = choice.lam
    lam = task.lam if lam is None else lam
    check_params({"lam": lam})
    X_tr, y_tr = model.as_features(task.X_train), model.as_labels(task.y_train)
    res = model.fit(X_tr, y_tr, task.n_classes, lam, tol=tol, max_iter=max_iter)
    return SeedModel(theta=res.theta, lam=float(lam), n_classes=task.n_classes, X_train=X_tr,
                     y_train=y_tr, X_test=model.as_features(task.X_test),
                     y_test=model.as_labels(task.y_test), grad_norm=res.grad_norm,
                     converged=res.converged, lam_choice=choice)
