"""Fixed-point needs of the appraisers' inputs, checked in the clear before encryption.

CrypTen encodes a value x as round(x * 2^b) in a 64-bit ring; a product of two encoded values
carries 2b fractional bits before truncation, so magnitudes past 2^(62 - 2b) overflow.
"""

from __future__ import annotations

import torch

from explorer.errors import ExplorerError


def ring_limit(precision_bits: int) -> float:
    """Largest magnitude a product may reach before a 64-bit fixed-point ring overflows."""
    return 2.0 ** (62 - 2 * precision_bits)


def check_fixed_point(name: str, tensor: torch.Tensor, bound: float, precision_bits: int,
                      what: str) -> None:
    """Refuse, before encryption, an input whose products could overflow the ring."""
    if not torch.isfinite(tensor).all():
        raise ExplorerError(f"the {name} contain NaN or infinite values; they cannot be "
                            f"encrypted.")
    peak = float(tensor.abs().max()) if tensor.numel() else 0.0
    if peak > bound:
        raise ExplorerError(
            f"the {name} reach {peak:.3g} ({what}), above {bound:.3g}, the most that "
            f"{precision_bits}-bit fixed point can hold without overflow; standardise or clip "
            f"the data, or use fewer precision bits.")


def check_parameters(theta: torch.Tensor, precision_bits: int) -> None:
    """Model parameters (d1, C): a column norm bounds the logits of unit-norm rows."""
    check_fixed_point("model parameters", theta.norm(dim=0), ring_limit(precision_bits) ** 0.5,
                      precision_bits, "as a column norm, which bounds the logits")


def check_dataset(name: str, A: torch.Tensor, precision_bits: int) -> None:
    """A dataset with bias column (..., n, d1): column sums bound every gradient entry (the
    residuals are at most 1), row norms bound the logits."""
    limit = ring_limit(precision_bits)
    check_fixed_point(name, A.abs().sum(dim=-2), limit, precision_bits,
                      "summed over samples")
    check_fixed_point(name, A.norm(dim=-1), limit ** 0.5, precision_bits,
                      "as a row norm, which bounds the logits")
