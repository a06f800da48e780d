"""The logistic model's pieces that appraisers compute on torch tensors and CrypTensors alike.

Parameters theta are (d + 1, C), or one per candidate (B, d + 1, C); features carry the bias
column (see explorer.appraisers.batch). C = 1 is a sigmoid model, C >= 3 softmax. These are the
formulas of explorer.model (which fits and differentiates in float64, and owns the link
``probabilities``) written only with operations CrypTen also has, over batches of candidates.
"""

from __future__ import annotations

import torch

from explorer.appraisers.tensors import cat, matmul
from explorer.model import probabilities

# Logit gaps are clamped at this distance inside exponentials. CrypTen's exp is the limit
# (1 + x / 2^k)^(2^k), which turns into garbage for x below about -2^8 (and its sigmoid with
# it), while e^-64 is below float64's resolution of any sum it enters: the clamp changes no
# plaintext value and keeps parameters far from theta_hat (fine-tuning, newton's trial steps)
# from corrupting encrypted losses.
GAP = 64.0


def clamp(x, bound: float = GAP):
    """x clamped to [-bound, bound], with operations CrypTen has (two comparisons)."""
    return bound - (bound - ((x + bound).relu() - bound)).relu()


def bounded_probabilities(Z, n_outputs: int):
    """explorer.model's ``probabilities`` with the logits (sigmoid) or their gaps to the largest
    (softmax) clamped at GAP first, for parameters that may have moved far from theta_hat."""
    return probabilities(clamp(Z), 1) if n_outputs == 1 else softmax(Z)


def softmax(Z):
    """Softmax over the last axis with the gaps to the largest entry clamped at -GAP."""
    weights = _clamped_gaps(Z)[1].exp()
    return weights * weights.sum(dim=-1, keepdim=True).reciprocal()


def _clamped_gaps(Z):
    """Z minus its largest entry over the last axis, and the same clamped at -GAP (both <= 0)."""
    gaps = Z - Z.max(dim=-1, keepdim=True)[0]
    return gaps, (gaps + GAP).relu() - GAP


def log_softmax(Z):
    """log softmax over the last axis, with the gaps inside the exponential clamped at -GAP."""
    gaps, clamped = _clamped_gaps(Z)
    return gaps - clamped.exp().sum(dim=-1, keepdim=True).log()


def gradient_sums(A, Y, theta, bounded: bool = False):
    """Summed cross-entropy gradient per candidate at theta.

    A (B, m, d1), Y (B, m, C), theta (d1, C) or (B, d1, C) -> (B, d1, C). Padding rows of A are
    zero and contribute nothing. ``bounded``: see ``bounded_probabilities``. A may be an
    OpenedOperand (both products reuse its one opening).
    """
    Z, C = matmul(A, theta), Y.shape[-1]
    R = (bounded_probabilities(Z, C) if bounded else probabilities(Z, C)) - Y
    return matmul(A, R, transpose=True)


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
    return -(log_softmax(Z) * Y).sum(dim=-1).sum(dim=-1)


def union_gradient_sums(A_train, Y_train, A, Y, thetas):
    """Summed cross-entropy gradient over D_tr ∪ D_a, one parameter set per candidate.

    A_train (n, d1), Y_train (n, C): the model owner's seed set; A (B, m, d1), Y (B, m, C): the
    candidates; thetas (B, d1, C) -> (B, d1, C). The seed set's term for all B candidates is one
    product with theta laid out as (d1, B * C).
    """
    B, d1, C = thetas.shape
    n = A_train.shape[0]
    flat = thetas.permute(1, 0, 2).reshape(d1, B * C)
    R = bounded_probabilities(A_train.matmul(flat).reshape(n, B, C), C) - Y_train.unsqueeze(1)
    G_train = A_train.t().matmul(R.reshape(n, B * C)).reshape(d1, B, C).permute(1, 0, 2)
    return G_train + gradient_sums(A, Y, thetas, bounded=True)


def test_loss_reductions(A_test, Y_test, theta, thetas):
    """Mean test cross-entropy at theta minus at each of thetas (nats, > 0 = better): A_test
    (n, d1), Y_test (n, C), theta (d1, C), thetas (B, d1, C) -> (B,).

    Both losses go through the same computation, so under MPC the approximation error of the
    logarithm largely cancels in the difference."""
    B, d1, C = thetas.shape
    n = A_test.shape[0]
    every = cat([theta.unsqueeze(0), thetas], dim=0)  # (B + 1, d1, C)
    Z = A_test.matmul(every.permute(1, 0, 2).reshape(d1, (B + 1) * C)).reshape(n, B + 1, C)
    losses = cross_entropy_sums(Z.permute(1, 0, 2), Y_test) / n
    return losses[0] - losses[1:]


def repeat(theta, count: int):
    """theta (d1, C) -> (count, d1, C): one copy per candidate."""
    return theta.unsqueeze(0).expand(count, *theta.shape)
