"""Forward influence (paper eq. 7): the first-order predicted test-loss reduction of adding D_a."""

from __future__ import annotations

import numpy as np
import torch

from explorer import model
from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.fixed_point import check_fixed_point, check_parameters
from explorer.appraisers.reveal import UNSCALE_CAP, weight_margin
from explorer.appraisers.tensors import cat, matmul
from explorer.constraints import DEFAULTS, check_params
from explorer.model import probabilities
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
    model_owner_data = ("theta_hat (d+1, C) and the weights v / n_seed (d+1, C), scaled by a "
                        "secret power of two")

    _beyond_test_loss = ("linearisation broken: predicts a larger reduction than the seed's "
                         "whole test loss")

    def __init__(self, solver: str = DEFAULTS["solver"]):
        check_params({"solver": solver})
        self.solver = solver

    def params(self) -> dict:
        return {"solver": self.solver}

    def _setup(self, seed: SeedModel) -> None:
        self.weights_ = influence_vector(seed, self.solver) / seed.n_seed

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        shape = (public.d1, public.n_outputs)
        return {"theta": shape, "weights": shape, "unscale": (1,)}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        # v / n_seed can sit below fixed-point resolution (MNIST: median 3e-6 against 2^-16):
        # scale it by a power of two to a largest entry near 1, and undo that in the computation
        peak = float(self.weights_.abs().max())
        scale = 2.0 ** -np.ceil(np.log2(peak)) if peak > 0 else 1.0
        return {"theta": self.seed_.theta, "weights": self.weights_ * scale,
                "unscale": torch.tensor([1.0 / scale], dtype=torch.float64)}

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        check_parameters(inputs["theta"], precision_bits)
        check_fixed_point("influence weights v / n_seed", inputs["weights"], 1.0,
                          precision_bits, "after scaling, times gradient entries up to the "
                          "ring's limit")

    def compute(self, inputs: dict, A, Y, public: Public):
        # v · G with G = A^T R summed over rows is sum_i R_i · (x_i W): the logits and the
        # weighted features come from one product of A with [theta | W], so the candidates'
        # features are opened once. Padding rows give R = sigmoid(0) or 1/C, but x_i W = 0.
        C = public.n_outputs
        Z = matmul(A, cat([inputs["theta"], inputs["weights"]], dim=1))  # (B, m, 2C)
        R = probabilities(Z[..., :C], C) - Y
        return (R * Z[..., C:]).sum(dim=-1).sum(dim=-1) * inputs["unscale"]

    bounds_weights = True

    def weight_excess(self, inputs: dict, public: Public, weight_bound: float):
        """(2P + 3,) entries that are all <= 0 iff the effective weights w = weights x unscale
        have ||w||_F² <= (1 - weight_margin(P)) W². Every weight entry within [-1, 1] and unscale
        within 4 W are checked on the inputs themselves, before any product: a larger input
        could wrap the ring and make the norm look small."""
        P = public.d1 * public.n_outputs
        w = inputs["weights"].reshape(P)
        unscale = inputs["unscale"]
        s = w.reshape(1, P).matmul(w.reshape(P, 1)).reshape(1)  # one truncation, not P
        c = unscale * (1.0 / weight_bound)
        ratio = s * c * c
        cap = UNSCALE_CAP * weight_bound
        return cat([w - 1.0, w * -1.0 - 1.0, unscale - cap, unscale * -1.0 - cap,
                    ratio - (1.0 - weight_margin(P))])
