"""The ``mlp`` family: a small L2-regularised network, the model owner's side in float64.

The hidden activation is SiLU, z sigmoid(z), by default: measured on MNIST (784-64-10, 600 seed
digits, lam 0.03) the SiLU network's fit reaches gradient norm 1.5e-9 (tolerance 2.1e-8) in 830
iterations, while the ReLU network's stops at 7e-3 after 3,000: its loss has kinks where a
pre-activation crosses zero, and its minima sit on them, so no gradient tolerance can be stated
for it and its ground truth's retraining stalls the same way. ReLU (one comparison under MPC)
and the square (one product) remain choices; the square's values overflow 16-bit fixed point
on WDBC.

Architecture d -> h_1 (-> h_2) -> C: each layer l is one matrix W_l of shape (in_l + 1, out_l)
whose last row is the bias, as the logistic model's theta (explorer.model) is; C = 1 is a
sigmoid output for two classes, C = K softmax for K >= 3. The flattened parameter vector is
every layer's matrix in row-major order, layer after layer: P = sum (in_l + 1) out_l entries.

The objective is the logistic model's, with the penalty on every weight row and no bias:

    J(theta; D) = (1 / n_seed) * sum_{(x, y) in D} CE(x, y; theta)
                  + (lam / 2) * sum_l ||W_l[:-1]||^2

so adding a candidate keeps the penalty's total weight, as in the paper's eq. 1. The loss is not
convex: the seed model is a local minimum reached deterministically from a seeded start, and
"utility" is the test-loss change at the minimum reached from it (explorer.utility).

Hessian-vector products are exact (forward-over-reverse autograd). The Hessian at a minimum of
a ReLU network is positive semi-definite at best and singular along dead units' biases and the
softmax's common bias shift, so influence solves the damped system (H + delta I) v = g with
conjugate gradient; delta is reported beside every value it enters.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse.linalg
import torch

from explorer.constraints import ACTIVATIONS, DEFAULTS
from explorer.errors import ConvergenceWarning, ExplorerError
from explorer.model import DTYPE, as_features, as_labels, n_outputs


def activate(z, activation: str):
    """The hidden activation, with operations torch tensors and CrypTensors share."""
    if activation == "relu":
        return z.relu()
    if activation == "silu":
        return z * z.sigmoid()
    return z * z


@dataclass(frozen=True)
class Architecture:
    """The public shape of a network: ``n_features`` d, ``hidden`` widths (one or two layers),
    ``n_outputs`` C (1 = sigmoid, K >= 3 softmax), the hidden ``activation``."""

    n_features: int
    hidden: tuple[int, ...]
    n_outputs: int
    activation: str = DEFAULTS["activation"]

    def __post_init__(self) -> None:
        if not 1 <= len(self.hidden) <= 2 or any(int(h) < 1 for h in self.hidden):
            raise ExplorerError(f"an mlp has one or two hidden layers of positive width, got "
                                f"{self.hidden!r}.")
        if self.activation not in ACTIVATIONS:
            raise ExplorerError(f"unknown activation {self.activation!r}; choose one of "
                                f"{', '.join(ACTIVATIONS)}.")

    @property
    def widths(self) -> tuple[int, ...]:
        """d, h_1, (h_2,) C."""
        return (self.n_features, *self.hidden, self.n_outputs)

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """Each layer's matrix shape (in + 1, out)."""
        w = self.widths
        return tuple((w[i] + 1, w[i + 1]) for i in range(len(w) - 1))

    @property
    def n_params(self) -> int:
        return sum(a * b for a, b in self.shapes)

    def describe(self) -> str:
        return "-".join(str(w) for w in (self.n_features, *self.hidden,
                                          max(self.n_outputs, 2)))

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The flat vector (P,) (or (..., P)) as each layer's matrix (..., in + 1, out): views."""
        out, start = [], 0
        for a, b in self.shapes:
            out.append(flat[..., start:start + a * b].reshape(*flat.shape[:-1], a, b))
            start += a * b
        return out

    def penalty_mask(self) -> torch.Tensor:
        """(P,): 1 on weight entries, 0 on the unpenalised bias rows."""
        parts = []
        for a, b in self.shapes:
            m = torch.ones(a, b, dtype=DTYPE)
            m[-1] = 0.0
            parts.append(m.reshape(-1))
        return torch.cat(parts)


def flatten(params: list[torch.Tensor]) -> torch.Tensor:
    """Each layer's matrix -> the flat vector (P,)."""
    return torch.cat([p.reshape(-1) for p in params])


def initial_params(arch: Architecture, random_state: int) -> torch.Tensor:
    """A seeded start (P,): He-normal weights for the ReLU layers, 1/in for the output layer,
    zero biases."""
    gen = torch.Generator().manual_seed(int(random_state))
    parts = []
    for i, (a, b) in enumerate(arch.shapes):
        scale = np.sqrt((2.0 if i < len(arch.shapes) - 1 else 1.0) / (a - 1))
        W = torch.randn(a, b, generator=gen, dtype=DTYPE) * scale
        W[-1] = 0.0
        parts.append(W.reshape(-1))
    return torch.cat(parts)


def logits(arch: Architecture, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Logits (n, C) of the samples X (n, d) at the flat parameters theta (P,)."""
    h = X
    layers = arch.unflatten(theta)
    for i, W in enumerate(layers):
        h = h @ W[:-1] + W[-1]
        if i < len(layers) - 1:
            h = activate(h, arch.activation)
    return h


def hidden_features(arch: Architecture, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """The last hidden layer's activations (n, h_last): what the output layer sees."""
    h = X
    for W in arch.unflatten(theta)[:-1]:
        h = activate(h @ W[:-1] + W[-1], arch.activation)
    return h


def per_sample_loss(arch: Architecture, theta: torch.Tensor, X: torch.Tensor,
                    y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each sample (n,), nats."""
    z = logits(arch, theta, X)
    if z.shape[1] == 1:
        z = z[:, 0]
        return torch.nn.functional.softplus(z) - y.to(z.dtype) * z
    return torch.logsumexp(z, dim=1) - z.gather(1, y[:, None])[:, 0]


def class_probabilities(arch: Architecture, theta: torch.Tensor,
                        X: torch.Tensor) -> torch.Tensor:
    """Class probabilities (n, K) (K = 2 for a sigmoid output)."""
    z = logits(arch, theta, X)
    if z.shape[1] == 1:
        p = z.sigmoid()
        return torch.cat([1 - p, p], dim=1)
    return z.softmax(dim=1)


def mean_loss(arch: Architecture, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float:
    return float(per_sample_loss(arch, theta, X, y).mean())


def accuracy(arch: Architecture, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float:
    return float((class_probabilities(arch, theta, X).argmax(dim=1) == y).to(DTYPE).mean())


def objective(arch: Architecture, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
              lam: float, n_seed: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """J(theta; D) of the module docstring, a 0-d tensor (differentiable in theta)."""
    loss = per_sample_loss(arch, theta, X, y)
    if weight is not None:
        loss = weight * loss
    return loss.sum() / n_seed + 0.5 * lam * (arch.penalty_mask() * theta * theta).sum()


def objective_grad(arch: Architecture, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                   lam: float, n_seed: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient of J, (P,)."""
    return torch.func.grad(lambda t: objective(arch, t, X, y, lam, n_seed, weight))(theta)


def grad_sum(arch: Architecture, theta: torch.Tensor, X: torch.Tensor,
             y: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy gradient over the samples (no penalty), (P,)."""
    return torch.func.grad(lambda t: per_sample_loss(arch, t, X, y).sum())(theta)


def mean_gradient_norm(arch: Architecture, theta: torch.Tensor, X: torch.Tensor,
                       y: torch.Tensor, limit: int = 256) -> float:
    """Mean over samples (the first ``limit``) of each sample's cross-entropy gradient norm."""
    X, y = X[:limit], y[:limit]

    def one(x, label):
        return torch.func.grad(
            lambda t: per_sample_loss(arch, t, x[None], label[None]).sum())(theta).norm()

    return float(torch.func.vmap(one)(X, y).mean())


# torch's forward-mode autograd keeps process-wide state (its dual levels): two threads in jvp
# at once fail ("no level exists"), e.g. a dashboard's fit beside its job.
_FORWARD_MODE = threading.Lock()


def hessian_vector_product(arch: Architecture, theta: torch.Tensor, X: torch.Tensor,
                           y: torch.Tensor, lam: float, n_seed: int, V: torch.Tensor,
                           weight: torch.Tensor | None = None) -> torch.Tensor:
    """The exact Hessian of J times V (P,), forward mode over reverse mode."""
    grad = torch.func.grad(lambda t: objective(arch, t, X, y, lam, n_seed, weight))
    with _FORWARD_MODE:
        return torch.func.jvp(grad, (theta,), (V,))[1]


def hessian(arch: Architecture, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
            lam: float, n_seed: int) -> torch.Tensor:
    """The dense Hessian of J (P, P): for small networks and tests."""
    return torch.func.hessian(lambda t: objective(arch, t, X, y, lam, n_seed))(theta)


def top_curvature(arch: Architecture, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                  lam: float, n_seed: int, rtol: float = 1e-3) -> float:
    """The largest eigenvalue of the Hessian of J at theta, by Lanczos iteration (scipy's
    eigsh, seeded start) on exact Hessian-vector products, to relative accuracy ``rtol``: the
    curvature that bounds a stable gradient-descent step, 2 / top_curvature."""
    P = theta.numel()

    def matvec(vec: np.ndarray) -> np.ndarray:
        V = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float64).reshape(-1))
        return hessian_vector_product(arch, theta, X, y, lam, n_seed, V).numpy()

    op = scipy.sparse.linalg.LinearOperator((P, P), matvec=matvec, dtype=np.float64)
    start = np.random.default_rng(0).standard_normal(P)
    top = scipy.sparse.linalg.eigsh(op, k=1, which="LA", tol=rtol, v0=start,
                                    return_eigenvectors=False)
    return float(top[0])


@dataclass(frozen=True)
class DampedSolve:
    """v = (H + delta I)^-1 rhs, and how well CG solved it."""

    v: torch.Tensor  # (P,)
    delta: float
    residual: float  # ||(H + delta I) v - rhs|| / ||rhs||
    iterations: int


def solve_damped(arch: Architecture, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                 lam: float, n_seed: int, rhs: torch.Tensor, delta: float,
                 rtol: float = 1e-8, maxiter: int | None = None) -> DampedSolve:
    """(H + delta I)^-1 rhs by conjugate gradient on exact Hessian-vector products.

    Conjugate gradient needs H + delta I positive definite: a direction of non-positive
    curvature met on the way is a clear failure (raise the damping), never a silent value."""
    if not np.isfinite(delta) or delta < 0:
        raise ExplorerError(f"the damping delta must be a non-negative number, got {delta!r}.")
    P = theta.numel()
    b = rhs.reshape(-1).to(DTYPE)
    bad: list[float] = []
    count = [0]

    def matvec(vec: np.ndarray) -> np.ndarray:
        V = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float64))
        out = hessian_vector_product(arch, theta, X, y, lam, n_seed, V) + delta * V
        count[0] += 1
        curvature = float(V @ out)
        if curvature <= 0 and float(V @ V) > 0:
            bad.append(curvature / float(V @ V))
        return out.numpy()

    op = scipy.sparse.linalg.LinearOperator((P, P), matvec=matvec, dtype=np.float64)
    x, _ = scipy.sparse.linalg.cg(op, b.numpy(), rtol=rtol, atol=0.0,
                                  maxiter=maxiter or 10 * P)
    if bad:
        raise ExplorerError(f"the damped Hessian H + {delta:g} I has a direction of curvature "
                            f"{min(bad):.3g} <= 0 at the seed model; raise the damping.")
    v = torch.from_numpy(x)
    res = hessian_vector_product(arch, theta, X, y, lam, n_seed, v) + delta * v - b
    residual = float(res.norm() / max(float(b.norm()), 1e-300))
    if residual > max(1e3 * rtol, 1e-6):
        raise ExplorerError(f"conjugate gradient reached relative residual {residual:.2e} "
                            f"solving (H + {delta:g} I) v = g; raise the damping.")
    return DampedSolve(v=v, delta=float(delta), residual=residual, iterations=count[0])


@dataclass(frozen=True)
class NetworkFit:
    """Fitted flat parameters (P,) and how well the fit converged."""

    theta: torch.Tensor
    grad_norm: float
    tol: float  # the absolute gradient-norm tolerance asked for
    converged: bool
    n_iter: int


def fit(X, y, arch: Architecture, lam: float, n_seed: int | None = None,
        theta0: torch.Tensor | None = None, tol: float = 1e-8, max_iter: int = 2000,
        weight: torch.Tensor | None = None, random_state: int = 0) -> NetworkFit:
    """Minimise J(theta; (X, y)) from ``theta0`` (default: ``initial_params(arch,
    random_state)``) to gradient norm ``tol`` times max(1, ||grad J(start)||).

    The optimiser is deterministic: L-BFGS to a coarse tolerance, then a trust-region
    Newton-CG with exact Hessian-vector products (which steps out of saddles along negative
    curvature) to ``tol``. The same settings warm-started from the seed model are the ground
    truth's retraining."""
    X, y = as_features(X), as_labels(y)
    if lam <= 0 or not np.isfinite(lam):
        raise ExplorerError(f"the L2 strength must be a positive number, got {lam}.")
    n_seed = X.shape[0] if n_seed is None else n_seed
    start = initial_params(arch, random_state) if theta0 is None else theta0.reshape(-1).clone()
    if start.numel() != arch.n_params:
        raise ExplorerError(f"warm start has {start.numel()} parameters, the network "
                            f"{arch.describe()} has {arch.n_params}.")
    scale = max(1.0, float(objective_grad(arch, start, X, y, lam, n_seed, weight).norm()))
    gtol = tol * scale

    def fun(flat):
        t = torch.from_numpy(flat)
        g, value = torch.func.grad_and_value(
            lambda u: objective(arch, u, X, y, lam, n_seed, weight))(t)
        return float(value), g.numpy()

    def hessp(flat, vec):
        return hessian_vector_product(arch, torch.from_numpy(flat), X, y, lam, n_seed,
                                      torch.from_numpy(vec), weight).numpy()

    x = start.numpy().copy()
    n_iter = 0
    if theta0 is None:  # far from a minimum: cheap quasi-Newton steps first
        res = scipy.optimize.minimize(fun, x, jac=True, method="L-BFGS-B",
                                      options={"gtol": 1e3 * gtol, "maxiter": max_iter,
                                               "maxcor": 20})
        x, n_iter = res.x, int(res.nit)
    res = scipy.optimize.minimize(fun, x, jac=True, hessp=hessp, method="trust-ncg",
                                  options={"gtol": gtol, "maxiter": max(max_iter - n_iter, 1)})
    theta = torch.from_numpy(np.ascontiguousarray(res.x))
    n_iter += int(res.nit)
    gnorm = float(objective_grad(arch, theta, X, y, lam, n_seed, weight).norm())
    converged = gnorm <= gtol
    if not converged:
        warnings.warn(f"network fit stopped at gradient norm {gnorm:.2e} after {n_iter} "
                      f"iterations (tolerance {gtol:.2e}); raise max_iter or lam.",
                      ConvergenceWarning, stacklevel=3)
    return NetworkFit(theta=theta, grad_norm=gnorm, tol=gtol, converged=converged,
                      n_iter=n_iter)


def architecture(n_features: int, n_classes: int, hidden: tuple[int, ...],
                 activation: str = DEFAULTS["activation"]) -> Architecture:
    """The architecture of a task with ``n_classes`` classes."""
    return Architecture(n_features=int(n_features), hidden=tuple(int(h) for h in hidden),
                        n_outputs=n_outputs(n_classes), activation=activation)
