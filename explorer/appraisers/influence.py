"""Forward influence (paper eq. 7): the first-order predicted test-loss reduction of adding D_a."""

from __future__ import annotations

import torch

from explorer import model
from explorer.appraisers.base import Appraiser
from explorer.seed import SeedModel


def influence_vector(seed: SeedModel, solver: str = "auto") -> torch.Tensor:
    """v = H^-1 g_te, shape (d + 1, C): H the Hessian of J on D_tr at theta_hat, g_te the mean
    test-loss gradient. Only the model owner's data enters; it is computed once, in the clear."""
    g_te = model.grad_sum(seed.theta, seed.X_test, seed.y_test) / len(seed.y_test)
    return model.solve_hessian(seed.theta, seed.X_train, seed.lam, seed.n_seed, g_te,
                               method=solver)


class Influence(Appraiser):
    """value = v · G(D_a) / n_seed, in nats of mean test loss.

    With G(D_a) the summed loss gradient of the candidate at theta_hat, theta_star - theta_hat is
    about -H^-1 G / n_seed under the objective of explorer.model, so the value predicts the
    utility (test loss before minus after) to first order. The paper's eq. 7 also divides by
    |D_a| and carries the opposite sign; neither changes the ranking of equal-sized candidates.
    """

    name = "influence"

    def __init__(self, solver: str = "auto"):
        self.solver = solver

    def params(self) -> dict:
        return {"solver": self.solver}

    def _setup(self, seed: SeedModel) -> None:
        self.v_ = influence_vector(seed, self.solver)

    def _value(self, X: torch.Tensor, y: torch.Tensor) -> float:
        G = model.grad_sum(self.seed_.theta, X, y)
        return float((self.v_ * G).sum()) / self.seed_.n_seed
