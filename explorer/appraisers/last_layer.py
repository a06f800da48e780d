"""The ``last-layer`` family: an mlp's hidden layers frozen, its head appraised as the convex
logistic model it is on their activations.

``LastLayer(inner)`` wraps any of the logistic family's appraisers: the model owner also enters
its frozen hidden layers; the candidates' features go through them (under MPC: the same
forward pass on encrypted features, explorer.appraisers.network), and the logistic appraiser
runs unchanged on phi(x) with a bias column. Nothing of the logistic mathematics is written
twice.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.batch import row_mask
from explorer.appraisers.fixed_point import check_parameters
from explorer.appraisers.network import (
    affine,
    first_layer,
    layer_names,
    network_public,
    public_architecture,
)
from explorer.appraisers.tensors import with_ones_column
from explorer.network import activate
from explorer.seed import LastLayerSeed


class LastLayer(Appraiser):
    """A logistic appraiser ``inner`` on the frozen hidden activations of an mlp seed model."""

    family = "last-layer"
    seed_type = LastLayerSeed
    bounds_weights = False

    def __init__(self, inner: Appraiser):
        self.inner = inner
        self.name = inner.name
        self.model_owner_data = ("the frozen hidden layers, and " + inner.model_owner_data
                                 + " on their activations (d+1 read as h_last+1)")
        self._beyond_test_loss = inner._beyond_test_loss
        self.agreement = inner.agreement

    def params(self) -> dict:
        return self.inner.params()

    def _setup(self, seed: LastLayerSeed) -> None:
        self.inner.fit(seed.head)

    def public(self, sizes) -> Public:
        return network_public(self, sizes)

    @staticmethod
    def head_public(public: Public) -> Public:
        """The inner logistic appraiser's public metadata: features phi(x) (h_last)."""
        return replace(public, n_features=public.hidden[-1], family="logistic", hidden=(),
                       activation="")

    architecture = staticmethod(public_architecture)

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        hidden = self.architecture(public).shapes[:-1]
        return {**self.inner.model_owner_shapes(self.head_public(public)),
                **dict(zip(layer_names("hidden", len(hidden)), hidden, strict=True))}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        s = self.seed_.network
        hidden = s.architecture.unflatten(s.theta)[:-1]
        return {**self.inner.model_owner_inputs(self.head_public(public)),
                **dict(zip(layer_names("hidden", len(hidden)), hidden, strict=True))}

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        for name, value in inputs.items():
            if name.startswith("hidden"):
                check_parameters(value, precision_bits)
        self.inner.check_fixed_point({k: v for k, v in inputs.items()
                                      if not k.startswith("hidden")}, precision_bits)

    def features(self, inputs: dict, A, public: Public):
        """phi(x) with a bias column (B, m, h_last + 1), zero on padding rows, torch or
        CrypTen."""
        layers = [inputs[n] for n in layer_names("hidden", len(public.hidden))]
        H = activate(first_layer(A, [layers[0]])[0], public.activation)
        for W in layers[1:]:
            H = activate(affine(H, W), public.activation)
        return with_ones_column(H) * row_mask(public.sizes)

    def compute(self, inputs: dict, A, Y, public: Public):
        head = {k: v for k, v in inputs.items() if not k.startswith("hidden")}
        return self.inner.compute(head, self.features(inputs, A, public), Y,
                                  self.head_public(public))

    # what the inner appraiser knows of its values
    def possible(self, values: np.ndarray) -> np.ndarray:
        return self.inner.possible(values)

    def diagnose(self, values) -> list[str]:
        return self.inner.diagnose(values)

    def check_private(self) -> None:
        self.inner.check_private()

    def work_per_row(self) -> int:
        return self.inner.work_per_row() + sum(self.seed_.architecture.hidden)
