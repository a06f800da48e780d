"""L2-regularised logistic regression with a bias: binary (sigmoid) and multiclass (softmax).

Parameters are a matrix ``theta`` of shape (d + 1, C): rows 0..d-1 hold the feature weights W,
the last row the bias; C = 1 for two classes (sigmoid of one logit) and C = K for K >= 3 classes
(softmax). Flattened parameter vectors use theta's row-major order, P = (d + 1) * C entries.

One objective everywhere. For a seed training set of ``n_seed`` samples and strength ``lam``:

    J(theta; D) = (1 / n_seed) * sum_{(x, y) in D} CE(x, y; theta) + (lam / 2) * ||W||^2

with the bias unpenalised. On the seed set (D = D_tr) this is the mean cross-entropy plus
(lam / 2)||W||^2. When a candidate D_a is added, the penalty keeps its total weight, exactly as in
the paper's eq. 1 (a sum of losses plus a fixed lambda' ||theta||^2, lambda' = lam * n_seed / 2), so
first-order influence predictions and retraining agree. All tensors are float64.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse.linalg
import torch

from explorer.errors import ConvergenceWarning, ExplorerError

DTYPE = torch.float64
# Dense Hessians up to this many parameters; above, conjugate gradient on Hessian-vector products.
DENSE_HESSIAN_MAX = 3000
# Fits with up to this many parameters take Newton steps with a dense Cholesky solve: building and
# factoring the Hessian costs n P^2 + P^3 / 3, against n P per Hessian-vector product of which a
# Newton-CG step needs tens. Measured: dense wins at WDBC's 31 parameters (4x), Newton-CG at
# digits' 650 (4x).
NEWTON_CHOLESKY_MAX = 200


def as_features(X) -> torch.Tensor:
    """Return X as a float64 tensor of shape (n, d)."""
    if not torch.is_tensor(X):
        X = np.asarray(X, dtype=np.float64)
    return torch.as_tensor(X, dtype=DTYPE)


def as_labels(y) -> torch.Tensor:
    """Return y as an int64 tensor of shape (n,)."""
    return torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y, dtype=torch.int64)


def n_outputs(n_classes: int) -> int:
    """Number of logits C: 1 for two classes (sigmoid), K for K >= 3 (softmax)."""
    if n_classes < 2:
        raise ExplorerError(f"a classifier needs at least 2 classes, got {n_classes}.")
    return 1 if n_classes == 2 else n_classes


def with_bias(X: torch.Tensor) -> torch.Tensor:
    """Append a column of ones for the bias: (..., n, d) -> (..., n, d + 1)."""
    return torch.cat([X, torch.ones(*X.shape[:-1], 1, dtype=X.dtype)], dim=-1)


def label_targets(y: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """Labels (..., n) -> targets (..., n, C): the 0/1 label for C = 1, else one-hot."""
    if n_outputs == 1:
        return y.to(DTYPE)[..., None]
    return torch.nn.functional.one_hot(y.long(), n_outputs).to(DTYPE)


def penalty_mask(d1: int, n_outputs: int) -> torch.Tensor:
    """1 on the weight rows, 0 on the unpenalised bias row: (d1, C)."""
    mask = torch.ones(d1, n_outputs, dtype=DTYPE)
    mask[-1] = 0.0
    return mask


def logits(theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Logits of shape (n, C)."""
    return X @ theta[:-1] + theta[-1]


def probabilities(Z, n_outputs: int):
    """Probabilities from logits (..., C): sigmoid for C = 1, softmax over the last axis.

    Written with the methods torch tensors and CrypTensors share, so the appraisers
    (explorer.appraisers.logistic) evaluate the same link under MPC.
    """
    return Z.sigmoid() if n_outputs == 1 else Z.softmax(dim=-1)


def class_probabilities(theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Class probabilities of shape (n, K) (K = 2 for a sigmoid model)."""
    p = probabilities(logits(theta, X), theta.shape[1])
    return torch.cat([1 - p, p], dim=1) if p.shape[1] == 1 else p


def per_sample_loss(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each sample, shape (n,), in nats."""
    z = logits(theta, X)
    if z.shape[1] == 1:
        z = z[:, 0]
        return torch.nn.functional.softplus(z) - y.to(z.dtype) * z
    return torch.logsumexp(z, dim=1) - z.gather(1, y[:, None])[:, 0]


def mean_loss(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy over (X, y), in nats (no penalty)."""
    return float(per_sample_loss(theta, X, y).mean())


def accuracy(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of samples whose most probable class is the label."""
    return float((class_probabilities(theta, X).argmax(dim=1) == y).to(DTYPE).mean())


def residuals(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d CE / d logits for each sample, shape (n, C): sigmoid(z) - y, or softmax(z) - onehot(y)."""
    C = theta.shape[1]
    return probabilities(logits(theta, X), C) - label_targets(y, C)


def per_sample_grads(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of each sample's cross-entropy (no penalty), shape (n, P)."""
    r = residuals(theta, X, y)
    return (with_bias(X)[:, :, None] * r[:, None, :]).reshape(X.shape[0], -1)


def grad_sum(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """(Weighted) sum over samples of the cross-entropy gradient (no penalty), shape (d + 1, C)."""
    r = residuals(theta, X, y)
    return with_bias(X).T @ (r if weight is None else weight[:, None] * r)


def objective(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, lam: float,
              n_seed: int, weight: torch.Tensor | None = None) -> float:
    """J(theta; D) of the module docstring; ``weight`` (n,) scales each sample's loss."""
    loss = per_sample_loss(theta, X, y)
    if weight is not None:
        loss = weight * loss
    return float(loss.sum() / n_seed + 0.5 * lam * (theta[:-1] ** 2).sum())


def objective_grad(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, lam: float,
                   n_seed: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient of J, shape (d + 1, C)."""
    return grad_sum(theta, X, y, weight) / n_seed + lam * penalty_mask(*theta.shape) * theta


def _curvature(theta: torch.Tensor, X: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """Per-sample Hessian of CE w.r.t. logits applied to directions Z (n, C)."""
    p = probabilities(logits(theta, X), theta.shape[1])
    if p.shape[1] == 1:
        return p * (1 - p) * Z
    return p * Z - p * (p * Z).sum(dim=1, keepdim=True)


def hessian_vector_product(theta: torch.Tensor, X: torch.Tensor, lam: float, n_seed: int,
                           V: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Hessian of J (over the samples X) times V; V and the result have theta's shape."""
    A = with_bias(X)
    curv = _curvature(theta, X, A @ V)
    if weight is not None:
        curv = weight[:, None] * curv
    return A.T @ curv / n_seed + lam * penalty_mask(*theta.shape) * V


def hessian(theta: torch.Tensor, X: torch.Tensor, lam: float, n_seed: int,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    """Dense Hessian of J over the samples X, shape (P, P), in flattened theta order."""
    A = with_bias(X)
    n, d1 = A.shape
    C = theta.shape[1]
    p = probabilities(logits(theta, X), C)
    w = torch.ones(n, dtype=DTYPE) if weight is None else weight
    if C == 1:
        s = p[:, 0]
        H = (A * (w * s * (1 - s))[:, None]).T @ A
    else:
        H = torch.zeros(d1, C, d1, C, dtype=DTYPE)
        for k in range(C):
            H[:, k, :, k] = (A * (w * p[:, k])[:, None]).T @ A
        B = (A[:, :, None] * p[:, None, :]).reshape(n, d1 * C)
        H = H.reshape(d1 * C, d1 * C) - (B * w[:, None]).T @ B
    H = H / n_seed
    H += torch.diag(lam * penalty_mask(*theta.shape).reshape(-1))
    return H


def null_direction(theta: torch.Tensor) -> torch.Tensor | None:
    """Unit vector along which a softmax model is unchanged: shifting every bias equally.

    The unpenalised softmax bias makes J flat along it, so the Hessian is singular there; every
    loss gradient is orthogonal to it, so solving in its complement loses nothing.
    """
    C = theta.shape[1]
    if C == 1:
        return None
    u = torch.zeros_like(theta)
    u[-1] = 1.0 / np.sqrt(C)
    return u.reshape(-1)


def solve_hessian(theta: torch.Tensor, X: torch.Tensor, lam: float, n_seed: int,
                  rhs: torch.Tensor, method: str = "auto", rtol: float = 1e-10,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Return H^-1 rhs for the Hessian H of J over the samples X; rhs and result shaped like theta.

    ``method`` is "dense" (Cholesky of the full Hessian), "cg" (conjugate gradient on
    Hessian-vector products) or "auto" (dense up to DENSE_HESSIAN_MAX parameters).
    """
    if method not in ("auto", "dense", "cg"):
        raise ExplorerError(f"unknown Hessian solver {method!r}; use 'auto', 'dense' or 'cg'.")
    P = theta.numel()
    u = null_direction(theta)
    b = rhs.reshape(-1).to(DTYPE)
    if u is not None:
        b = b - u * (u @ b)
    if method == "dense" or (method == "auto" and P <= DENSE_HESSIAN_MAX):
        H = hessian(theta, X, lam, n_seed, weight)
        if u is not None:
            H = H + torch.outer(u, u)
        L, info = torch.linalg.cholesky_ex(H)
        if int(info) == 0:
            x = torch.cholesky_solve(b[:, None], L)[:, 0]
        else:
            x = torch.linalg.lstsq(H, b[:, None]).solution[:, 0]
        return x.reshape(theta.shape)

    def matvec(vec: np.ndarray) -> np.ndarray:
        V = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float64)).reshape(theta.shape)
        out = hessian_vector_product(theta, X, lam, n_seed, V, weight).reshape(-1)
        if u is not None:
            out = out + u * (u @ V.reshape(-1))
        return out.numpy()

    op = scipy.sparse.linalg.LinearOperator((P, P), matvec=matvec, dtype=np.float64)
    x, info = scipy.sparse.linalg.cg(op, b.numpy(), rtol=rtol, atol=0.0, maxiter=10 * P)
    if info != 0:
        warnings.warn(f"conjugate gradient stopped after {info} iterations without reaching "
                      f"relative residual {rtol:g}.", ConvergenceWarning, stacklevel=2)
    return torch.from_numpy(x).reshape(theta.shape)


@dataclass(frozen=True)
class FitResult:
    """A fitted parameter matrix and how well the fit converged."""

    theta: torch.Tensor  # (d + 1, C)
    grad_norm: float  # ||grad J|| at theta
    converged: bool
    n_iter: int


def fit(X, y, n_classes: int, lam: float, n_seed: int | None = None,
        theta0: torch.Tensor | None = None, tol: float = 1e-8,
        max_iter: int = 1000, weight: torch.Tensor | None = None) -> FitResult:
    """Minimise J(theta; (X, y)) to gradient norm ``tol`` relative to the problem's scale,
    max(1, ||grad J(0)||); warm-start from ``theta0`` if given.

    ``n_seed`` defaults to len(X) (fitting the seed model itself); ``weight`` (n,) scales each
    sample's loss. Up to NEWTON_CHOLESKY_MAX parameters: Newton's method, each step a Cholesky
    solve with the exact Hessian, with backtracking (a warm start needs 2-4 steps). Above: a
    trust-region Newton-CG with exact Hessian-vector products, then plain Newton steps (CG
    solves) once J's changes fall below float64 resolution.
    """
    X, y = as_features(X), as_labels(y)
    if lam <= 0 or not np.isfinite(lam):
        raise ExplorerError(f"the L2 strength must be a positive number, got {lam}.")
    n_seed = X.shape[0] if n_seed is None else n_seed
    C = n_outputs(n_classes)
    shape = (X.shape[1] + 1, C)
    if theta0 is None:
        theta0 = torch.zeros(shape, dtype=DTYPE)
    elif tuple(theta0.shape) != shape:
        raise ExplorerError(f"warm start has shape {tuple(theta0.shape)}, expected {shape}.")

    def unflat(flat: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float64)).reshape(shape)

    # a tolerance relative to the gradient at theta = 0, which grows with the data's scale
    tol = tol * max(1.0, float(objective_grad(torch.zeros(shape, dtype=DTYPE), X, y, lam,
                                              n_seed, weight).norm()))

    if theta0.numel() <= NEWTON_CHOLESKY_MAX:
        theta, n_iter = _newton(theta0.clone(), X, y, lam, n_seed, weight, tol, max_iter)
        return _result(theta, X, y, lam, n_seed, weight, tol, n_iter)

    def fun(flat):
        theta = unflat(flat)
        return (objective(theta, X, y, lam, n_seed, weight),
                objective_grad(theta, X, y, lam, n_seed, weight).reshape(-1).numpy())

    def hessp(flat, vec):
        return hessian_vector_product(unflat(flat), X, lam, n_seed, unflat(vec),
                                      weight).reshape(-1).numpy()

    res = scipy.optimize.minimize(fun, theta0.reshape(-1).numpy().copy(), jac=True,
                                  hessp=hessp, method="trust-ncg",
                                  options={"gtol": 0.1 * tol, "maxiter": max_iter})
    n_iter, x = int(res.nit), res.x
    theta = unflat(x).clone()
    # Near the optimum J changes below float64 resolution and the line searches stall; Newton
    # steps need only gradients, and converge quadratically from here.
    for _ in range(5):
        g = objective_grad(theta, X, y, lam, n_seed, weight)
        if float(g.norm()) <= tol or n_iter >= max_iter:
            break
        theta = theta - solve_hessian(theta, X, lam, n_seed, g, weight=weight)
        n_iter += 1
    return _result(theta, X, y, lam, n_seed, weight, tol, n_iter)


def _newton(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, lam: float, n_seed: int,
            weight: torch.Tensor | None, tol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """Newton steps with dense Cholesky solves from ``theta`` until ||grad J|| <= tol; returns
    theta and the number of steps. Each step backtracks until J decreases enough (Armijo); in
    the last steps J's change is below float64 resolution, so a step that lowers the gradient
    norm is taken instead."""
    n_iter = 0
    g = objective_grad(theta, X, y, lam, n_seed, weight)
    J = objective(theta, X, y, lam, n_seed, weight)
    while float(g.norm()) > tol and n_iter < max_iter:
        step = solve_hessian(theta, X, lam, n_seed, g, method="dense", weight=weight)
        slope = float((g * step).sum())  # > 0: H is positive definite (on the null complement)
        t = 1.0
        while t >= 1e-10:
            trial = theta - t * step
            J_trial = objective(trial, X, y, lam, n_seed, weight)
            g_trial = objective_grad(trial, X, y, lam, n_seed, weight)
            if J_trial <= J - 1e-4 * t * slope or (
                    abs(J_trial - J) <= 1e-13 * max(1.0, abs(J)) and g_trial.norm() < g.norm()):
                break
            t *= 0.5
        else:
            break  # no step helps: _result reports the gradient norm reached
        theta, J, g = trial, J_trial, g_trial
        n_iter += 1
    return theta, n_iter


def _result(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, lam: float, n_seed: int,
            weight: torch.Tensor | None, tol: float, n_iter: int) -> FitResult:
    """The fit's result, warning when the gradient norm did not reach ``tol``."""
    if theta.shape[1] > 1:
        # softmax is unchanged by a common bias shift: return the zero-mean-bias representative
        theta[-1] -= theta[-1].mean()
    gnorm = float(objective_grad(theta, X, y, lam, n_seed, weight).norm())
    converged = gnorm <= tol
    if not converged:
        warnings.warn(f"logistic fit stopped at gradient norm {gnorm:.2e} after {n_iter} "
                      f"iterations (tolerance {tol:g}); raise max_iter or lam.",
                      ConvergenceWarning, stacklevel=3)
    return FitResult(theta=theta, grad_norm=gnorm, converged=converged, n_iter=n_iter)
