"""The model owner's fitted seed model: theta_hat on D_tr, with D_tr and D_te kept beside it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from explorer import model
from explorer.errors import ExplorerError
from explorer.tasks import Task


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
        """Validate a candidate dataset against this model; return it as tensors (m, d), (m,)."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
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
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= self.n_classes:
            bad = sorted(set(np.unique(y).tolist()) - set(range(self.n_classes)))
            raise ExplorerError(f"the candidate has labels {bad[:5]} that the model does not "
                                f"know; labels must be 0..{self.n_classes - 1}.")
        return model.as_features(X), model.as_labels(y)


def fit_seed_model(task: Task, lam: float | None = None, tol: float = 1e-8,
                   max_iter: int = 2000) -> SeedModel:
    """Fit theta_hat on the task's seed training set to gradient norm ``tol``."""
    lam = task.lam if lam is None else lam
    X_tr, y_tr = model.as_features(task.X_train), model.as_labels(task.y_train)
    res = model.fit(X_tr, y_tr, task.n_classes, lam, tol=tol, max_iter=max_iter)
    return SeedModel(theta=res.theta, lam=float(lam), n_classes=task.n_classes, X_train=X_tr,
                     y_train=y_tr, X_test=model.as_features(task.X_test),
                     y_test=model.as_labels(task.y_test), grad_norm=res.grad_norm,
                     converged=res.converged)
