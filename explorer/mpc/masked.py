"""A secret tensor opened once and multiplied many times: Beaver products sharing one mask.

Beaver's product of secret X and Y opens X - a and Y - b for a dealt triple (a, b, a·b). Every
product of the data owner's features A (B, m, d + 1) with a secret right operand would open
A - a afresh: the largest tensor of a session, on the wire once per product. Here A - a = E is
opened once, with a mask a dealt by explorer.mpc.dealer, and each product draws a triple
(a, b, a·b) with that same a and a fresh b:

    A·M = E·M + a·M,   with a·M = a·b + a·(M - b) over the opened M - b,

so a product opens only M - b, the small right operand. This is the matrix Beaver triple with a
reused left mask (Mohassel and Zhang, SecureML 2017, section 4.1): E reveals nothing more,
since a is uniform and used for no other tensor; each b is fresh. Shares, fixed-point encoding
and truncation are CrypTen's (ArithmeticSharedTensor, its encoder, its division by the scale).
"""

from __future__ import annotations

import torch

from explorer.appraisers.tensors import OpenedOperand
from explorer.mpc.crypten_compat import load_crypten
from explorer.mpc.dealer import DealtAheadProvider

_crypten = load_crypten()
from crypten.mpc.primitives import ArithmeticSharedTensor  # noqa: E402


def opened_once(x):
    """``x`` (an arithmetic MPCTensor) as an operand opened once for all its products, when the
    session's provider deals reused masks (TTP); else ``x`` itself (CrypTen's products)."""
    provider = _crypten.mpc.get_default_provider()
    if not isinstance(provider, DealtAheadProvider) or \
            _crypten.communicator.get().get_world_size() != 2:
        return x
    return OpenedOnce(x, provider)


class OpenedOnce(OpenedOperand):
    """A secret tensor X (..., n, k), int64 fixed point, held as the opened E = X - a and this
    party's share of the mask a; X's own shares are no longer needed."""

    def __init__(self, x, provider: DealtAheadProvider):
        shared: ArithmeticSharedTensor = x._tensor
        self.shape = tuple(x.size())
        self.encoder = shared.encoder
        self.provider = provider
        self.index, self.a = provider.mask(x.size())
        # E = X - a, in X's encoding (a is a ring element: encoding does not apply to it)
        self.epsilon = _crypten.communicator.get().all_reduce(shared.share - self.a)

    def matmul(self, right, transpose: bool = False):
        """X·M, or X^T·M with ``transpose`` (last two axes): M an arithmetic MPCTensor; an
        MPCTensor in M's encoding."""
        def op(left: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
            return torch.matmul(left.transpose(-2, -1) if transpose else left, other)

        comm = _crypten.communicator.get()
        M: ArithmeticSharedTensor = right._tensor
        b, c = self.provider.correlated_triple(self.index, self.shape, M.size(), transpose)
        delta = comm.all_reduce(M.share - b)
        # c + E·b + a·(M - b) + E·(M - b) = a·b + E·M + a·M - a·b = X·M, with the public
        # E·(M - b) added by rank 0 only: two products with the large E, not three
        z = c + op(self.epsilon, b + delta if comm.get_rank() == 0 else b) + op(self.a, delta)
        out = _crypten.mpc.MPCTensor.from_shares(z, precision=0)
        out._tensor.encoder = M.encoder
        if self.encoder.scale > 1:  # both factors carried the scale: divide one out
            out._tensor.div_(self.encoder.scale)
        return out
