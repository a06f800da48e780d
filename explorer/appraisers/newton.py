"""``newton``: safeguarded Newton steps on D_tr ∪ D_a, preconditioned by the model owner's seed
Hessian, then the exact test loss. It holds where first-order influence breaks (small lambda,
candidates far from the seed mix), and no matrix is inverted under MPC.

From theta_0 = theta_hat, each step k = 0..K-1 takes the direction

    D_k = alpha * P^-1 grad J_union(theta_k),    alpha = n_seed / (n_seed + |D_a|)  (public)

with J_union the objective of explorer.model on D_tr ∪ D_a and P^-1 the model owner's inverse
seed Hessian (its private input). alpha is the Hessian's growth when a candidate of the seed's
curvature is added. The safeguard is a line search evaluated obliviously: the union objective is
computed at each trial step (t, mu) of ``trials``; the trial points are blended with weights
softmax(-J / TEMPERATURE) (a soft minimum: trials whose objectives tie within the encrypted
logarithm's error share the step rather than one winning at random), and the blend is taken only
if its objective bound (the blended objectives, by convexity) lies below J_union(theta_k): a
secret bit under MPC. So J_union never increases and the iterates converge to the retrained
theta_star as K grows. value = L_te(theta_hat) - L_te(theta_K), nats, higher = more valuable;
with K = 1 and the single trial (1, 0) its parameter change is alpha times first-order
influence's.

At theta_hat the seed set's gradient is zero (the seed model is fitted to a gradient norm of
1e-8), so the first direction needs only the candidate's gradient.

Preconditioners (``preconditioner``): "dense", the exact inverse Hessian (P x P, P = (d+1) C;
on the complement of the softmax's null direction); "kfac", an eigenvalue-corrected Kronecker
factorisation (George et al. 2018): eigenbases U_A of E[x x^T] and U_S of E[diag p - p p^T] over
the seed set, with the diagonal of the exact Hessian in that basis, applied as
U_A ((U_A^T G U_S) / s) U_S^T: two small matrices instead of a P x P one; "auto" is dense for
sigmoid models and for P <= 1000, else kfac.
"""

from __future__ import annotations

import torch

from explorer import model
from explorer.appraisers.base import Public
from explorer.appraisers.batch import row_mask
from explorer.appraisers.fixed_point import check_fixed_point, ring_limit
from explorer.appraisers.logistic import (
    cross_entropy_sums,
    gradient_sums,
    repeat,
    softmax,
    test_loss_reductions,
    union_gradient_sums,
)
from explorer.appraisers.tensors import cat, less, matmul
from explorer.appraisers.union import UnionAppraiser
from explorer.constraints import DEFAULTS, check_params
from explorer.errors import ExplorerError
from explorer.model import penalty_mask, with_bias
from explorer.seed import SeedModel

# Dense preconditioner for softmax models up to this many parameters (auto).
DENSE_PRECONDITIONER_MAX = 1000
# The trial steps tried at every step besides staying put: (length t, damping mu) gives the
# direction t * (H + mu * max eig(H))^-1 grad. Shorter and more damped trials catch the
# overshoot of an ill-conditioned seed Hessian (small lambda) and of candidates whose curvature
# the seed's does not predict (README: how they were chosen).
TRIALS = ((1.0, 0.0), (0.5, 0.01), (0.25, 0.1), (0.25, 1.0))
# Temperature of the soft choice between trials, nats of the union objective: above the
# encrypted objective's error (about 1e-4), below the gaps between trials that matter.
TEMPERATURE = 5e-3


def dense_eigenbasis(seed: SeedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvectors Q (P, P) and eigenvalues s (P,) of the seed Hessian H of J on D_tr at
    theta_hat, in flattened theta order; s is 0 on the softmax's null direction (a common shift
    of all biases), where every gradient is 0."""
    H = model.hessian(seed.theta, seed.X_train, seed.lam, seed.n_seed)
    u = model.null_direction(seed.theta)
    if u is not None:
        H = H + torch.outer(u, u)
    s, Q = torch.linalg.eigh((H + H.T) / 2)
    if u is not None:
        s[int((Q.T @ u).abs().argmax())] = 0.0
    return Q, s


def kfac_eigenbasis(seed: SeedModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eigenvalue-corrected Kronecker factors of the seed Hessian: U_A (d1, d1), U_S (C, C) and
    s (d1, C), H's diagonal in the basis U_A ⊗ U_S (0 on the softmax's null direction)."""
    A = with_bias(seed.X_train)
    C = seed.theta.shape[1]
    p = model.probabilities(model.logits(seed.theta, seed.X_train), C)
    if C == 1:
        S_mean = (p * (1 - p)).mean(dim=0, keepdim=True)
    else:
        S_mean = torch.diag(p.mean(dim=0)) - p.T @ p / len(p)
    _, U_A = torch.linalg.eigh(A.T @ A / len(A))
    eig_S, U_S = torch.linalg.eigh(S_mean)
    proj = (A @ U_A) ** 2  # (n, d1): (u_i . x_n)^2
    # per sample v_j^T (diag p_n - p_n p_n^T) v_j, or p_n (1 - p_n) for a sigmoid
    curv = p * (1 - p) if C == 1 else p @ U_S ** 2 - (p @ U_S) ** 2
    s = proj.T @ curv / seed.n_seed + seed.lam * (U_A[:-1] ** 2).sum(dim=0)[:, None]
    if C > 1:
        s[:, int(eig_S.abs().argmin())] = 0.0
    return U_A, U_S, s


def damped_inverses(s: torch.Tensor, trials: tuple[tuple[float, float], ...],
                    top: float | None = None) -> torch.Tensor:
    """t / (s + mu * top) for each trial (t, mu): (T, *s.shape); 0 where s is 0 (the null
    direction). ``top`` is the largest eigenvalue, max(s) unless given (a block of a larger
    spectrum)."""
    top = float(s.max()) if top is None else float(top)
    out = torch.stack([t / (s + mu * top).clamp_min(1e-12 * top) for t, mu in trials])
    return torch.where(s == 0, torch.zeros_like(out), out)


def dense_rotate(Q, G, inverse: bool):
    """Q^T g (into the eigenbasis) or, with ``inverse``, Q g (back) for each row g of G (N, P),
    torch or CrypTen."""
    return G.matmul(Q.t() if inverse else Q)


def kronecker_rotate(U_A, U_S, G, inverse: bool):
    """U_A^T G U_S (into the Kronecker eigenbasis U_A ⊗ U_S) or, with ``inverse``,
    U_A G U_S^T (back), for each G (N, a, c) with U_A (a, a), U_S (c, c): two products of all
    N at once, torch or CrypTen."""
    N, a, c = G.shape
    left, right = (U_A, U_S.t()) if inverse else (U_A.t(), U_S)
    G = left.matmul(G.permute(1, 0, 2).reshape(a, N * c))  # (a, N c)
    G = G.reshape(a * N, c).matmul(right)
    return G.reshape(a, N, c).permute(1, 0, 2)


class Newton(UnionAppraiser):
    """value = L_te(theta_hat) - L_te(theta_K) after K safeguarded, seed-Hessian-preconditioned
    steps on D_tr ∪ D_a (module docstring), nats."""

    name = "newton"
    model_owner_data = ("theta_hat, its seed and test sets with targets, and its seed "
                        "Hessian's eigenbasis (dense, or Kronecker factors) with the damped "
                        "inverse eigenvalues")

    def __init__(self, steps: int = DEFAULTS["newton_steps"],
                 preconditioner: str = DEFAULTS["preconditioner"],
                 trials: tuple[tuple[float, float], ...] = TRIALS):
        check_params({"newton_steps": steps, "preconditioner": preconditioner})
        try:
            trials = tuple((float(t), float(mu)) for t, mu in trials)
        except (TypeError, ValueError):
            raise ExplorerError(f"trials must be pairs (step length, damping), got "
                                f"{trials!r}.") from None
        if not trials or not all(0 < t <= 2 and 0 <= mu <= 1e6 for t, mu in trials):
            raise ExplorerError(f"trial step lengths must lie in (0, 2] and dampings in "
                                f"[0, 1e6], got {trials}.")
        self.steps, self.preconditioner, self.trials = int(steps), preconditioner, trials

    def params(self) -> dict:
        return {"steps": self.steps, "preconditioner": self.preconditioner,
                "trials": self.trials}

    def kind(self, n_outputs: int, n_parameters: int) -> str:
        """The preconditioner actually used: "dense" or "kfac"."""
        if self.preconditioner != "auto":
            return self.preconditioner
        return "dense" if n_outputs == 1 or n_parameters <= DENSE_PRECONDITIONER_MAX else "kfac"

    def _setup(self, seed: SeedModel) -> None:
        C = seed.theta.shape[1]
        if self.kind(C, seed.theta.numel()) == "dense":
            Q, s = dense_eigenbasis(seed)
            self.preconditioner_ = {"Q": Q, "inv_s": damped_inverses(s, self.trials)}
        else:
            U_A, U_S, s = kfac_eigenbasis(seed)
            self.preconditioner_ = {"U_A": U_A, "U_S": U_S,
                                    "inv_s": damped_inverses(s, self.trials)}

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        d1, C, T = public.d1, public.n_outputs, len(self.trials)
        if self.kind(C, d1 * C) == "dense":
            extra = {"Q": (d1 * C, d1 * C), "inv_s": (T, d1 * C)}
        else:
            extra = {"U_A": (d1, d1), "U_S": (C, C), "inv_s": (T, d1, C)}
        return {**super().model_owner_shapes(public), **extra}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        return {**super().model_owner_inputs(public), **self.preconditioner_}

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        super().check_fixed_point(inputs, precision_bits)
        check_fixed_point("inverse seed Hessian", inputs["inv_s"],
                          ring_limit(precision_bits) ** 0.5, precision_bits,
                          "which multiplies gradient entries")

    def work_per_row(self) -> int:
        return super().work_per_row() * (len(self.trials) + 1)

    # -- the computation, on torch tensors or CrypTensors -------------------------------

    def compute(self, inputs: dict, A, Y, public: Public):
        B, d1, C = public.n_candidates, public.d1, public.n_outputs
        T = len(self.trials)
        n_seed = float(public.n_seed)
        alpha = (n_seed / (n_seed + public.sizes_tensor()))[:, None, None, None]
        penalty = penalty_mask(d1, C)
        mask = row_mask(public.sizes)
        theta = repeat(inputs["theta"], B)
        inv_s = inputs["inv_s"].reshape(T, d1, C)
        # at theta_hat only D_a has a gradient; J_union there is computed beside the first
        # trials (below), through the same computation, so that under MPC the logarithm's
        # error cancels in the comparisons
        objective = None
        grad = gradient_sums(A, Y, inputs["theta"]) / n_seed
        for k in range(self.steps):
            if k > 0:
                G = union_gradient_sums(inputs["A_train"], inputs["Y_train"], A, Y, theta)
                grad = G / n_seed + theta * penalty * public.lam
            # one direction per damping: Q diag(1 / (s + mu_t)) Q^T grad, (B, T, d1, C)
            rotated = self._rotate(inputs, grad, inverse=False).unsqueeze(1) * inv_s
            steps = self._rotate(inputs, rotated.reshape(B * T, d1, C), inverse=True)
            tried = theta.unsqueeze(1) - steps.reshape(B, T, d1, C) * alpha
            if objective is None:
                both = self._union_objective(inputs, A, Y, cat([theta.unsqueeze(1), tried], dim=1),
                                             mask, public)
                objective, values = both[:, 0], both[:, 1:]
            else:
                values = self._union_objective(inputs, A, Y, tried, mask, public)  # (B, T)
            # a soft minimum over the trials, so that trials whose objectives differ by less
            # than the encrypted logarithm's error share the step instead of one winning at
            # random; by convexity J at the blend is at most the blended objective
            weights = softmax(values * (-1.0 / TEMPERATURE))
            blend = (tried * weights.reshape(B, T, 1, 1)).sum(dim=1)
            blended = (values * weights).sum(dim=1)
            # the safeguard: move only if that lowers the union objective (a secret bit)
            move = less(blended, objective)
            theta = theta + (blend - theta) * move.reshape(B, 1, 1)
            objective = objective + (blended - objective) * move
        return test_loss_reductions(inputs["A_test"], inputs["Y_test"], inputs["theta"], theta)

    @staticmethod
    def _rotate(inputs: dict, G, inverse: bool):
        """Q^T G (into the eigenbasis) or, with ``inverse``, Q G (back): G (N, d1, C)."""
        if "Q" in inputs:
            N, d1, C = G.shape
            return dense_rotate(inputs["Q"], G.reshape(N, d1 * C), inverse).reshape(N, d1, C)
        return kronecker_rotate(inputs["U_A"], inputs["U_S"], G, inverse)

    def _union_objective(self, inputs: dict, A, Y, thetas, mask, public: Public):
        """J_union at each trial point: thetas (B, T, d1, C) -> (B, T)."""
        B, T, d1, C = thetas.shape
        n = public.n_seed
        A_tr = inputs["A_train"]
        Z_tr = A_tr.matmul(thetas.permute(2, 0, 1, 3).reshape(d1, B * T * C))
        ce_tr = cross_entropy_sums(Z_tr.reshape(n, B * T, C).permute(1, 0, 2),
                                   inputs["Y_train"]).reshape(B, T)
        Z_a = matmul(A, thetas.permute(0, 2, 1, 3).reshape(B, d1, T * C))  # (B, m, T C)
        Z_a = Z_a.reshape(B, -1, T, C).permute(0, 2, 1, 3)  # (B, T, m, C)
        ce_a = cross_entropy_sums(Z_a, Y.unsqueeze(1), mask.unsqueeze(1))
        squares = (thetas * thetas * penalty_mask(d1, C)).sum(dim=-1).sum(dim=-1)
        return (ce_tr + ce_a) / float(n) + squares * (public.lam / 2)
