"""Fine-tuning an ``mlp`` seed model: the test-loss reduction after k gradient steps from
theta_hat on D_tr ∪ D_a, with the logistic model's step rule (explorer.appraisers.finetune).

Each candidate gets its own parameter set, one (B, in_l + 1, out_l) matrix per layer, so the
seed set's forward and backward pass runs once per candidate and step, laid out as one product
per layer (explorer.appraisers.network.input_product). Before the first step every candidate
is at theta_hat, where the model owner's input gives the seed set's gradient.
"""

from __future__ import annotations

import torch

from explorer import network
from explorer.appraisers.base import Public
from explorer.appraisers.batch import row_mask
from explorer.appraisers.finetune import FineTune, check_penalty_step, minibatches
from explorer.appraisers.network import (
    penalty_masks,
    test_loss_reductions,
    union_gradient_sums,
)
from explorer.appraisers.network_union import NetworkUnionAppraiser
from explorer.appraisers.tensors import is_encrypted
from explorer.errors import ExplorerError
from explorer.seed import NetworkSeed


class NetworkFineTune(NetworkUnionAppraiser, FineTune):
    """value = test loss at theta_hat minus test loss after k steps, nats.

    Each step descends J (explorer.network) rescaled to a per-sample mean over D_tr ∪ D_a:

        W_l <- W_l - lr * (G_l / N + (lam * n_seed / N) * M_l * W_l),   N = n_seed + |D_a|,

    with G_l the layer's summed cross-entropy gradient over the union and M_l 1 on its weight
    rows, 0 on its bias row. Full-batch steps run on both backends; mini-batches
    (``batch_size``) are plaintext only, drawn as the logistic model's are
    (explorer.appraisers.finetune.minibatches). The hyper-parameters and their checks are
    FineTune's; the stability bound is 2 / lambda_max of the seed Hessian of J at theta_hat,
    by Lanczos iteration on exact Hessian-vector products (explorer.network.top_curvature).
    """

    model_owner_data = ("each layer of theta_hat and of its seed set's summed gradient there, "
                        "its seed set (n_seed, d+1) with targets and its test set (n_test, d+1) "
                        "with targets")

    def _setup(self, seed: NetworkSeed) -> None:
        curvature = network.top_curvature(seed.architecture, seed.theta, seed.X_train,
                                          seed.y_train, seed.lam, seed.n_seed)
        self.stability_bound_ = 2.0 / curvature if curvature > 0 else float("inf")
        self._warn_if_unstable(seed.n_seed)

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        check_penalty_step(self.lr, public)
        return NetworkUnionAppraiser.model_owner_inputs(self, public)

    def compute(self, inputs: dict, A, Y, public: Public):
        activation = public.activation
        layers = self.layers(inputs, public)
        if self.batch_size is not None:
            if is_encrypted(A):
                raise ExplorerError("private fine-tuning takes full-batch steps.")
            return self._minibatch(inputs, layers, A, Y, public)
        totals = public.n_seed + public.sizes_tensor()
        inv_n = (1.0 / totals)[:, None, None]
        decay = (public.lam * public.n_seed / totals)[:, None, None]
        masks = penalty_masks(layers)
        mask = row_mask(public.sizes)
        moved = layers
        for k in range(self.steps):
            if k == 0:  # every candidate at theta_hat: the seed set's gradient is the input's
                G = self.start_gradient_sums(inputs, A, Y, public)
            else:
                G = union_gradient_sums(moved, inputs["A_train"], inputs["Y_train"], A, Y, mask,
                                        activation)
            moved = [W - (g * inv_n + W * (decay * M)) * self.lr
                     for W, g, M in zip(moved, G, masks, strict=True)]
        return test_loss_reductions(inputs["A_test"], inputs["Y_test"], layers, moved,
                                    activation)

    def _minibatch(self, inputs: dict, layers: list, A: torch.Tensor, Y: torch.Tensor,
                   public: Public) -> torch.Tensor:
        """Mini-batch steps with the same step as full batch; candidates of one size draw the
        same batches and step together (as FineTune._minibatch)."""
        activation = public.activation
        values = torch.empty(public.n_candidates, dtype=A.dtype)
        masks = penalty_masks(layers)
        A_tr, Y_tr = inputs["A_train"], inputs["Y_train"]
        n_tr = len(A_tr)
        for m in sorted(set(public.sizes)):
            group = [b for b, size in enumerate(public.sizes) if size == m]
            A_g, Y_g = A[group, :m], Y[group, :m]
            n = n_tr + m
            decay = public.lam * public.n_seed / n
            moved = layers
            for idx in minibatches(n, self.batch_size, self.steps, self.random_state):
                # union row i < n_tr is the seed set's, the rest the candidate's
                seed_rows, own = idx[idx < n_tr], idx[idx >= n_tr] - n_tr
                ones = torch.ones(len(group), len(own), 1, dtype=A.dtype)
                G = union_gradient_sums(moved, A_tr[seed_rows], Y_tr[seed_rows], A_g[:, own],
                                        Y_g[:, own], ones, activation)
                moved = [W - (g / len(idx) + W * M * decay) * self.lr
                         for W, g, M in zip(moved, G, masks, strict=True)]
            values[group] = test_loss_reductions(inputs["A_test"], inputs["Y_test"], layers,
                                                 moved, activation)
        return values
