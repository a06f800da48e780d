"""Gradient norm (paper eq. 3): how surprising D_a is to theta_hat; blind to whether it helps."""

from __future__ import annotations

import numpy as np
import torch

from explorer import model
from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.logistic import gradient_sums


class GradientNorm(Appraiser):
    """value = ||sum over D_a of the loss gradient at theta_hat||_2.

    It is computed as s * ||G / s|| with s the model owner's own estimate of a candidate's
    gradient norm (its test set's mean gradient norm times the median candidate size): the
    identity changes nothing in plaintext and keeps CrypTen's square root in its range of
    convergence under MPC.
    """

    name = "gradient-norm"
    model_owner_data = "theta_hat (d+1, C) and a public-size scale s with its inverse"

    def params(self) -> dict:
        return {}

    def possible(self, values: np.ndarray) -> np.ndarray:
        # a norm: never negative beyond the encrypted square root's error
        return np.isfinite(values) & (values >= -1e-3 * np.median(np.abs(values)))

    def diagnose(self, values) -> list[str]:
        return [""] * len(values)  # a norm, not a loss reduction

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        return {"theta": (public.d1, public.n_outputs), "scale": (1,), "inv_scale": (1,)}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        s = self.seed_
        per_sample = model.grad_sum(s.theta, s.X_test, s.y_test).norm() / len(s.y_test)
        scale = max(float(per_sample) * float(np.median(public.sizes)), 1e-3)
        return {"theta": s.theta, "scale": torch.tensor([scale], dtype=torch.float64),
                "inv_scale": torch.tensor([1.0 / scale], dtype=torch.float64)}

    def compute(self, inputs: dict, A, Y, public: Public):
        G = gradient_sums(A, Y, inputs["theta"])
        scaled = G.reshape(public.n_candidates, public.d1 * public.n_outputs) \
            * inputs["inv_scale"]
        return (scaled * scaled).sum(dim=1).sqrt() * inputs["scale"]
