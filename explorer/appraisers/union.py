"""What appraisers that step on D_tr ∪ D_a share: the model owner enters its seed and test sets.

Fine-tuning and ``newton`` both move theta on the union of the model owner's seed set and a
candidate, then read the exact mean test loss; the model owner's seed set, test set and test
loss at theta_hat are its private inputs, in the candidate batch's layout.
"""

from __future__ import annotations

import numpy as np
import torch

from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.fixed_point import check_dataset, check_parameters
from explorer.model import label_targets, with_bias


class UnionAppraiser(Appraiser):
    """Base of appraisers whose model owner enters D_tr and D_te."""

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        d1, C = public.d1, public.n_outputs
        return {"theta": (d1, C), "A_train": (public.n_seed, d1), "Y_train": (public.n_seed, C),
                "A_test": (public.n_test, d1), "Y_test": (public.n_test, C)}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        s = self.seed_
        C = public.n_outputs
        return {"theta": s.theta, "A_train": with_bias(s.X_train),
                "Y_train": label_targets(s.y_train, C), "A_test": with_bias(s.X_test),
                "Y_test": label_targets(s.y_test, C)}

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        check_parameters(inputs["theta"], precision_bits)
        check_dataset("model owner's training features", inputs["A_train"], precision_bits)
        check_dataset("model owner's test features", inputs["A_test"], precision_bits)

    agreement = 0.05  # step-taking: trial choices make independent copies differ more

    def possible(self, values: np.ndarray) -> np.ndarray:
        # a test-loss reduction never exceeds the seed's whole test loss (losses are >= 0)
        loss = self._fitted().test_loss
        return np.isfinite(values) & (values <= loss * 1.01 + 1e-3)

    def work_per_row(self) -> int:
        s = self.seed_
        return int(s.theta.shape[1]) * (4 + (s.n_seed + len(s.y_test)) // 50)
