"""Defences applied to a value before it is revealed: a public rounding grid, calibrated noise
that each party adds itself, and the bounds the noise's calibration rests on.

They are public session settings (``Defences``), agreed like the appraiser's hyper-parameters,
and the same definition runs in plaintext (``compute_defended``) and inside MPC
(explorer.mpc.protocol's reveal step), on torch tensors and CrypTensors alike:

1. **Row bound R** (data owner, in the clear, on its own data before input): each candidate
   row's feature vector x is scaled to norm at most R (x̃ = (x, 1) then has norm at most
   sqrt(R² + 1)). The model owner cannot check this, and need not: it is what the data owner's
   own privacy rests on.
2. **Weight bound W** (checked inside MPC, one revealed bit, before any value exists): the
   model owner's effective influence weights w = weights x unscale (d+1, C) must satisfy
   ||w||_F <= W (W <= 1). The check also bounds every weight entry by 1 and unscale by 4 W, so
   that no product in it can wrap the fixed-point ring; it refuses when ||w||²/W² exceeds
   1 - ``weight_margin``(P), which leaves room for its own fixed-point error (16-bit fixed point
   assumed in that bound; more precision bits only shrink it). A refused session raises before
   any value is computed.
3. **Noise τ** (nats, each party): the model owner and the data owner each draw N(0, τ²) per
   candidate value on their own machine (a torch generator seeded by ``secrets``), encrypt it
   as their own input and add it to the encrypted value. Each sees the value plus the other's
   noise (it may subtract its own): the data owner's draw protects the data owner, the model
   owner's the model owner. The two verified copies of a value carry the same noise (else
   their comparison would fail and averaging them would halve the noise).
4. **Grid step** (nats, value mode only): the revealed value is k x step for an integer k.
   Inside 2-party MPC, k comes from y = value / step by dividing y's fixed-point encoding by
   2^precision_bits, which CrypTen does locally on each share: that truncation is *stochastic
   rounding*, k = floor(y) + 1 with probability frac(y), else floor(y) (measured: 0.3 -> 1 in
   30% of draws; a wrap of the 64-bit ring, with probability about |y| 2^(b - 63), gives a wild
   value that verification catches). Plaintext and simulated mode (one process) draw the same
   rounding with a uniform variable. Stochastic rounding is unbiased: averaging repeated
   queries recovers the value below the grid, exactly as with noise; the ledger's budget is
   what limits repetition.

**Sensitivity (influence only).** With rows clipped to R and ||w||_F <= W, one row adds
r · (wᵀ x̃) to the value, where the residual r = p - y has norm at most 1 (sigmoid) or sqrt(2)
(softmax); so replacing one row of a candidate (sizes are public, so neighbours have equal
sizes) moves the value by at most Δ = 2 W sqrt(R² + 1) c, c = 1 or sqrt(2)
(``value_sensitivity``), up to the fixed-point and sigmoid-approximation error of MPC.
Against the model owner, the data owner's noise alone makes each revealed value an
(ε, δ)-differentially private release of the candidate's rows, ε = ``gaussian_epsilon``(τ, δ,
Δ) (the analytic Gaussian mechanism). Composition over queries: k values about the same rows
are exactly a Gaussian mechanism of sensitivity Δ sqrt(k) (``gaussian_epsilon`` with count=k);
the query ledger bounds k per counterparty. Not enforced: the noise is floating-point Gaussian
encoded in fixed point (not a certified sampler), and nothing here protects the *model* in
the DP sense: the data owner may enter m copies of a crafted row, which multiplies the signal
by m against a fixed τ or grid.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from scipy import special

from explorer.constraints import check_params
from explorer.errors import ExplorerError

if TYPE_CHECKING:
    from explorer.appraisers.base import Appraiser, Public

def weight_margin(n_weights: int) -> float:
    """The weight check refuses ||w||²/W² above 1 - weight_margin(P): room for the check's own
    fixed-point error with P weights and W <= 1. That error is at most about
    (6 sqrt(P) + 18) 2^-16 (16-bit fixed point): the squared norm is one matmul (one
    truncation), and c = unscale / W (at most 4, truncated once, 1/W encoded within 2^-17)
    enters the ratio as s c², whose error 2 s c dc is largest, 2 dc / c, when c is smallest,
    sqrt(1/P) at the boundary. The margin takes 2^-6 plus (8 sqrt(P) + 32) 2^-16."""
    return 2.0 ** -6 + (8.0 * math.sqrt(n_weights) + 32.0) * 2.0 ** -16

# ... and unscale above UNSCALE_CAP x W (the honest one is at most 2 W), so that no product
# in the check can wrap the ring.
UNSCALE_CAP = 4.0


class WeightBoundRefused(ExplorerError):
    """The model owner's weights broke the public weight bound: no value was revealed."""


@dataclass(frozen=True)
class Defences:
    """Public settings of the reveal (0 or None: off). ``grid`` and ``noise`` are in the
    value's units (nats for influence); ``weight_bound`` W bounds ||weights x unscale||_F;
    ``row_bound`` R bounds each candidate row's feature norm (standardised units)."""

    grid: float = 0.0
    noise: float = 0.0
    weight_bound: float | None = None
    row_bound: float | None = None

    def __post_init__(self) -> None:
        check_params(asdict(self))
        if self.noise > 0 and (self.weight_bound is None or self.row_bound is None):
            raise ExplorerError("noise is calibrated to how far one row can move a value, "
                                "which needs a weight bound (--weight-bound) and a row bound "
                                "(--row-bound).")

    @property
    def active(self) -> bool:
        return self != Defences()


def value_sensitivity(weight_bound: float, row_bound: float, n_outputs: int) -> float:
    """Δ: the most that replacing one row of a candidate moves an influence value (nats),
    2 W sqrt(R² + 1) c with c = 1 for a sigmoid model (n_outputs 1), sqrt(2) for softmax."""
    c = 1.0 if n_outputs == 1 else math.sqrt(2.0)
    return 2.0 * weight_bound * math.sqrt(row_bound ** 2 + 1.0) * c


def _gaussian_delta(epsilon: float, mu: float) -> float:
    """The smallest δ for which a Gaussian mechanism with sensitivity/σ = mu is
    (ε, δ)-DP (Balle & Wang 2018, Theorem 8)."""
    a, b = mu / 2 - epsilon / mu, -mu / 2 - epsilon / mu
    return float(special.ndtr(a) - math.exp(epsilon + special.log_ndtr(b)))


def gaussian_epsilon(sigma: float, delta: float, sensitivity: float, count: int = 1) -> float:
    """ε of ``count`` releases, each with noise ``sigma`` and this sensitivity, at δ: their
    composition is exactly one Gaussian mechanism of sensitivity sqrt(count) Δ."""
    if not (sigma > 0 and 0 < delta < 1 and sensitivity > 0 and count >= 1):
        raise ExplorerError("the Gaussian mechanism needs sigma > 0, 0 < delta < 1, a positive "
                            "sensitivity and count >= 1.")
    mu = sensitivity * math.sqrt(count) / sigma
    lo, hi = 0.0, 1.0
    while _gaussian_delta(hi, mu) > delta:
        hi *= 2
    while hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _gaussian_delta(mid, mu) <= delta else (mid, hi)
    return hi


def _generator() -> torch.Generator:
    """A generator seeded from the operating system's randomness: the other party can neither
    know nor repeat the draw (a fixed seed would let it subtract the noise)."""
    return torch.Generator().manual_seed(secrets.randbits(63))


def party_noise(n: int, tau: float) -> torch.Tensor:
    """One party's own noise: (n,) float64 draws of N(0, tau²)."""
    return torch.randn(n, generator=_generator(), dtype=torch.float64) * tau


def stochastic_round(y: torch.Tensor) -> torch.Tensor:
    """floor(y) + 1 with probability frac(y), else floor(y): what 2-party truncation does."""
    u = torch.rand(y.shape, generator=_generator(), dtype=torch.float64)
    return torch.floor(y + u)


def clip_rows(A: torch.Tensor, row_bound: float | None) -> torch.Tensor:
    """Candidate features with bias column (..., m, d + 1): each row's features (all columns
    but the last) scaled to norm at most ``row_bound``; padding rows (zero) stay zero."""
    if row_bound is None:
        return A
    X = A[..., :-1]
    norms = X.norm(dim=-1, keepdim=True)
    factor = torch.clamp(row_bound / torch.clamp(norms, min=1e-300), max=1.0)
    return torch.cat([X * factor, A[..., -1:]], dim=-1)


def weight_bound_bit(appraiser: Appraiser, inputs: dict, public: Public, weight_bound: float):
    """1 if the model owner's inputs respect the weight bound, else 0: one bit, encrypted
    under MPC (the caller reveals it), a torch scalar in plaintext."""
    excess = appraiser.weight_excess(inputs, public, weight_bound)  # all <= 0 when within
    flags = excess > 0
    if isinstance(flags, torch.Tensor):
        flags = flags.to(torch.float64)
    # a count of violations; CrypTen encodes comparison results as integers (scale 1), where
    # 0.5 would encode as 0, so the test is "fewer than 1"
    return flags.sum() < 1


def refuse_weights(weight_bound: float) -> WeightBoundRefused:
    return WeightBoundRefused(
        f"the model owner's weights exceed the public weight bound {weight_bound:g} (or break "
        f"its fixed-point limits): the session is refused before any value is revealed.")


def blur(value, noises):
    """value (B,) plus each party's noise (B,): torch tensors or CrypTensors."""
    for n in noises:
        value = value + n
    return value


def grid_units(value, step: float):
    """value / step, the quantity rounded to an integer before the reveal."""
    return value * (1.0 / step)


def compute_defended(appraiser: Appraiser, inputs: dict, A: torch.Tensor, Y: torch.Tensor,
                     public: Public, defences: Defences) -> torch.Tensor:
    """In plaintext, what a session with these defences reveals: (B,) float64 values.

    The same steps as the protocol: clip the rows, check the weights, compute, add both
    parties' noise, round stochastically to the grid.
    """
    A = clip_rows(A, defences.row_bound)
    if defences.weight_bound is not None and \
            not bool(weight_bound_bit(appraiser, inputs, public, defences.weight_bound)):
        raise refuse_weights(defences.weight_bound)
    values = appraiser.compute(inputs, A, Y, public)
    if defences.noise > 0:
        n = values.shape[0]
        values = blur(values, [party_noise(n, defences.noise) for _ in range(2)])
    if defences.grid > 0:
        values = stochastic_round(grid_units(values, defences.grid)) * defences.grid
    return values
