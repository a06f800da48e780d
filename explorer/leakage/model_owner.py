"""The model owner's attack on the data: crafted weights recover G(D_a) of a candidate.

The model owner builds its own session payload; with weights e_j it reads the j-th coordinate
of G(D_a), one session each (``DataOwnerParty`` is the honest data owner, who enters its
candidate into each session). In bit mode it also sets the threshold, and bisects each
coordinate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from explorer.appraisers.base import Appraiser
from explorer.appraisers.reveal import weight_margin
from explorer.constraints import DEFAULTS
from explorer.leakage.defences import Defence, Refused
from explorer.leakage.parties import DataOwnerParty
from explorer.leakage.trace import Trace
from explorer.mpc.protocol import ModelOwnerInput, SessionSpec

# Model-owner bit mode: bisection steps per coordinate the default budget allows.
BITS_PER_VALUE = 20


def attacker_gain(defence: Defence, n_weights: int) -> float:
    """About the largest weight norm a model owner can use and pass the weight-bound check."""
    bound = defence.weight_bound
    return bound * (1 - 2 * weight_margin(n_weights)) if bound is not None else 1.0


def model_owner_attack(appraiser: Appraiser, party: DataOwnerParty, reveal: str = "value",
                       queries: int | None = None, defence: Defence | None = None,
                       precision_bits: int = DEFAULTS["precision_bits"]) -> Trace:
    """Reconstruct G(D_a) (d+1, C) of the data owner's candidate, one session per value or bit.

    ``appraiser`` is the model owner's own fitted influence appraiser: it supplies theta_hat
    and the public metadata; the weights and unscale are the model owner's free choice. The
    attacker sees the public sizes and what each session reveals, sessions of fixed point with
    ``precision_bits`` fractional bits. With a public weight bound
    (rounding, noise) it scales its weights up to what the bound's check lets through.
    """
    defence = defence or Defence()
    public = appraiser.public(party.sizes)
    spec = SessionSpec(public, reveal=reveal, precision_bits=precision_bits,
                       defences=defence.defences)
    shape = (public.d1, public.n_outputs)
    P = public.d1 * public.n_outputs
    theta = appraiser.seed_.theta
    gain = attacker_gain(defence, P)

    def ask(k: int, threshold: float = 0.0) -> float:
        weights = torch.zeros(P, dtype=torch.float64)
        weights[k] = 1.0
        mo = ModelOwnerInput({"theta": theta, "weights": weights.reshape(shape),
                              "unscale": torch.tensor([gain], dtype=torch.float64)},
                             threshold=threshold * gain)
        return float(party.session(spec, mo)[0])

    if reveal == "value":
        return _mo_values(ask, P, shape, queries, defence)
    return _mo_bits(ask, P, shape, queries)


def _mo_values(ask: Callable, P: int, shape, queries, defence: Defence) -> Trace:
    budget = queries if queries is not None else P
    if not defence.random:
        budget = min(budget, P)  # repeating a deterministic value gains nothing
    sums, counts = np.zeros(P), np.zeros(P)
    trace = Trace()
    trace.add(0, {"G": np.zeros(shape)})
    gain = attacker_gain(defence, P)
    for q in range(budget):
        k = q % P
        try:
            sums[k] += ask(k) / gain
        except Refused:
            break
        counts[k] += 1
        trace.add(q + 1, {"G": (sums / np.maximum(counts, 1)).reshape(shape)})
    return trace


def _mo_bits(ask: Callable, P: int, shape, queries) -> Trace:
    """Round robin over the coordinates: the sign (threshold 0), then doubling the threshold
    until it passes |G_k|, then bisection. Estimate: the middle of what is known."""
    budget = queries if queries is not None else P * BITS_PER_VALUE
    sign = np.zeros(P)
    lo, hi = np.zeros(P), np.full(P, np.nan)
    trace = Trace()

    def estimate() -> np.ndarray:
        mid = np.where(np.isnan(hi), 2 * lo, (lo + np.nan_to_num(hi)) / 2)
        mid = np.where(np.isnan(hi) & (lo == 0), 1.0, mid)
        return (sign * mid).reshape(shape)

    trace.add(0, {"G": np.zeros(shape)})
    for q in range(budget):
        k = q % P
        try:
            if sign[k] == 0:
                sign[k] = 1.0 if ask(k, 0.0) > 0.5 else -1.0
            else:
                t = (2 * lo[k] if lo[k] > 0 else 1.0) if np.isnan(hi[k]) else \
                    (lo[k] + hi[k]) / 2
                above = ask(k, sign[k] * t) > 0.5  # G_k > ±t
                if above == (sign[k] > 0):
                    lo[k] = t
                else:
                    hi[k] = t
        except Refused:
            break
        trace.add(q + 1, {"G": estimate()})
    return trace
