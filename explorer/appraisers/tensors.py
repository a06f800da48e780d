"""The few operations whose spelling differs between torch tensors and CrypTensors.

An appraiser's computation is written once against the torch API, which CrypTen mirrors on
purpose (``matmul``, ``sigmoid``, ``softmax``, ``log_softmax``, ``sqrt``, ``sum``, ``reshape``,
``permute``, ...). Only module-level functions differ (``torch.cat`` against ``crypten.cat``),
and a data-dependent choice must be oblivious under MPC: this module holds exactly those.
Public operands (sizes, masks, step lengths) stay plain torch tensors and go on the right of a
product, where both tensor types accept them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def is_encrypted(x) -> bool:
    """True for a CrypTensor, False for a plain torch tensor."""
    return not isinstance(x, torch.Tensor)


def _crypten():
    from explorer.mpc.crypten_compat import load_crypten

    return load_crypten()


def cat(tensors: Sequence, dim: int = 0):
    """torch.cat, or crypten.cat when any operand is encrypted."""
    if any(is_encrypted(t) for t in tensors):
        return _crypten().cat(list(tensors), dim=dim)
    return torch.cat(list(tensors), dim=dim)


def stack(tensors: Sequence, dim: int = 0):
    """torch.stack, or crypten.stack when any operand is encrypted."""
    if any(is_encrypted(t) for t in tensors):
        return _crypten().stack(list(tensors), dim=dim)
    return torch.stack(list(tensors), dim=dim)


def argmin_one_hot(x, dim: int):
    """One-hot indicator of the smallest entry along ``dim`` (same shape as x).

    Under MPC the comparison stays secret: the result is an encrypted one-hot tensor, so a
    choice made with it (a sum of candidates weighted by it) reveals nothing.
    """
    if is_encrypted(x):
        return (-x).argmax(dim=dim, one_hot=True)
    index = x.argmin(dim=dim, keepdim=True)
    return torch.zeros_like(x).scatter_(dim, index, 1.0)
