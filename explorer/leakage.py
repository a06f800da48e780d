"""What the revealed values leak (DESIGN §2b, the paper's §6): reconstruction over repeated queries.

MPC hides each party's inputs, not what is revealed, and each party chooses its own inputs
freely. Two attacks on the influence appraiser, each written against what its party really has:

- **data owner -> model** (``data_owner_attack``): crafted candidates sent through the model
  owner's appraisal (``AppraisalService``: a fitted influence appraiser's ``appraise_many``,
  plaintext or private). For a sigmoid model, one row x̃ = (x, 1) copied m times with label y is
  worth m (σ(θ·x̃) − y)(w·x̃), w = v / n_seed. The labels 0 and 1 give w·x̃ (the difference) and
  σ(θ·x̃) (the ratio), so the zero row and the d basis rows, 2(d+1) candidates in one session,
  give θ̂ and v exactly up to fixed point. For a softmax model, C labels per row give W·x̃ (the
  weights sum to zero over classes), so C(d+1) candidates give v; θ̂ then follows from one more
  value per extra row by a least-squares fit. In bit mode (the model owner's threshold, 0 by
  default) the attacker mixes labels: k of N copies labelled 1 give the bit σ(θ·x̃) > k/N, so
  each row's σ is bisected, d+1 bits a round.
- **model owner -> data** (``model_owner_attack``): the model owner builds its own session
  payload; with weights e_j it reads the j-th coordinate of G(D_a), one session each
  (``DataOwnerParty`` is the honest data owner, who enters its candidate into each session). In
  bit mode it also sets the threshold, and bisects each coordinate.

Defences (``Defence``): ``bit-only`` and a public ``Policy`` need no protocol change;
``rounding`` (a public grid) and ``noise`` (each party's own, added inside MPC) are the
protocol's own reveal defences (explorer.appraisers.reveal), run here exactly as a session
runs them, under plaintext or CrypTen, with the public weight bound that keeps the model owner
from scaling its weights past them. Both are random (the grid rounds stochastically), so the
value-mode attackers repeat their queries and average when the budget allows. ``run_attack``
measures an attack under one defence and returns the curve: relative L2 error of the
attacker's estimate against the number of values or bits revealed. Only the scorer reads the
truth; the attackers see their own inputs, the public metadata and what is revealed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from explorer.appraisers.base import Appraiser
from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.config import AppraiserConfig
from explorer.appraisers.logistic import gradient_sums
from explorer.appraisers.reveal import Defences, clip_rows, compute_defended, weight_margin
from explorer.errors import ExplorerError
from explorer.mpc.protocol import ModelOwnerInput, SessionSpec, definition
from explorer.seed import SeedModel

ATTACKERS = ("data-owner", "model-owner")
REVEALS = ("value", "bit")
DEFENCES = ("none", "bit-only", "policy", "rounding", "noise")
# Targets: theta (theta_hat, classes centred for softmax), v (the influence weights v / n_seed,
# the same relative error as v), G (G(D_a), the candidate's summed gradient at theta_hat).
COLUMNS = ["attacker", "reveal", "defence", "queries", "target", "relative_error"]

# Public grid step and each party's noise standard deviation, nats on the revealed value: about
# 4% of the spread of WDBC's 30-row candidate values (benchmarks/leakage.py).
DEFAULT_GRID = 0.01
DEFAULT_NOISE = 0.01
# Public bound of a candidate row's feature norm (standardised units) that noise needs; WDBC's
# rows reach about 17, so the honest data owner's rows are not clipped.
DEFAULT_ROW_BOUND = 32.0
# Copies of each crafted row: lifts a one-row value (~1e-3 on WDBC) far above fixed point's 2^-16.
DEFAULT_COPIES = 64
# Depth of the data owner's bit-mode bisection: N = 2^depth copies per candidate.
DEFAULT_DEPTH = 12
# Relative size of the antithetic jitter that makes copies distinct rows.
JITTER = 1e-3
# Model-owner bit mode: bisection steps per coordinate the default budget allows.
BITS_PER_VALUE = 20


class Refused(ExplorerError):
    """A party refused a session under the public policy (or its ledger's budget is spent)."""


@dataclass(frozen=True)
class Policy:
    """A public policy both parties agree on before any session.

    Each rule is enforced by the party it protects, on what that party can see:

    - ``min_size`` and ``max_candidates`` (per session): the model owner, on the public sizes;
    - ``max_sessions``: each party's ledger of sessions with its counterpart (the data owner
      counts the sessions its candidate entered, the model owner those with this data owner);
    - ``distinct_rows`` (no repeated row in a candidate): protects the model owner, who cannot
      see the rows; it needs an MPC equality check that reveals one bit per candidate (a
      protocol addition). Here its outcome is computed in the clear as a stand-in. It catches
      exact repeats only: copies jittered by x ± 1e-3 r pass, and the attack loses nothing
      (the jitter's effect cancels to first order).

    An attacker waives the rules that protect itself: the model owner attacking a candidate
    meets only the data owner's ``max_sessions``.
    """

    min_size: int = 10
    max_candidates: int = 8
    max_sessions: int = 4
    distinct_rows: bool = True

    def __post_init__(self) -> None:
        for name in ("min_size", "max_candidates", "max_sessions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExplorerError(f"the policy's {name} must be a whole number of at least "
                                    f"1, got {value!r}.")

    def check_session(self, sizes: Sequence[int], sessions_so_far: int) -> None:
        """The model owner's check of a session's public metadata."""
        if sessions_so_far >= self.max_sessions:
            raise Refused(f"the policy allows {self.max_sessions} sessions and they are spent.")
        if len(sizes) > self.max_candidates:
            raise Refused(f"the policy allows {self.max_candidates} candidates a session, "
                          f"not {len(sizes)}.")
        if min(sizes) < self.min_size:
            raise Refused(f"the policy requires candidates of at least {self.min_size} rows, "
                          f"got one of {min(sizes)}.")


@dataclass(frozen=True)
class Defence:
    """What limits the leak: the reveal (``bits_only``), a public ``policy``, and the
    protocol's reveal ``defences`` (a public grid or each party's noise, with the weight bound
    checked inside MPC and, for noise, the data owner's row bound)."""

    name: str = "none"
    bits_only: bool = False
    policy: Policy | None = None
    defences: Defences = field(default_factory=Defences)

    @property
    def random(self) -> bool:
        """Whether a repeated query reveals a fresh draw (noise, or stochastic rounding)."""
        return self.defences.grid > 0 or self.defences.noise > 0

    @property
    def weight_bound(self) -> float | None:
        return self.defences.weight_bound


def make_defence(name: str, weight_bound: float | None = None, policy: Policy | None = None,
                 grid: float = DEFAULT_GRID, noise: float = DEFAULT_NOISE,
                 row_bound: float = DEFAULT_ROW_BOUND) -> Defence:
    """A defence by its command-line name. ``weight_bound`` is the public bound of the model
    owner's weight norm that rounding and noise need (``public_weight_bound``)."""
    if name not in DEFENCES:
        raise ExplorerError(f"unknown defence {name!r}; choose one of {', '.join(DEFENCES)}.")
    defences = Defences()
    if name in ("rounding", "noise"):
        if weight_bound is None:
            raise ExplorerError(f"the {name} defence needs the model owner's public weight "
                                f"bound (public_weight_bound).")
        level = grid if name == "rounding" else noise
        if not (isinstance(level, (int, float)) and math.isfinite(level) and level > 0):
            raise ExplorerError(f"the {'grid' if name == 'rounding' else 'noise'} must be a "
                                f"positive number, got {level!r}.")
        defences = Defences(grid=level, weight_bound=weight_bound) if name == "rounding" \
            else Defences(noise=level, weight_bound=weight_bound, row_bound=row_bound)
    return Defence(name=name, bits_only=name == "bit-only",
                   policy=(policy or Policy()) if name == "policy" else None,
                   defences=defences)


def public_weight_bound(appraiser: Appraiser) -> float:
    """The bound the model owner announces for rounding and noise: its honest weight norm,
    with room for the check's margin, rounded up to a power of two (one public number)."""
    weights = appraiser.weights_
    norm = float(weights.norm()) / (1 - 2 * weight_margin(weights.numel()))
    return 2.0 ** math.ceil(math.log2(norm)) if norm > 0 else 1.0


def attacker_gain(defence: Defence, n_weights: int) -> float:
    """About the largest weight norm a model owner can use and pass the weight-bound check."""
    bound = defence.weight_bound
    return bound * (1 - 2 * weight_margin(n_weights)) if bound is not None else 1.0


def _has_repeated_rows(X) -> bool:
    X = np.asarray(X, dtype=np.float64)
    return len(np.unique(X, axis=0)) < len(X)


# -- the model owner's side, as the data owner meets it ------------------------------------------


class AppraisalService:
    """The model owner's appraisal as a data owner meets it: submit candidates (standardised
    X, labels y), receive one revealed value or bit each, or a Refused under the public policy.

    ``appraiser`` is a fitted influence appraiser (plaintext or private, built with
    AppraiserConfig, whose reveal defences it applies); a private one in bit mode reveals bits
    itself, in plaintext the bit ``value > threshold`` is taken here as the protocol would.
    """

    def __init__(self, appraiser: Appraiser, reveal: str = "value", threshold: float = 0.0,
                 defence: Defence | None = None):
        if reveal not in REVEALS:
            raise ExplorerError(f"unknown reveal {reveal!r}; choose value or bit.")
        self.appraiser = appraiser
        self.reveal = reveal
        self.threshold = float(threshold)
        self.defence = defence or Defence()
        self.sessions = 0
        self.revealed = 0
        mpc = appraiser.mpc
        self._bits_inside = mpc is not None and mpc.reveal == "bit"
        if self._bits_inside and (reveal != "bit" or mpc.threshold != self.threshold):
            raise ExplorerError("a private appraiser that reveals bits serves bit mode at its "
                                "own threshold.")
        if appraiser.defences != self.defence.defences:
            raise ExplorerError("the appraiser's reveal defences are not the service's.")

    def appraise(self, candidates: Sequence[tuple]) -> np.ndarray:
        sizes = [len(y) for _, y in candidates]
        policy = self.defence.policy
        if policy is not None:
            policy.check_session(sizes, self.sessions)
            # stand-in for the MPC equality check (one revealed bit per candidate)
            if policy.distinct_rows and any(_has_repeated_rows(X) for X, _ in candidates):
                raise Refused("the policy forbids repeated rows within a candidate.")
        rows = self.appraiser.appraise_many(list(candidates))
        values = np.array([r["value"] for r in rows], dtype=np.float64)
        self.sessions += 1
        self.revealed += len(values)
        if self._bits_inside:
            return values
        if self.reveal == "bit":
            return (values > self.threshold).astype(np.float64)
        return values


def build_service(seed: SeedModel, reveal: str, defence: Defence, backend: str = "plaintext",
                  mode: str = "simulated", threshold: float = 0.0, precision_bits: int = 16,
                  timeout: float = 600.0) -> AppraisalService:
    """The model owner's appraisal service for this defence, on a fitted influence appraiser
    that applies the defence's reveal defences (in plaintext or inside MPC)."""
    if reveal == "bit" and defence.defences.grid > 0:
        raise ExplorerError("the rounding defence rounds revealed values; bit mode reveals "
                            "bits.")
    options = {}
    if backend == "crypten":
        options = {"mode": mode, "provider": "TFP" if mode == "simulated" else "TTP",
                   "precision_bits": precision_bits, "timeout": timeout,
                   "reveal": reveal, "threshold": threshold}
    d = defence.defences
    appraiser = AppraiserConfig(names=("influence",), backend=backend, grid=d.grid,
                                noise=d.noise, weight_bound=d.weight_bound,
                                row_bound=d.row_bound, **options).build("influence").fit(seed)
    return AppraisalService(appraiser, reveal, threshold, defence)


# -- the data owner's side, as the model owner meets it ------------------------------------------


class DataOwnerParty:
    """An honest data owner: it enters its candidate, as it is, into each session the model
    owner opens (until its ledger's budget, the policy's ``max_sessions``, is spent) and sees
    the revealed values. ``backend`` plaintext runs the session's definition with its reveal
    defences in the clear (``compute_defended``); crypten runs a real session
    (``explorer.mpc.session.run_session``). It joins only sessions with the agreed defences."""

    def __init__(self, seed_check: SeedModel, X, y, backend: str = "plaintext",
                 mode: str = "simulated", defence: Defence | None = None,
                 timeout: float = 600.0):
        self._candidate = seed_check.check_candidate(X, y)  # validated like any candidate
        self.backend = backend
        self.mode = mode
        self.provider = "TFP" if mode == "simulated" else "TTP"
        self.defence = defence or Defence()
        self.timeout = timeout
        self.sessions = 0

    @property
    def sizes(self) -> tuple[int, ...]:
        """Public: the candidate's number of rows."""
        return (len(self._candidate[1]),)

    def session(self, spec: SessionSpec, mo: ModelOwnerInput) -> np.ndarray:
        """One session with the model owner's payload ``mo``; the revealed values (or bits)."""
        policy = self.defence.policy
        if policy is not None and self.sessions >= policy.max_sessions:
            raise Refused(f"the data owner's ledger allows {policy.max_sessions} sessions for "
                          f"this candidate and they are spent.")
        if spec.public.sizes != self.sizes:
            raise Refused("the session's sizes are not this candidate's.")
        if spec.defences != self.defence.defences:
            raise Refused("the session's reveal defences are not the agreed ones.")
        self.sessions += 1
        batch = candidate_batch([self._candidate], spec.public.n_outputs)
        if self.backend == "plaintext":
            values = compute_defended(definition(spec.public), mo.inputs, batch.A, batch.Y,
                                      spec.public, spec.defences).numpy()
            if spec.reveal == "bit":
                values = (values > mo.threshold).astype(np.float64)
        else:
            from explorer.mpc.session import run_session

            values = run_session(spec, mo, batch, self.mode, self.provider,
                                 self.timeout).values[0]  # the first of the verified copies
        return np.asarray(values, dtype=np.float64)


# -- traces ----------------------------------------------------------------------------------


@dataclass
class Trace:
    """The attacker's estimates as values or bits are revealed: ``points`` holds (revealed so
    far, {target: estimate})."""

    points: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list)

    def add(self, queries: int, estimates: dict[str, np.ndarray]) -> None:
        self.points.append((int(queries), {k: np.array(v, dtype=np.float64)
                                           for k, v in estimates.items()}))

    @property
    def queries(self) -> int:
        return self.points[-1][0] if self.points else 0


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """||estimate - truth|| / ||truth|| (L2 over all entries)."""
    truth = np.asarray(truth, dtype=np.float64).ravel()
    estimate = np.asarray(estimate, dtype=np.float64).ravel()
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def _centre_classes(theta: np.ndarray) -> np.ndarray:
    """Softmax parameters are defined up to a common shift over classes: remove it."""
    theta = np.asarray(theta, dtype=np.float64)
    return theta - theta.mean(axis=1, keepdims=True) if theta.shape[1] > 1 else theta


# -- data owner -> model -----------------------------------------------------------------------


def _copies(row: np.ndarray, m: int, distinct: bool, rng: np.random.Generator) -> np.ndarray:
    """m copies of ``row``; with ``distinct``, antithetic jitter (x ± εr) makes every row
    different while the first-order effect of the jitter cancels in the sum."""
    X = np.repeat(row[None, :], m, axis=0)
    if distinct and m > 1:
        r = rng.standard_normal((m // 2, row.shape[0])) * JITTER
        X[: m // 2] += r
        X[m // 2: 2 * (m // 2)] -= r
    return X


def _probe_rows(d: int) -> np.ndarray:
    """The crafted rows: the zero row (bias), then the d basis rows, in standardised units."""
    return np.vstack([np.zeros((1, d)), np.eye(d)])


def _sessions(service: AppraisalService, candidates: list[tuple],
              policy: Policy | None) -> list[float]:
    """Send candidates in sessions the public policy admits; stop at the first refusal."""
    per = policy.max_candidates if policy is not None else max(len(candidates), 1)
    out: list[float] = []
    for lo in range(0, len(candidates), per):
        try:
            out.extend(service.appraise(candidates[lo:lo + per]).tolist())
        except Refused:
            break
    return out


def _from_rows(z: dict[int, float], a: dict[int, np.ndarray], d: int, C: int
               ) -> dict[str, np.ndarray]:
    """theta and w from per-row logits z_r (binary: θ·x̃_r) and per-row w·x̃_r (C values)."""
    theta = np.zeros((d + 1, C))
    w = np.zeros((d + 1, C))
    for known, out in ((a, w), (z, theta)):
        base = known.get(0, 0.0)  # the zero row's value; 0 while unknown
        out[d] = base
        for r, value in known.items():
            if r > 0:
                out[r - 1] = value - base
    return {"theta": theta, "v": w}


# The attacker's prior: no logit of a standardised row beyond this.
LOGIT_CAP = 8.0


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return min(max(math.log(p / (1 - p)), -LOGIT_CAP), LOGIT_CAP)


def data_owner_attack(service: AppraisalService, n_features: int, n_outputs: int,
                      queries: int | None = None, copies: int = DEFAULT_COPIES,
                      depth: int = DEFAULT_DEPTH, extra_rows: int | None = None,
                      rng: np.random.Generator | None = None) -> Trace:
    """Reconstruct theta_hat and v / n_seed through the appraisal service.

    The attacker knows the public metadata (d, C), the public policy and, in bit mode, the
    threshold (0); it sees only the revealed values or bits. ``queries`` caps the values or
    bits it asks for (default: what the attack needs). Estimates: ``theta`` (d+1, C) and
    ``v`` (the weights v / n_seed, (d+1, C)).
    """
    rng = rng or np.random.default_rng(0)
    policy = service.defence.policy
    distinct = policy is not None and policy.distinct_rows
    m = max(copies, policy.min_size if policy is not None else 1)
    if service.reveal == "bit":
        if n_outputs != 1:
            raise ExplorerError("the data owner's bit-mode attack is written for binary "
                                "models; use --reveal value for softmax tasks.")
        if service.threshold != 0.0:
            raise ExplorerError("the data owner's bit-mode attack needs the threshold 0 "
                                "(it reads signs).")
        return _data_owner_bits(service, n_features, queries, depth, policy, distinct, rng)
    if n_outputs == 1:
        return _data_owner_binary(service, n_features, queries, m, policy, distinct, rng)
    return _data_owner_softmax(service, n_features, n_outputs, queries, m, policy, distinct,
                               extra_rows, rng)


def _repeats(service: AppraisalService, needed: int, queries: int | None) -> int:
    """Under noise or stochastic rounding the attacker repeats its probe set and averages."""
    if service.defence.random and queries is not None and queries > needed:
        return max(1, queries // needed)
    return 1


def _data_owner_binary(service, d, queries, m, policy, distinct, rng) -> Trace:
    rows = _probe_rows(d)
    probes = [(r, y) for r in range(d + 1) for y in (0, 1)]
    repeats = _repeats(service, len(probes), queries)
    asked = (probes * repeats)[:queries] if queries is not None else probes
    candidates = [(_copies(rows[r], m, distinct, rng), np.full(m, y)) for r, y in asked]
    revealed = _sessions(service, candidates, policy)
    trace = Trace()
    sums: dict[tuple[int, int], list[float]] = {}
    trace.add(0, _from_rows({}, {}, d, 1))
    for q, ((r, y), value) in enumerate(zip(asked, revealed, strict=False), start=1):
        sums.setdefault((r, y), []).append(value / m)
        if y == 0 and q % 2 == 1 and q < len(revealed):
            continue  # record once each pair is in
        z, a = {}, {}
        for (rr, yy), vals in sums.items():
            if yy == 1 and (rr, 0) in sums:
                v0, v1 = np.mean(sums[(rr, 0)]), np.mean(vals)
                a[rr] = np.array([v0 - v1])  # w·x̃
                ratio = v0 / (v0 - v1) if v0 != v1 else math.nan
                if 0 < ratio < 1:  # else the values are inconsistent: the row stays unknown
                    z[rr] = _logit(ratio)
        trace.add(q, _from_rows(z, a, d, 1))
    return trace


def _data_owner_bits(service, d, queries, depth, policy, distinct, rng) -> Trace:
    """Bisect σ(θ·x̃_r) for every crafted row at once: N = 2^depth copies, k labelled 1;
    the value is (w·x̃)(Nσ − k), so its sign against the sign of w·x̃ (round 0: k = 0) says
    whether σ > k/N. One round = one bit per row."""
    rows = _probe_rows(d)
    n = 2 ** depth
    budget = queries if queries is not None else (d + 1) * (depth + 1)
    sign = np.zeros(d + 1)
    lo, hi = np.zeros(d + 1), np.ones(d + 1)
    trace = Trace()

    def estimates() -> dict[str, np.ndarray]:
        known = {r: _logit((lo[r] + hi[r]) / 2) for r in range(d + 1) if sign[r] != 0}
        return _from_rows(known, {}, d, 1)

    trace.add(0, estimates())
    asked = 0
    rnd = 0
    while asked < budget:
        take = list(range(min(d + 1, budget - asked)))
        ks = [0 if rnd == 0 else int(round((lo[r] + hi[r]) / 2 * n)) for r in take]
        candidates = [(_copies(rows[r], n, distinct, rng),
                       np.r_[np.zeros(n - k, dtype=int), np.ones(k, dtype=int)])
                      for r, k in zip(take, ks, strict=True)]
        bits = _sessions(service, candidates, policy)
        for r, k, bit in zip(take, ks, bits, strict=False):
            if rnd == 0:
                sign[r] = 1.0 if bit > 0.5 else -1.0
            elif (bit > 0.5) == (sign[r] > 0):  # sigma > k / n
                lo[r] = k / n
            else:
                hi[r] = k / n
            asked += 1
            trace.add(asked, estimates())
        if len(bits) < len(take):
            break  # refused
        rnd += 1
        if rnd > depth:
            break
    return trace


def _data_owner_softmax(service, d, C, queries, m, policy, distinct, extra_rows, rng) -> Trace:
    """Phase 1: each crafted row with each of the C labels; value_c = m (S − a_c) with
    a = W·x̃ summing to 0 over classes (v is orthogonal to the softmax's shift), so
    a_c = mean(value)/m − value_c/m. Phase 2: one value per extra random row gives
    S = Σ_c softmax(Θ·x̃)_c a_c, and Θ is fitted to all S by least squares."""
    rows = _probe_rows(d)
    # equations for Θ: one per row; 1.5 per unknown makes the fit from Θ = 0 reliable
    extra = extra_rows if extra_rows is not None else 3 * (d + 1) * (C - 1) // 2 - (d + 1)
    extra_X = rng.standard_normal((extra, d))
    probes = [(rows[r], c, r) for r in range(d + 1) for c in range(C)]
    probes += [(extra_X[i], 0, d + 1 + i) for i in range(extra)]
    asked = probes[:queries] if queries is not None else probes
    candidates = [(_copies(x, m, distinct, rng), np.full(m, c)) for x, c, _ in asked]
    revealed = np.array(_sessions(service, candidates, policy)) / m
    trace = Trace()
    trace.add(0, {"theta": np.zeros((d + 1, C)), "v": np.zeros((d + 1, C))})
    n1 = (d + 1) * C
    marks = [*range(C * 8, n1 + 1, C * 8), n1,
             *(n1 + extra * f // 8 for f in (4, 5, 6, 7)), len(revealed)]
    checkpoints = sorted({min(q, len(revealed)) for q in marks} - {0})
    for q in checkpoints:
        vals = revealed[:q]
        a, S = {}, {}
        for r in range(min(q // C, d + 1)):
            row = vals[r * C:(r + 1) * C]
            S[r] = float(row.mean())
            a[r] = S[r] - row
        est = _from_rows({}, a, d, C)
        if len(a) == d + 1 and d + 1 + q - n1 >= (d + 1) * (C - 1):  # not underdetermined
            W = est["v"]
            Xs = [np.r_[rows[r], 1.0] for r in range(d + 1)]
            Ss = [S[r] for r in range(d + 1)]
            for i in range(max(0, q - n1)):
                xt = np.r_[extra_X[i], 1.0]
                Xs.append(xt)
                Ss.append(float(vals[n1 + i] + xt @ W[:, 0]))  # S = value_0 + a_0
            est["theta"] = _fit_softmax(np.array(Xs), np.array(Ss), W)
        trace.add(q, est)
    return trace


def _fit_softmax(Xt: np.ndarray, S: np.ndarray, W: np.ndarray, iterations: int = 100
                 ) -> np.ndarray:
    """Θ minimising Σ_r (Σ_c softmax(Θᵀx̃_r)_c (Wᵀx̃_r)_c − S_r)², from Θ = 0, by
    Levenberg-Marquardt: the residual's derivative in Θ_jc is x̃_rj p_rc (a_rc − ŝ_r)."""
    A = Xt @ W
    n, d1 = Xt.shape
    C = W.shape[1]
    scale = float(np.abs(S).mean()) or 1.0

    def residual(theta):
        Z = Xt @ theta
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        pred = (P * A).sum(axis=1)
        return (pred - S) / scale, P, pred

    theta = np.zeros((d1, C))
    r, P, pred = residual(theta)
    cost, damping = float(r @ r), 1e-3
    ridge = 1e-9 * np.eye(d1 * C)
    for _ in range(iterations):
        J = (Xt[:, :, None] * (P * (A - pred[:, None]))[:, None, :]).reshape(n, d1 * C) / scale
        JtJ, Jtr = J.T @ J, J.T @ r
        improved = False
        while damping < 1e12 and not improved:
            step = np.linalg.solve(JtJ + damping * (np.diag(np.diag(JtJ)) + ridge), -Jtr)
            trial = theta + step.reshape(d1, C)
            r2, P2, pred2 = residual(trial)
            improved = float(r2 @ r2) < cost
            if improved:
                theta, r, P, pred, cost = trial, r2, P2, pred2, float(r2 @ r2)
                damping = max(damping / 3, 1e-12)
            else:
                damping *= 4
        if not improved or cost < 1e-24 or np.abs(step).max() < 1e-12:
            break
    # a fit that explains the values is kept; a local minimum is worth no more than Θ = 0
    if cost > 1e-6 * n:
        return np.zeros((d1, C))
    return _centre_classes(theta)


# -- model owner -> data -----------------------------------------------------------------------


def model_owner_attack(appraiser: Appraiser, party: DataOwnerParty, reveal: str = "value",
                       queries: int | None = None, defence: Defence | None = None) -> Trace:
    """Reconstruct G(D_a) (d+1, C) of the data owner's candidate, one session per value or bit.

    ``appraiser`` is the model owner's own fitted influence appraiser: it supplies theta_hat
    and the public metadata; the weights and unscale are the model owner's free choice. The
    attacker sees the public sizes and what each session reveals. With a public weight bound
    (rounding, noise) it scales its weights up to what the bound's check lets through.
    """
    defence = defence or Defence()
    public = appraiser.public(party.sizes)
    precision = appraiser.mpc.precision_bits if appraiser.mpc is not None else 16
    spec = SessionSpec(public, reveal=reveal, precision_bits=precision,
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


# -- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackResult:
    """The curve (tidy: ``COLUMNS`` plus the backend), and
    the final error of the main target (theta for the data owner, G for the model owner)."""

    frame: pd.DataFrame
    error: float
    queries: int
    unit: str  # "values" or "bits"


def _backend_label(backend: str, mode: str) -> str:
    return backend if backend == "plaintext" else f"crypten-{mode}"


def run_attack(seed: SeedModel, attacker: str, reveal: str = "value", defence: str = "none",
               backend: str = "plaintext", mode: str = "simulated",
               queries: int | None = None, candidate: tuple | None = None,
               random_state: int = 0, precision_bits: int = 16, timeout: float = 600.0,
               copies: int = DEFAULT_COPIES, depth: int = DEFAULT_DEPTH,
               grid: float = DEFAULT_GRID, noise: float = DEFAULT_NOISE,
               policy: Policy | None = None, weight_bound: float | None = None,
               row_bound: float = DEFAULT_ROW_BOUND) -> AttackResult:
    """Run one attack under one defence and score it against the truth.

    ``candidate`` (X, y) is the data owner's candidate for the model-owner attack. Defence
    ``bit-only`` turns a value-mode run into bit mode. Rounding and noise use the public
    ``weight_bound`` (default: ``public_weight_bound`` of the honest model owner) and noise the
    data owner's ``row_bound``.
    """
    if attacker not in ATTACKERS:
        raise ExplorerError(f"unknown attacker {attacker!r}; choose data-owner or model-owner.")
    if reveal not in REVEALS:
        raise ExplorerError(f"unknown reveal {reveal!r}; choose value or bit.")
    if queries is not None and (isinstance(queries, bool) or not isinstance(queries, int)
                                or queries < 1):
        raise ExplorerError(f"the queries must be a whole number of at least 1, got "
                            f"{queries!r}.")
    rng = np.random.default_rng(random_state)
    honest = AppraiserConfig(names=("influence",)).build("influence").fit(seed)
    bound = weight_bound if weight_bound is not None else public_weight_bound(honest)
    chosen = make_defence(defence, bound, policy, grid, noise, row_bound)
    if chosen.bits_only:
        reveal = "bit"
    if attacker == "data-owner":
        service = build_service(seed, reveal, chosen, backend, mode,
                                precision_bits=precision_bits, timeout=timeout)
        trace = data_owner_attack(service, seed.n_features, seed.theta.shape[1], queries,
                                  copies=copies, depth=depth, rng=rng)
        truth = {"theta": _centre_classes(seed.theta.numpy()), "v": honest.weights_.numpy()}
        main = "theta"
    else:
        if candidate is None:
            raise ExplorerError("the model-owner attack needs the data owner's candidate.")
        X, y = candidate
        options = {}
        if backend == "crypten":
            options = {"mode": mode, "provider": "TFP" if mode == "simulated" else "TTP",
                       "precision_bits": precision_bits, "timeout": timeout}
        own = AppraiserConfig(names=("influence",), backend=backend, **options) \
            .build("influence").fit(seed)
        party = DataOwnerParty(seed, X, y, backend, mode, chosen, timeout)
        trace = model_owner_attack(own, party, reveal, queries, chosen)
        batch = candidate_batch([seed.check_candidate(X, y)], seed.theta.shape[1])
        # what the data owner enters: its rows clipped to the public row bound, if any
        A = clip_rows(batch.A, chosen.defences.row_bound)
        truth = {"G": gradient_sums(A, batch.Y, seed.theta)[0].numpy()}
        main = "G"
    rows = []
    for q, est in trace.points:
        for target, value in est.items():
            if target not in truth:
                continue
            value = _centre_classes(value) if target == "theta" else value
            rows.append({"attacker": attacker, "reveal": reveal, "defence": defence,
                         "queries": q, "target": target,
                         "relative_error": relative_error(value, truth[target]),
                         "backend": _backend_label(backend, mode)})
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "backend"])
    last = frame[frame.target == main]
    return AttackResult(frame=frame, error=float(last.relative_error.iloc[-1]),
                        queries=int(last.queries.iloc[-1]),
                        unit="bits" if reveal == "bit" else "values")


def queries_to_reach(frame: pd.DataFrame, target: str, level: float = 0.1) -> int | None:
    """The fewest revealed values or bits after which the error of ``target`` is at most
    ``level`` (None if never)."""
    hit = frame[(frame.target == target) & (frame.relative_error <= level)]
    return int(hit.queries.min()) if len(hit) else None
