"""The few operations whose spelling differs between torch tensors and CrypTensors.

An appraiser's computation is written once against the torch API, which CrypTen mirrors on
purpose (``matmul``, ``sigmoid``, ``softmax``, ``log_softmax``, ``sqrt``, ``sum``, ``reshape``,
``permute``, ...). Only module-level functions differ (``torch.cat`` against ``crypten.cat``),
and a data-dependent choice must be oblivious under MPC: this module holds exactly those.
Public operands (sizes, masks, step lengths) stay plain torch tensors and go on the right of a
product, where both tensor types accept them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch


def is_encrypted(x) -> bool:
    """True for a CrypTensor, False for a plain torch tensor."""
    return not isinstance(x, torch.Tensor)


def cat(tensors: Sequence, dim: int = 0):
    """torch.cat, or CrypTen's cat when any operand is encrypted (what ``crypten.cat`` calls:
    the CrypTensor type's own, so this module needs no import of CrypTen)."""
    tensors = list(tensors)
    encrypted = [t for t in tensors if is_encrypted(t)]
    if encrypted:
        return tensors[0] if len(tensors) == 1 else type(encrypted[0]).cat(tensors, dim=dim)
    return torch.cat(tensors, dim=dim)


class OpenedOperand(ABC):
    """A secret left operand that is opened (masked) once and then multiplied many times, each
    product opening only its right operand (explorer.mpc.masked implements it)."""

    @abstractmethod
    def matmul(self, right, transpose: bool = False):
        """self·right, or self^T·right with ``transpose`` (over the last two axes)."""


def matmul(A, M, transpose: bool = False):
    """A·M, or A^T·M with ``transpose`` (over the last two axes): a plain product on torch
    tensors and CrypTensors; an OpenedOperand reuses its single opening."""
    if isinstance(A, OpenedOperand):
        return A.matmul(M, transpose=transpose)
    return (A.transpose(-2, -1) if transpose else A).matmul(M)


def less(a, b):
    """1.0 where a < b, else 0.0 (encrypted under MPC, so the comparison stays secret)."""
    result = a < b
    return result.to(torch.float64) if isinstance(result, torch.Tensor) else result


def like(x, values: torch.Tensor):
    """The public ``values`` (broadcastable to x) as a tensor of x's kind: a CrypTensor in x's
    fixed-point encoding when x is one. A quantity that a secret comparison will update must
    start so: CrypTen encodes a comparison's bit as an integer, and a public fraction multiplied
    into that bit is rounded to an integer with it; a product of the bit with a fixed-point
    CrypTensor is exact."""
    return x * 0.0 + values


def with_ones_column(x):
    """x (..., n, k) -> (..., n, k + 1) with a last column of ones (a bias column), torch or
    CrypTen (whose ``pad`` puts the public constant in one party's share)."""
    if is_encrypted(x):
        return x.pad((0, 1), value=1.0)
    return torch.nn.functional.pad(x, (0, 1), value=1.0)
