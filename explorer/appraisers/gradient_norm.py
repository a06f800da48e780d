"""Gradient norm (paper eq. 3): how surprising D_a is to theta_hat; blind to whether it helps."""

from __future__ import annotations

import torch

from explorer import model
from explorer.appraisers.base import Appraiser


class GradientNorm(Appraiser):
    """value = ||sum over D_a of the loss gradient at theta_hat||_2."""

    name = "gradient-norm"

    def _value(self, X: torch.Tensor, y: torch.Tensor) -> float:
        return float(model.grad_sum(self.seed_.theta, X, y).norm())
