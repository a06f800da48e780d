"""Ground truth: the utility of a candidate by retraining on D_tr ∪ D_a (paper eq. 2)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from explorer import model, network
from explorer.errors import ExplorerError
from explorer.seed import LastLayerSeed, NetworkSeed, SeedModel


@dataclass(frozen=True)
class Utility:
    """utility = test loss at theta_hat minus test loss at theta_star (nats; > 0 means the data
    helps); accuracy_change = test accuracy at theta_star minus at theta_hat."""

    utility: float
    accuracy_change: float
    test_loss: float  # at theta_star
    grad_norm: float  # of the retraining objective at theta_star


def retrain(seed: SeedModel, X_a: torch.Tensor, y_a: torch.Tensor, tol: float = 1e-8,
            weight: float = 1.0) -> model.FitResult:
    """theta_star minimising J on D_tr ∪ D_a, warm-started at theta_hat.

    ``weight`` scales the loss of every candidate sample (1 = the candidate as it is); a tiny
    weight is the infinitesimal up-weighting that influence functions linearise.
    """
    X = torch.cat([seed.X_train, X_a])
    y = torch.cat([seed.y_train, y_a])
    w = None
    if weight != 1.0:
        w = torch.cat([torch.ones(seed.n_seed, dtype=model.DTYPE),
                       torch.full((len(y_a),), float(weight), dtype=model.DTYPE)])
    return model.fit(X, y, seed.n_classes, seed.lam, n_seed=seed.n_seed, theta0=seed.theta,
                     tol=tol, weight=w)


def retrain_network(seed: NetworkSeed, X_a: torch.Tensor, y_a: torch.Tensor,
                    tol: float = 1e-8) -> network.NetworkFit:
    """theta_star of an mlp seed model: J on D_tr ∪ D_a minimised from theta_hat (warm start)
    with the seed model's optimiser and relative tolerance, deterministically: the minimum the
    model owner reaches by buying D_a, among the several a non-convex loss has."""
    X = torch.cat([seed.X_train, X_a])
    y = torch.cat([seed.y_train, y_a])
    return network.fit(X, y, seed.architecture, seed.lam, n_seed=seed.n_seed,
                       theta0=seed.theta, tol=tol)


def ground_truth(seed: SeedModel | NetworkSeed | LastLayerSeed, X_a, y_a,
                 tol: float = 1e-8) -> Utility:
    """Retrain on D_tr ∪ D_a to convergence; return the test-loss reduction and accuracy change.

    A network retrains from theta_hat (``retrain_network``); a last-layer model retrains its
    head on the frozen features of D_tr ∪ D_a, a convex problem."""
    X_a, y_a = seed.check_candidate(X_a, y_a)
    if isinstance(seed, LastLayerSeed):
        seed, X_a = seed.head, seed.features(X_a)
    res = (retrain_network if isinstance(seed, NetworkSeed) else retrain)(seed, X_a, y_a,
                                                                          tol=tol)
    moved = replace(seed, theta=res.theta)  # the same model at theta_star: its test figures
    loss = moved.test_loss
    return Utility(utility=seed.test_loss - loss,
                   accuracy_change=moved.test_accuracy - seed.test_accuracy,
                   test_loss=loss, grad_norm=res.grad_norm)


def check_absorbs(family: str) -> None:
    """Refuse, in one sentence, a seed-model family that acquiring cannot refit
    (``absorb``)."""
    if family == "last-layer":
        raise ExplorerError("acquisition retrains the whole model; it is defined for the "
                            "logistic and mlp seed models, not last-layer.")


def absorb(seed: SeedModel | NetworkSeed, X_a, y_a,
           tol: float = 1e-8) -> SeedModel | NetworkSeed:
    """The model owner's seed model after acquiring D_a: theta_star on D_tr ∪ D_a.

    The returned model's training set is the union and its L2 strength is rescaled to
    lam * n_seed / n_union, so its objective (mean CE + lam'/2 ||W||^2) is J / n_union
    scaled: the same optimum, Hessian and influence as the objective of explorer.model.
    """
    X_a, y_a = seed.check_candidate(X_a, y_a)
    check_absorbs(seed.family)
    X = torch.cat([seed.X_train, X_a])
    y = torch.cat([seed.y_train, y_a])
    if isinstance(seed, NetworkSeed):
        res = retrain_network(seed, X_a, y_a, tol=tol)
        return replace(seed, theta=res.theta, lam=seed.lam * seed.n_seed / len(y), X_train=X,
                       y_train=y, grad_norm=res.grad_norm, converged=res.converged,
                       tol=res.tol)
    res = retrain(seed, X_a, y_a, tol=tol)
    return SeedModel(theta=res.theta, lam=seed.lam * seed.n_seed / len(y),
                     n_classes=seed.n_classes, X_train=X, y_train=y, X_test=seed.X_test,
                     y_test=seed.y_test, grad_norm=res.grad_norm, converged=res.converged)
