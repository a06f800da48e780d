"""The logistic model against exact answers: autograd, finite differences and scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from explorer import model
from explorer.errors import ExplorerError


def problem(n=60, d=5, k=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k))
    y = (X @ W + rng.gumbel(size=(n, k))).argmax(axis=1)
    return model.as_features(X), model.as_labels(y)


def random_theta(d, k, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d + 1, model.n_outputs(k), generator=g, dtype=model.DTYPE) * 0.5


@pytest.mark.parametrize("k", [2, 4])
def test_per_sample_grads_match_autograd(k):
    X, y = problem(k=k)
    theta = random_theta(X.shape[1], k)
    grads = model.per_sample_grads(theta, X, y)
    for i in [0, 7, 31]:
        t = theta.clone().requires_grad_(True)
        model.per_sample_loss(t, X[i:i + 1], y[i:i + 1]).sum().backward()
        assert torch.allclose(grads[i], t.grad.reshape(-1), atol=1e-12)
    assert torch.allclose(grads.sum(0), model.grad_sum(theta, X, y).reshape(-1), atol=1e-10)


@pytest.mark.parametrize("k", [2, 3])
def test_objective_gradient_and_hessian_match_autograd(k):
    X, y = problem(k=k)
    theta = random_theta(X.shape[1], k)
    lam, n_seed = 0.3, 40

    def J(flat):
        t = flat.reshape(theta.shape)
        return (model.per_sample_loss(t, X, y).sum() / n_seed
                + 0.5 * lam * (t[:-1] ** 2).sum())

    flat = theta.reshape(-1).clone().requires_grad_(True)
    J(flat).backward()
    assert torch.allclose(model.objective_grad(theta, X, y, lam, n_seed).reshape(-1), flat.grad,
                          atol=1e-12)
    H_auto = torch.autograd.functional.hessian(J, theta.reshape(-1))
    H = model.hessian(theta, X, lam, n_seed)
    assert torch.allclose(H, H_auto, atol=1e-12)
    V = torch.randn(theta.shape, dtype=model.DTYPE)
    hvp = model.hessian_vector_product(theta, X, lam, n_seed, V)
    assert torch.allclose(hvp.reshape(-1), H @ V.reshape(-1), atol=1e-12)


def test_objective_value_matches_definition():
    X, y = problem()
    theta = random_theta(X.shape[1], 2)
    p = torch.sigmoid(X @ theta[:-1, 0] + theta[-1, 0])
    ce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    expected = ce.sum() / 50 + 0.5 * 0.1 * (theta[:-1] ** 2).sum()
    assert model.objective(theta, X, y, 0.1, 50) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("k", [2, 3])
def test_fit_matches_scikit_learn_optimum(k):
    X, y = problem(n=200, d=6, k=k, seed=3)
    lam = 0.05
    res = model.fit(X, y, n_classes=k, lam=lam)
    assert res.converged and res.grad_norm <= 1e-8
    # sklearn minimises C * sum(CE) + ||W||^2 / 2, the same optimum when C = 1 / (lam * n).
    sk = LogisticRegression(C=1.0 / (lam * len(y)), tol=1e-12, max_iter=100000).fit(X, y)
    if k == 2:
        W, b = sk.coef_.T, sk.intercept_
    else:
        W, b = sk.coef_.T, sk.intercept_ - sk.intercept_.mean()
    theta = res.theta.numpy()
    assert np.abs(theta[:-1] - W).max() < 1e-4
    assert np.abs(theta[-1] - b).max() < 1e-4


@pytest.mark.parametrize("k", [2, 4])
def test_solve_hessian_dense_and_cg_agree(k):
    X, y = problem(n=80, d=7, k=k)
    theta = model.fit(X, y, n_classes=k, lam=0.1).theta
    rhs = model.grad_sum(theta, X[:10], y[:10])
    dense = model.solve_hessian(theta, X, 0.1, 80, rhs, method="dense")
    cg = model.solve_hessian(theta, X, 0.1, 80, rhs, method="cg")
    assert torch.allclose(dense, cg, atol=1e-8)
    H = model.hessian(theta, X, 0.1, 80)
    assert torch.allclose(H @ dense.reshape(-1), rhs.reshape(-1), atol=1e-9)


def test_warm_start_converges_to_same_optimum():
    X, y = problem(n=120, k=3)
    cold = model.fit(X, y, 3, lam=0.05)
    warm = model.fit(X, y, 3, lam=0.05, theta0=cold.theta + 0.3)
    assert torch.allclose(cold.theta, warm.theta, atol=1e-7)


def test_fit_rejects_bad_strength_and_shape():
    X, y = problem()
    with pytest.raises(ExplorerError, match="positive"):
        model.fit(X, y, 2, lam=0.0)
    with pytest.raises(ExplorerError, match="warm start"):
        model.fit(X, y, 2, lam=0.1, theta0=torch.zeros(3, 1, dtype=model.DTYPE))


def test_fit_warns_when_not_converged():
    X, y = problem(n=100, k=3)
    with pytest.warns(model.ConvergenceWarning, match="gradient norm"):
        res = model.fit(X, y, 3, lam=1e-4, max_iter=2)
    assert not res.converged
