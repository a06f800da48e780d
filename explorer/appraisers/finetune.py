"""Fine-tuning (paper eq. 4): the test-loss reduction after k (stochastic) gradient steps from
theta_hat on D_tr ∪ D_a."""

from __future__ import annotations

import numpy as np
import torch

from explorer import model
from explorer.appraisers.base import Appraiser
from explorer.errors import ExplorerError


def finetuned_theta(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, lam_union: float,
                    lr: float, steps: int, batch_size: int | None, seed: int) -> torch.Tensor:
    """``steps`` gradient steps on mean CE over each batch + (lam_union / 2)||W||^2.

    Batches walk through a fresh seeded permutation each epoch; ``batch_size=None`` is full batch.
    """
    n = len(y)
    mask = model.penalty_mask(theta)
    rng = np.random.default_rng(seed)
    order: np.ndarray = np.arange(n)
    pos = n
    for _ in range(steps):
        if batch_size is None or batch_size >= n:
            Xb, yb = X, y
        else:
            if pos + batch_size > n:
                order, pos = rng.permutation(n), 0
            idx = torch.from_numpy(order[pos:pos + batch_size])
            pos += batch_size
            Xb, yb = X[idx], y[idx]
        theta = theta - lr * (model.grad_sum(theta, Xb, yb) / len(yb) + lam_union * mask * theta)
    return theta


class FineTune(Appraiser):
    """value = test loss at theta_hat minus test loss after fine-tuning, nats.

    The steps descend J (explorer.model) rescaled to a per-sample mean over D_tr ∪ D_a, so the
    L2 term has strength lam * n_seed / (n_seed + |D_a|).
    """

    name = "finetune"

    def __init__(self, lr: float = 0.1, steps: int = 16, batch_size: int | None = None,
                 seed: int = 0):
        if not (np.isfinite(lr) and lr > 0):
            raise ExplorerError(f"the fine-tuning learning rate must be positive, got {lr}.")
        if int(steps) != steps or steps < 1:
            raise ExplorerError(f"fine-tuning needs at least one step, got {steps}.")
        if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
            raise ExplorerError(f"the batch size must be a positive integer or None (full "
                                f"batch), got {batch_size}.")
        self.lr, self.steps, self.batch_size, self.seed = float(lr), int(steps), batch_size, seed

    def params(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "batch_size": self.batch_size,
                "seed": self.seed}

    def _value(self, X: torch.Tensor, y: torch.Tensor) -> float:
        s = self.seed_
        Xu, yu = torch.cat([s.X_train, X]), torch.cat([s.y_train, y])
        theta = finetuned_theta(s.theta, Xu, yu, s.lam * s.n_seed / len(yu), self.lr,
                                self.steps, self.batch_size, self.seed)
        return s.test_loss - model.mean_loss(theta, s.X_test, s.y_test)
