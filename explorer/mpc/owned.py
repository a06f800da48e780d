"""Bits of a sharing among several data owners, with one adder: each block re-shared between
the model owner and the block's own data owner.

CrypTen turns an arithmetic sharing among P parties into a binary one (``_A2B``, before every
comparison: the sigmoid's sign, bit mode's threshold) by entering each party's share as a binary
input and adding the P of them with P - 1 binary adders, each a circuit of dozens of AND gates
over the whole tensor. With several data owners the batch's rows come in blocks, one per data
owner (explorer.mpc.protocol), and every row of block j is a function of the model owner's
inputs and data owner j's candidates alone (an appraiser computes each candidate on its own).
So here, for a tensor whose first axis is the session's batch (copies x B rows):

1. every party but the model owner sends its share of block j's rows to data owner j (one round
   of point-to-point messages, explorer.mpc.exchange.reduced_to), which adds them to its own:
   x = s_0 + t, with t's block j held whole by data owner j;
2. the model owner enters s_0 as a binary input, each data owner its block of t (zero
   elsewhere; their XOR is t), and one adder gives x's bits, shared among all P parties again.

What data owner j receives is the sum of the P - 2 other data owners' shares: with the model
owner's share uniform and unknown to it, that reveals nothing of x. Only the model owner and
data owner j together could open block j's rows, which depend on their own inputs alone (as in
a two-party session of the model owner with data owner j); a tensor whose first axis is not the
batch takes CrypTen's own conversion. The dealer's rehearsal takes the same path (its stand-in
communicator opens nothing), so the deal stays the session's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from explorer.mpc.crypten_compat import load_crypten

_crypten = load_crypten()
from crypten.mpc.primitives import converters  # noqa: E402
from crypten.mpc.primitives.binary import BinarySharedTensor  # noqa: E402

_ORIGINAL = converters._A2B
_BLOCKS: tuple[tuple[int, torch.Tensor], ...] | None = None  # (owner rank, its batch rows)
_ROWS = 0  # copies x B: the first axis of a batch tensor


def _a2b(arithmetic_tensor):
    """CrypTen's ``_A2B``, with one adder for a tensor whose first axis is the batch."""
    blocks, share = _BLOCKS, arithmetic_tensor.share
    if blocks is None or share.dim() == 0 or share.size(0) != _ROWS:
        return _ORIGINAL(arithmetic_tensor)
    comm = _crypten.communicator.get()
    rank = comm.get_rank()
    # the data owners' shares of block j, summed at data owner j (the model owner sends none)
    summed = comm.reduced_to([(owner, share.index_select(0, rows)) for owner, rows in blocks],
                             skip=(0,))
    t = torch.zeros_like(share)
    for owner, rows in blocks:
        if rank == owner:
            t[rows] = summed[owner]
    theirs = None
    for owner, _ in blocks:  # each data owner's block, zero elsewhere: their XOR is t
        part = BinarySharedTensor(t, src=owner)
        theirs = part if theirs is None else theirs ^ part
    bits = BinarySharedTensor(share, src=0) + theirs  # s_0 + t: one adder
    bits.encoder = arithmetic_tensor.encoder
    return bits


@contextlib.contextmanager
def owned_rows(owners: tuple[tuple[int, int], ...], copies: int) -> Iterator[None]:
    """Within this block, a sharing whose first axis is the batch of ``owners`` ((rank,
    candidates), consecutive blocks) repeated ``copies`` times becomes bits with one adder."""
    global _BLOCKS, _ROWS
    B = sum(n for _, n in owners)
    blocks, start = [], 0
    for owner, n in owners:
        rows = torch.tensor([c * B + start + r for c in range(copies) for r in range(n)])
        blocks.append((owner, rows))
        start += n
    saved = _BLOCKS, _ROWS
    _BLOCKS, _ROWS = tuple(blocks), copies * B
    converters._A2B = _a2b
    try:
        yield
    finally:
        _BLOCKS, _ROWS = saved
        if _BLOCKS is None:
            converters._A2B = _ORIGINAL
