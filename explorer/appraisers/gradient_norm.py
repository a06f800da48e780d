"""Gradient norm (paper eq. 3): how surprising D_a is to theta_hat; blind to whether it helps."""

from __future__ import annotations

import numpy as np
import torch

from explorer import model
from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.logistic import gradient_sums

# ||G / s||² beyond this is outside the range where CrypTen's inverse square root (with the
# session's 12 Newton iterations from its default start 2.2 e^-(x/2 + 0.2) + 0.2 - x/1024, which
# reaches 0 near x = 205) converges: a private value that large is refused, never shown.
SQRT_RANGE = 150.0


def squared_norms(scaled):
    """Per row of ``scaled`` (B, P), its squared norm (B,), as B products of a row with itself:
    under MPC each is summed in the ring at twice the precision and truncated once, where a sum
    of P truncated squares would lose the small entries (torch or CrypTen)."""
    B, P = scaled.shape
    return scaled.reshape(B, 1, P).matmul(scaled.reshape(B, P, 1)).reshape(B)


def possible_norms(values: np.ndarray, scale: float | None) -> np.ndarray:
    """Per value: a norm (never negative beyond the encrypted square root's error) within the
    range the encrypted square root computes with the scale ``scale`` (None: not known here)."""
    ok = np.isfinite(values) & (values >= -1e-3 * np.median(np.abs(values)))
    if scale is not None:
        ok &= values <= scale * np.sqrt(SQRT_RANGE)
    return ok


class GradientNorm(Appraiser):
    """value = ||sum over D_a of the loss gradient at theta_hat||_2.

    It is computed as s * ||G / s|| with s the model owner's own estimate of a candidate's
    gradient norm (the median candidate size times its test set's mean per-sample gradient
    norm): the identity changes nothing in plaintext and keeps ||G / s||² inside the range
    where CrypTen's inverse square root converges (below about 200) under MPC. Not the norm of
    the test set's mean gradient, which nearly vanishes wherever the model fits its test set.
    """

    name = "gradient-norm"
    model_owner_data = "theta_hat (d+1, C) and a public-size scale s with its inverse"

    def params(self) -> dict:
        return {}

    def possible(self, values: np.ndarray) -> np.ndarray:
        return possible_norms(values, getattr(self, "scale_", None))

    def diagnose(self, values) -> list[str]:
        return [""] * len(values)  # a norm, not a loss reduction

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        return {"theta": (public.d1, public.n_outputs), "scale": (1,), "inv_scale": (1,)}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        s = self.seed_
        per_sample = model.per_sample_grads(s.theta, s.X_test, s.y_test).norm(dim=1).mean()
        scale = max(float(per_sample) * float(np.median(public.sizes)), 1e-3)
        self.scale_ = scale
        return {"theta": s.theta, "scale": torch.tensor([scale], dtype=torch.float64),
                "inv_scale": torch.tensor([1.0 / scale], dtype=torch.float64)}

    def compute(self, inputs: dict, A, Y, public: Public):
        G = gradient_sums(A, Y, inputs["theta"])
        scaled = G.reshape(public.n_candidates, public.d1 * public.n_outputs) \
            * inputs["inv_scale"]
        return squared_norms(scaled).sqrt() * inputs["scale"]
