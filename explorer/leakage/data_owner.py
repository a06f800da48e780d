"""The data owner's attack on the model: crafted candidates recover θ̂ and v / n_seed.

The candidates go through the model owner's appraisal (``AppraisalService``: a fitted influence
appraiser run by its runner, plaintext or private). For a sigmoid model, one row x̃ = (x, 1)
copied m times with label y is worth m (σ(θ·x̃) − y)(w·x̃), w = v / n_seed. The labels 0 and 1
give w·x̃ (the difference) and σ(θ·x̃) (the ratio), so the zero row and the d basis rows,
2(d+1) candidates in one session, give θ̂ and v exactly up to fixed point. For a softmax model,
C labels per row give W·x̃ (the weights sum to zero over classes), so C(d+1) candidates give v;
θ̂ then follows from one more value per extra row by a least-squares fit. In bit mode (the
model owner's threshold, 0 by default) the attacker mixes labels: k of N copies labelled 1 give
the bit σ(θ·x̃) > k/N, so each row's σ is bisected, d+1 bits a round.
"""

from __future__ import annotations

import math

import numpy as np

from explorer.errors import ExplorerError
from explorer.leakage.defences import Policy, Refused
from explorer.leakage.parties import AppraisalService
from explorer.leakage.trace import Trace, centre_classes

# Copies of each crafted row: lifts a one-row value (~1e-3 on WDBC) far above fixed point's 2^-16.
DEFAULT_COPIES = 64
# Depth of the data owner's bit-mode bisection: N = 2^depth copies per candidate.
DEFAULT_DEPTH = 12
# Relative size of the antithetic jitter that makes copies distinct rows.
JITTER = 1e-3


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
                      depth: int = DEFAULT_DEPTH, rng: np.random.Generator | None = None
                      ) -> Trace:
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
                               rng)


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


def _data_owner_softmax(service, d, C, queries, m, policy, distinct, rng) -> Trace:
    """Phase 1: each crafted row with each of the C labels; value_c = m (S − a_c) with
    a = W·x̃ summing to 0 over classes (v is orthogonal to the softmax's shift), so
    a_c = mean(value)/m − value_c/m. Phase 2: one value per extra random row gives
    S = Σ_c softmax(Θ·x̃)_c a_c, and Θ is fitted to all S by least squares."""
    rows = _probe_rows(d)
    # equations for Θ: one per row; 1.5 per unknown makes the fit from Θ = 0 reliable
    extra = 3 * (d + 1) * (C - 1) // 2 - (d + 1)
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
    return centre_classes(theta)
