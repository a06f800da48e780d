"""Fine-tuning (paper eq. 4): the test-loss reduction after k gradient steps from theta_hat on
D_tr ∪ D_a (full batch, or plaintext mini-batches)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from explorer.appraisers.base import Public
from explorer.appraisers.logistic import (
    repeat,
    test_loss_reductions,
    union_gradient_sums,
)
from explorer.appraisers.tensors import is_encrypted
from explorer.appraisers.union import UnionAppraiser
from explorer.constraints import DEFAULTS, check_params
from explorer.errors import AppraisalWarning, ExplorerError
from explorer.model import penalty_mask, with_bias
from explorer.seed import SeedModel


def curvature_bound(seed: SeedModel) -> float:
    """An upper bound on the largest eigenvalue of the mean cross-entropy's Hessian over the
    model owner's seed set: c * lambda_max(A^T A) / n with c = 1/4 (sigmoid) or 1/2 (softmax)."""
    A = with_bias(seed.X_train)
    top = float(torch.linalg.eigvalsh(A.T @ A / seed.n_seed)[-1])
    return (0.25 if seed.theta.shape[1] == 1 else 0.5) * top


def check_penalty_step(lr: float, public: Public) -> None:
    """Refuse a learning rate at which the L2 penalty alone diverges: it multiplies the weights
    by 1 - lr * lam' at every step (lam' = lam * n_seed / (n_seed + |D_a|), the union's), so
    past lr * lam' = 2 they grow without bound, whatever the data."""
    lam_union = public.lam * public.n_seed / (public.n_seed + min(public.sizes))
    if lr * lam_union >= 2.0:
        raise ExplorerError(
            f"fine-tuning with learning rate {lr:g} diverges at L2 strength "
            f"{public.lam:g} (lr * lam * n_seed / (n_seed + |D_a|) = "
            f"{lr * lam_union:.3g} >= 2 makes the penalty alone overshoot at every "
            f"step); use a learning rate below {2 / lam_union:.3g}.")


def minibatches(n: int, batch_size: int, steps: int, random_state: int) -> Iterator[torch.Tensor]:
    """The row indices of each of ``steps`` mini-batches of D_tr ∪ D_a (n rows, the seed set's
    first): each epoch walks a fresh permutation from a generator seeded with
    ``random_state``, in batches that cover all of it, the last one possibly smaller."""
    rng = np.random.default_rng(random_state)
    batches: list[np.ndarray] = []
    for _ in range(steps):
        if not batches:
            order = rng.permutation(n)
            batches = [order[i:i + batch_size] for i in range(0, n, batch_size)][::-1]
        yield torch.from_numpy(batches.pop())


class FineTune(UnionAppraiser):
    """value = test loss at theta_hat minus test loss after fine-tuning, nats.

    The steps descend J (explorer.model) rescaled to a per-sample mean over D_tr ∪ D_a, so the
    L2 term has strength lam * n_seed / (n_seed + |D_a|). Full-batch steps run on both backends;
    mini-batches (``batch_size``) are plaintext only: each epoch walks a fresh seeded
    permutation of the union in batches that cover all of it, the last one possibly smaller.
    """

    name = "finetune"
    model_owner_data = ("theta_hat, its seed set (n_seed, d+1) with targets, its test set "
                        "(n_test, d+1) with targets and its test loss at theta_hat")

    def __init__(self, lr: float = DEFAULTS["lr"], steps: int = DEFAULTS["steps"],
                 batch_size: int | None = DEFAULTS["batch_size"],
                 random_state: int = DEFAULTS["random_state"]):
        check_params({"lr": lr, "steps": steps, "batch_size": batch_size,
                      "random_state": random_state})
        self.lr, self.steps = float(lr), int(steps)
        self.batch_size, self.random_state = batch_size, int(random_state)

    def check_private(self) -> None:
        if self.batch_size is not None:
            raise ExplorerError("private fine-tuning takes full-batch steps; drop the batch "
                                "size or use the plaintext backend.")

    def params(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "batch_size": self.batch_size,
                "random_state": self.random_state}

    def _setup(self, seed: SeedModel) -> None:
        self.stability_bound_ = 2.0 / (seed.lam + curvature_bound(seed))
        self._warn_if_unstable(seed.n_seed)

    def _warn_if_unstable(self, n_seed: int) -> None:
        """Warn when the learning rate exceeds ``stability_bound_`` or mini-batches do not
        cover the seed set once."""
        bound = self.stability_bound_
        if self.lr > bound:
            warnings.warn(f"the fine-tuning learning rate {self.lr:g} exceeds the stability "
                          f"bound {bound:.3g} of gradient descent on the seed set (2 / its "
                          f"curvature); its steps may oscillate and its values rank poorly.",
                          AppraisalWarning, stacklevel=4)
        if self.batch_size is not None:
            union = n_seed + 1
            if self.steps * self.batch_size < union:
                warnings.warn(f"{self.steps} steps of {self.batch_size} samples do not cover "
                              f"the seed set once ({n_seed} samples); raise the steps or "
                              f"the batch size.", AppraisalWarning, stacklevel=4)

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        check_penalty_step(self.lr, public)
        return super().model_owner_inputs(public)

    def compute(self, inputs: dict, A, Y, public: Public):
        if self.batch_size is not None:  # per candidate, whatever the others' sizes
            if is_encrypted(A):
                raise ExplorerError("private fine-tuning takes full-batch steps.")
            return self._minibatch(inputs, A, Y, public)
        totals = public.n_seed + public.sizes_tensor()
        inv_n = (1.0 / totals)[:, None, None]
        decay = (public.lam * public.n_seed / totals)[:, None, None] \
            * penalty_mask(public.d1, public.n_outputs)
        thetas = repeat(inputs["theta"], public.n_candidates)
        for _ in range(self.steps):
            G = union_gradient_sums(inputs["A_train"], inputs["Y_train"], A, Y, thetas)
            thetas = thetas - (G * inv_n + thetas * decay) * self.lr
        return test_loss_reductions(inputs["A_test"], inputs["Y_test"], inputs["theta"], thetas)

    def _minibatch(self, inputs: dict, A: torch.Tensor, Y: torch.Tensor, public: Public):
        """Mini-batch steps with the same step as full batch. Each candidate samples its
        batches from a generator seeded with ``random_state``, so candidates of one size (one
        union size) draw the same batches: they step together, as one batch of candidates."""
        values = torch.empty(public.n_candidates, dtype=A.dtype)
        mask = penalty_mask(public.d1, public.n_outputs)
        A_tr, Y_tr = inputs["A_train"], inputs["Y_train"]
        n_tr = len(A_tr)
        for m in sorted(set(public.sizes)):
            group = [b for b, size in enumerate(public.sizes) if size == m]
            A_g, Y_g = A[group, :m], Y[group, :m]
            n = n_tr + m
            decay = public.lam * public.n_seed / n * mask
            thetas = repeat(inputs["theta"], len(group))
            for idx in minibatches(n, self.batch_size, self.steps, self.random_state):
                # union row i < n_tr is the seed set's, the rest the candidate's
                seed_rows, own = idx[idx < n_tr], idx[idx >= n_tr] - n_tr
                G = union_gradient_sums(A_tr[seed_rows], Y_tr[seed_rows], A_g[:, own],
                                        Y_g[:, own], thetas)
                thetas = thetas - (G / len(idx) + thetas * decay) * self.lr
            values[group] = test_loss_reductions(inputs["A_test"], inputs["Y_test"],
                                                 inputs["theta"], thetas)
        return values
