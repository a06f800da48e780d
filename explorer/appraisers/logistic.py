"""The logistic model's pieces that appraisers compute on torch tensors and CrypTensors alike.

Parameters theta are (d + 1, C), or one per candidate (B, d + 1, C); features carry the bias
column (see explorer.appraisers.batch). C = 1 is a sigmoid model, C >= 3 softmax. These are the
same formulas as explorer.model (which fits and differentiates in float64); here they are
written only with operations CrypTen also has, over batches of candidates.
"""

from __future__ import annotations

import torch

from explorer.appraisers.tensors import cat


def probabilities(Z, n_outputs: int):
    """Probabilities from logits (..., C): sigmoid for C = 1, softmax over the last axis."""
    return Z.sigmoid() if n_outputs == 1 else Z.softmax(dim=-1)


def gradient_sums(A, Y, theta):
    """Summed cross-entropy gradient per candidate at theta.

    A (B, m, d1), Y (B, m, C), theta (d1, C) or (B, d1, C) -> (B, d1, C). Padding rows of A are
    zero and contribute nothing.
    """
    R = probabilities(A.matmul(theta), Y.shape[-1]) - Y
    return A.transpose(-2, -1).matmul(R)


def cross_entropy_sums(Z, Y, mask: torch.Tensor | None = None):
    """Summed cross-entropy (nats) over the sample axis -2.

    Z logits (..., n, C), Y targets (..., n, C) (or broadcastable), mask (..., n, 1) public with
    0 on padding rows. A sigmoid model's loss is the log-softmax of [0, z], the form CrypTen
    evaluates stably (it has no softplus).
    """
    if Z.shape[-1] == 1:
        ones = torch.ones(Y.shape, dtype=torch.float64) if mask is None else \
            mask.expand(*Y.shape).to(torch.float64)
        Z = cat([Z * 0.0, Z], dim=-1)
        Y = cat([Y * -1.0 + ones, Y], dim=-1)
    return -(Z.log_softmax(dim=-1) * Y).sum(dim=-1).sum(dim=-1)


def union_gradient_sums(A_train, Y_train, A, Y, thetas):
    """Summed cross-entropy gradient over D_tr ∪ D_a, one parameter set per candidate.

    A_train (n, d1), Y_train (n, C): the model owner's seed set; A (B, m, d1), Y (B, m, C): the
    candidates; thetas (B, d1, C) -> (B, d1, C). The seed set's term for all B candidates is one
    product with theta laid out as (d1, B * C).
    """
    B, d1, C = thetas.shape
    n = A_train.shape[0]
    flat = thetas.permute(1, 0, 2).reshape(d1, B * C)
    R = probabilities(A_train.matmul(flat).reshape(n, B, C), C) - Y_train.unsqueeze(1)
    G_train = A_train.t().matmul(R.reshape(n, B * C)).reshape(d1, B, C).permute(1, 0, 2)
    return G_train + gradient_sums(A, Y, thetas)


def mean_test_loss(A_test, Y_test, thetas):
    """Mean test cross-entropy (nats) of each parameter set: A_test (n, d1), Y_test (n, C),
    thetas (B, d1, C) -> (B,)."""
    B, d1, C = thetas.shape
    n = A_test.shape[0]
    Z = A_test.matmul(thetas.permute(1, 0, 2).reshape(d1, B * C)).reshape(n, B, C)
    return cross_entropy_sums(Z.permute(1, 0, 2), Y_test) / n


def repeat(theta, count: int):
    """theta (d1, C) -> (count, d1, C): one copy per candidate."""
    return theta.unsqueeze(0).expand(count, *theta.shape)
