"""An input opened once and multiplied many times: Beaver products sharing one mask.

Beaver's product of secret X and Y opens X - a and Y - b for a dealt triple (a, b, a·b). Every
product of the data owner's features X (B, m, d + 1) with a secret right operand would open
X - a afresh: the largest tensor of a session, on the wire once per product. Here E = X - a is
opened once, with a mask a dealt by explorer.mpc.dealer, and each product draws a triple
(a, b, a·b) with that same a and a fresh b:

    X·M = E·M + a·M,   with a·M = a·b + a·(M - b) over the opened M - b,

so a product opens only M - b, the small right operand. This is the matrix Beaver triple with a
reused left mask (Mohassel and Zhang, SecureML 2017, section 4.1).

X is the data owner's own input, so the mask is drawn the way SPDZ-style protocols take an
input (Damgård et al., CRYPTO 2012): a comes whole from the PRG the input's owner shares with
the dealer (the other party's share of a is zero), and the owner alone sends E = X - a. E is
uniform to the receiver, since a is used for no other tensor; each b is fresh; the dealer,
which knows a, never sees E. So X goes on the wire once, in one direction, and never as a
sharing. A verified session's copies share this opening: every product of a copy still draws
its own triple, so the copies' shares of each product, and with them a truncation's failure,
are independent. Fixed-point encoding and truncation are CrypTen's (its encoder, its local
division of the shares by the scale).
"""

from __future__ import annotations

import torch

from explorer.appraisers.tensors import OpenedOperand
from explorer.mpc.crypten_compat import load_crypten
from explorer.mpc.dealt import DealtAheadProvider, copies_product

_crypten = load_crypten()
from crypten.encoder import FixedPointEncoder  # noqa: E402


def opens_once() -> bool:
    """Whether this session's provider deals reused masks (TTP, two or more parties)."""
    return isinstance(_crypten.mpc.get_default_provider(), DealtAheadProvider) and \
        _crypten.communicator.get().get_world_size() >= 2


def opened_input(x: torch.Tensor | None, shape: tuple[int, ...],
                 owner: int | tuple[tuple[int, int], ...], copies: int = 1):
    """Party ``owner``'s input ``x`` (float, ``shape``; None on the other parties) as an operand
    opened once (module docstring), repeated ``copies`` times along the first axis. With
    several owners ((rank, rows), in order), each holds one block of consecutive rows along
    the first axis, ``x`` being its own block: each draws its block's mask and sends its
    block of E to every other party, in one round. Requires :func:`opens_once`."""
    provider: DealtAheadProvider = _crypten.mpc.get_default_provider()
    comm = _crypten.communicator.get()
    encoder = FixedPointEncoder()
    index, a = provider.owned_mask(shape, owner)
    if not isinstance(owner, int):
        mine = None
        offset = 0
        for rank, rows in owner:
            if comm.get_rank() == rank:
                mine = encoder.encode(x.to(torch.float64)) - a[offset:offset + rows]
            offset += rows
        return OpenedOnce(comm.sent_blocks(mine, shape, owner), a, index, copies, encoder,
                          provider)
    if comm.get_rank() == owner:
        epsilon = encoder.encode(x.to(torch.float64)) - a
    else:
        epsilon = torch.empty(shape, dtype=torch.long)
    epsilon = comm.broadcast(epsilon, owner)
    return OpenedOnce(epsilon, a, index, copies, encoder, provider)


class OpenedOnce(OpenedOperand):
    """A secret tensor X (B, n, k), int64 fixed point, repeated ``copies`` times along its first
    axis, held once as the opened E = X - a and this party's share of the mask a (None where
    that share is zero), dealt by ``provider`` as mask ``index``."""

    def __init__(self, epsilon: torch.Tensor, a: torch.Tensor | None, index: int, copies: int,
                 encoder: FixedPointEncoder, provider: DealtAheadProvider):
        self.epsilon, self.a, self.index, self.copies = epsilon, a, index, copies
        self.shape = (copies * epsilon.shape[0], *epsilon.shape[1:])  # as the copies see it
        self.encoder = encoder
        self.provider = provider

    def matmul(self, right, transpose: bool = False):
        """X·M, or X^T·M with ``transpose`` (last two axes): M an arithmetic MPCTensor; an
        MPCTensor in M's encoding."""
        def op(left: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
            return copies_product(left, other, self.copies, transpose)

        comm = _crypten.communicator.get()
        M = right._tensor
        b, c = self.provider.correlated_triple(self.index, self.shape, M.size(), transpose,
                                               self.copies)
        delta = comm.all_reduce(M.share - b)
        # c + E·b + a·(M - b) + E·(M - b) = a·b + E·M + a·M - a·b = X·M, with the public
        # E·(M - b) added by rank 0 only: at most two products with the large E
        z = c + op(self.epsilon, b + delta if comm.get_rank() == 0 else b)
        if self.a is not None:
            z += op(self.a, delta)
        out = _crypten.mpc.MPCTensor.from_shares(z, precision=0)
        out._tensor.encoder = M.encoder
        if self.encoder.scale > 1:  # both factors carried the scale: divide one out
            out._tensor.div_(self.encoder.scale)
        return out
