"""The data owner's input: candidate datasets as one zero-padded batch, and the model owner's
datasets in the same layout.

Layout used by every appraiser computation (torch or CrypTen alike):

- ``A``: features with a bias column, (B, m, d + 1); rows past a candidate's size are all zero,
  bias included, so they add nothing to any sum of gradients;
- ``Y``: label targets, (B, m, C): the 0/1 label for a sigmoid model (C = 1), else one-hot;
  zero on padding rows;
- ``sizes``: each candidate's number of samples, public.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from explorer.model import DTYPE, label_targets, with_bias


def row_mask(sizes: Sequence[int], m: int | None = None) -> torch.Tensor:
    """Public (B, m, 1) mask: 1 on each candidate's real rows, 0 on padding."""
    m = max(sizes) if m is None else m
    return (torch.arange(m)[None, :] < torch.tensor(list(sizes))[:, None]).to(DTYPE)[..., None]


@dataclass(frozen=True)
class CandidateBatch:
    """Candidates as the data owner enters them: A (B, m, d + 1), Y (B, m, C), public sizes."""

    A: torch.Tensor
    Y: torch.Tensor
    sizes: tuple[int, ...]


def candidate_batch(candidates: Sequence[tuple[torch.Tensor, torch.Tensor]],
                    n_outputs: int) -> CandidateBatch:
    """[(X (m_b, d), y (m_b,)), ...] -> one zero-padded CandidateBatch."""
    sizes = tuple(len(y) for _, y in candidates)
    m, d = max(sizes), candidates[0][0].shape[1]
    A = torch.zeros(len(candidates), m, d + 1, dtype=DTYPE)
    Y = torch.zeros(len(candidates), m, max(n_outputs, 1), dtype=DTYPE)
    for b, (X, y) in enumerate(candidates):
        n = len(y)
        A[b, :n] = with_bias(torch.as_tensor(X, dtype=DTYPE))
        Y[b, :n] = label_targets(torch.as_tensor(y), n_outputs)
    return CandidateBatch(A, Y, sizes)
