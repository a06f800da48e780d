"""The three appraisers under secure multi-party computation (CrypTen), same API as plaintext.

``fit(seed)`` is the model owner's plaintext set-up (for influence, v = H^-1 g_te, once);
``appraise_many`` runs one MPC session for a whole batch of candidates; ``value`` is a batch of
one. Only the values (or, with ``reveal="bit"``, only ``value > threshold``) are revealed.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch

from explorer import model
from explorer.appraisers.base import Appraiser, Progress
from explorer.appraisers.finetune import FineTune
from explorer.appraisers.influence import influence_vector
from explorer.errors import ExplorerError
from explorer.mpc.protocol import (
    DEFAULT_PRECISION_BITS,
    ModelOwnerInput,
    SessionSpec,
    pad_candidates,
)
from explorer.mpc.session import check_options, run_session
from explorer.seed import SeedModel


class PrivateAppraiser(Appraiser):
    """Shared machinery: options, batching, accounting. Subclasses say what the model owner
    inputs."""

    backend = "crypten"

    def __init__(self, mode: str = "parties", precision_bits: int = DEFAULT_PRECISION_BITS,
                 provider: str = "TTP", reveal: str = "value", threshold: float = 0.0,
                 timeout: float = 600.0):
        check_options(mode, provider, reveal, precision_bits)
        if not np.isfinite(threshold):
            raise ExplorerError(f"the threshold must be a finite number, got {threshold}.")
        self.mode, self.precision_bits, self.provider = mode, int(precision_bits), provider
        self.reveal, self.threshold, self.timeout = reveal, float(threshold), float(timeout)

    def params(self) -> dict:
        return {"mode": self.mode, "precision_bits": self.precision_bits,
                "provider": self.provider, "reveal": self.reveal, "threshold": self.threshold}

    def session_spec(self, sizes: tuple[int, ...]) -> SessionSpec:
        """The public metadata of a session appraising candidates of these sizes."""
        s = self.seed_
        return SessionSpec(appraiser=self.name, n_features=s.n_features,
                           n_outputs=s.theta.shape[1], sizes=sizes, reveal=self.reveal,
                           precision_bits=self.precision_bits)

    def model_owner_input(self, spec: SessionSpec) -> ModelOwnerInput:
        """What the model owner encrypts (prepared in the clear from its own data only)."""
        return ModelOwnerInput(theta=self.seed_.theta, threshold=self.threshold)

    def appraise_many(self, candidates: Sequence[tuple], progress: Progress | None = None,
                      cancel: threading.Event | None = None) -> list[dict]:
        """One MPC session for all candidates [(X, y), ...]; per candidate: value and its share
        of the session's cost (private seconds, bytes and rounds divided evenly). ``progress``
        hears from the session several times a second; ``cancel`` stops it."""
        if not hasattr(self, "seed_"):
            raise ExplorerError(f"the private {self.name} appraiser is not fitted; call "
                                f"fit(seed_model) first.")
        if not candidates:
            return []
        checked = [self.seed_.check_candidate(X, y) for X, y in candidates]
        spec = self.session_spec(tuple(len(y) for _, y in checked))
        start = time.perf_counter()
        mo = self.model_owner_input(spec)
        prep = time.perf_counter() - start
        n = len(checked)

        def heartbeat(elapsed: float) -> None:
            if progress:
                progress(f"{self.name}: encrypted session, {elapsed:.1f} s", 0, n)

        result = run_session(spec, mo, pad_candidates(checked), self.mode, self.provider,
                             self.timeout, cancel=cancel, on_wait=heartbeat)
        if progress:
            progress(self.name, n, n)
        B = len(checked)
        self.last_session_ = result
        return [{"value": float(v), "seconds": result.wall_seconds / B,
                 "plaintext_seconds": self.setup_seconds_ + prep / B,
                 "private_seconds": result.private_seconds / B, "bytes": result.bytes / B,
                 "rounds": result.rounds / B} for v in result.values]

    def _value(self, X: torch.Tensor, y: torch.Tensor) -> float:
        return self.appraise_many([(X, y)])[0]["value"]


class PrivateInfluence(PrivateAppraiser):
    """Forward influence under MPC: the model owner enters v / n_seed (computed once, in the
    clear); only the candidate's gradient and one inner product run encrypted."""

    name = "influence"

    def __init__(self, solver: str = "auto", **options):
        super().__init__(**options)
        self.solver = solver

    def _setup(self, seed: SeedModel) -> None:
        self.weights_ = influence_vector(seed, self.solver) / seed.n_seed

    def model_owner_input(self, spec: SessionSpec) -> ModelOwnerInput:
        # v / n_seed can sit below fixed-point resolution (MNIST: median 3e-6 against 2^-16):
        # scale it by a secret power of two to a largest entry near 1, and undo that inside MPC
        peak = float(self.weights_.abs().max())
        scale = 2.0 ** -np.ceil(np.log2(peak)) if peak > 0 else 1.0
        return ModelOwnerInput(theta=self.seed_.theta, weights=self.weights_ * scale,
                               weight_scale=float(scale), threshold=self.threshold)


class PrivateGradientNorm(PrivateAppraiser):
    """||G(D_a)||_2 under MPC. The square root runs on ||G / s||^2 with s the model owner's own
    plaintext estimate of a candidate's gradient norm (from its test set, at the public size),
    which keeps the Newton iterations in their range of convergence."""

    name = "gradient-norm"

    def model_owner_input(self, spec: SessionSpec) -> ModelOwnerInput:
        s = self.seed_
        per_sample = model.grad_sum(s.theta, s.X_test, s.y_test).norm() / len(s.y_test)
        scale = max(float(per_sample) * float(np.median(spec.sizes)), 1e-3)
        return ModelOwnerInput(theta=s.theta, norm_scale=scale, threshold=self.threshold)


class PrivateFineTune(PrivateAppraiser):
    """Fine-tuning under MPC: ``steps`` full-batch gradient steps on D_tr ∪ D_a from theta_hat,
    then the test-loss reduction, all encrypted (the model owner enters D_tr, D_te and its test
    loss at theta_hat)."""

    name = "finetune"

    def __init__(self, lr: float = 0.1, steps: int = 16, **options):
        FineTune(lr=lr, steps=steps)  # the same validation as in plaintext
        super().__init__(**options)
        self.lr, self.steps = float(lr), int(steps)

    def params(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, **super().params()}

    def session_spec(self, sizes: tuple[int, ...]) -> SessionSpec:
        s = self.seed_
        return dataclasses.replace(super().session_spec(sizes), n_train=s.n_seed,
                                   n_test=len(s.y_test), lr=self.lr, steps=self.steps,
                                   lam=s.lam)

    def model_owner_input(self, spec: SessionSpec) -> ModelOwnerInput:
        s = self.seed_
        return ModelOwnerInput(theta=s.theta, threshold=self.threshold, X_train=s.X_train,
                               y_train=s.y_train, X_test=s.X_test, y_test=s.y_test,
                               test_loss=s.test_loss)


PRIVATE_APPRAISERS: dict[str, type[PrivateAppraiser]] = {
    PrivateInfluence.name: PrivateInfluence,
    PrivateGradientNorm.name: PrivateGradientNorm,
    PrivateFineTune.name: PrivateFineTune,
}
