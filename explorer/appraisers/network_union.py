"""What the ``mlp`` family's appraisers that step on D_tr ∪ D_a share: the model owner enters
its layers, its seed set's summed gradient at theta_hat, its seed set and its test set.

As for the logistic model (explorer.appraisers.union), fine-tuning and ``newton`` move the
parameters on the union of the model owner's seed set and a candidate, one parameter set per
candidate, then read the exact mean test loss; the seed and test sets are the model owner's
private inputs, in the candidate batch's layout (features with a bias column, label targets).
"""

from __future__ import annotations

import numpy as np
import torch

from explorer import network
from explorer.appraisers.base import Public
from explorer.appraisers.batch import row_mask
from explorer.appraisers.fixed_point import check_dataset, check_parameters
from explorer.appraisers.network import (
    NetworkAppraiser,
    layer_names,
    loss_and_gradient_sums,
    loss_sums,
    per_candidate,
)
from explorer.appraisers.union import UnionAppraiser
from explorer.model import label_targets, with_bias


class NetworkUnionAppraiser(NetworkAppraiser):
    """Base of the mlp appraisers whose model owner enters its layers, D_tr and D_te."""

    agreement = UnionAppraiser.agreement
    _beyond_test_loss = UnionAppraiser._beyond_test_loss

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        d1, C = public.d1, public.n_outputs
        return {**self.layer_shapes(public), **self.layer_shapes(public, "seed_grad"),
                "A_train": (public.n_seed, d1), "Y_train": (public.n_seed, C),
                "A_test": (public.n_test, d1), "Y_test": (public.n_test, C)}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        s = self.seed_
        C = public.n_outputs
        arch = s.architecture
        # the seed set's summed gradient at theta_hat, exact in the clear: it is about
        # -n_seed lam W (the seed model's J is stationary), a sum of large terms that cancel,
        # which an encrypted pass would compute with the approximations' error
        seed_grad = arch.unflatten(network.grad_sum(arch, s.theta, s.X_train, s.y_train))
        return {**self.layer_inputs(),
                **dict(zip(layer_names("seed_grad", len(seed_grad)), seed_grad, strict=True)),
                "A_train": with_bias(s.X_train), "Y_train": label_targets(s.y_train, C),
                "A_test": with_bias(s.X_test), "Y_test": label_targets(s.y_test, C)}

    def start_gradient_sums(self, inputs: dict, A, Y, public: Public, loss: bool = False):
        """The summed cross-entropy gradient over D_tr ∪ D_a at theta_hat per layer
        (B, in_l + 1, out_l), from the model owner's seed-set gradient and one pass over the
        candidates; with ``loss``, (the union's summed cross-entropy (B,), that gradient),
        the seed set's loss by one forward pass at theta_hat for all candidates."""
        activation = public.activation
        layers = self.layers(inputs, public)
        own_loss, own = loss_and_gradient_sums(layers, A, Y, row_mask(public.sizes),
                                               activation, gradient=True)
        grads = [g + o for g, o in zip(self.layers(inputs, public, "seed_grad"), own,
                                       strict=True)]
        if not loss:
            return grads
        seed_loss = loss_sums(per_candidate(layers), inputs["A_train"], inputs["Y_train"],
                              None, activation)
        return seed_loss + own_loss, grads

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        super().check_fixed_point(inputs, precision_bits)
        for name, value in inputs.items():
            if name.startswith("seed_grad"):
                check_parameters(value, precision_bits)
        check_dataset("model owner's training features", inputs["A_train"], precision_bits)
        check_dataset("model owner's test features", inputs["A_test"], precision_bits)

    def possible(self, values: np.ndarray) -> np.ndarray:
        # a test-loss reduction never exceeds the seed's whole test loss (losses are >= 0)
        return UnionAppraiser.possible(self, values)

    def work_per_row(self) -> int:
        s = self.seed_
        widths = sum(s.architecture.hidden) + s.architecture.n_outputs
        return int(widths) * (4 + (s.n_seed + len(s.y_test)) // 50)
