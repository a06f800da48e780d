"""What the revealed values leak: revealed values or bits each attack needs to reach 10% error.

    python benchmarks/leakage.py [--tasks wdbc,digits] [--repeat 64]

For WDBC (sigmoid) and digits (softmax), each attacker (data owner -> theta_hat; model owner ->
G(D_a) of a 5-row candidate), each reveal mode and each defence: the fewest revealed values or
bits after which the relative L2 error is at most 10%, and the error at the end of the budget.
Budgets: what the attack needs; under noise the value-mode attacker repeats its queries
--repeat times and averages. Runs in plaintext: the curves under CrypTen agree up to fixed point
(tests/test_leakage.py). Rounding and noise are protocol additions, simulated on the revealed
values (marked *). Last, their trade-off at three levels: Spearman's rho of influence against
the true utility on a label-noise market, beside each attack's final error.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import stats

from explorer.appraisers import make_appraiser
from explorer.experiments import market_utilities
from explorer.leakage import (
    SIMULATED,
    make_defence,
    protect,
    queries_to_reach,
    run_attack,
)
from explorer.market import make_market
from explorer.seed import fit_seed_model
from explorer.tasks import load_task

CASES = [("value", "none"), ("bit", "bit-only"), ("value", "policy"), ("bit", "policy"),
         ("value", "rounding"), ("bit", "rounding"), ("value", "noise"), ("bit", "noise")]


def needed(seed, attacker: str) -> int:
    d1, C = seed.n_features + 1, seed.theta.shape[1]
    if attacker == "model-owner":
        return d1 * C
    return 2 * d1 if C == 1 else 3 * d1 * (C - 1) // 2 - d1 + C * d1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="wdbc,digits")
    parser.add_argument("--repeat", type=int, default=64)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"{'task':7} {'attacker':12} {'target':6} {'reveal':6} {'defence':10} "
          f"{'to 10% error':>16} "
          f"{'final error':>12} {'after':>7} {'seconds':>8}")
    for name in args.tasks.split(","):
        task = load_task(name, seed=0)
        seed = fit_seed_model(task)
        (c,) = make_market(task, "none", 1, 5, seed=0)
        for attacker in ("data-owner", "model-owner"):
            targets = ("theta", "v") if attacker == "data-owner" else ("G",)
            for reveal, defence in CASES:
                mark = "*" if defence in SIMULATED else ""
                if attacker == "data-owner" and reveal == "bit" and seed.theta.shape[1] > 1:
                    print(f"{name:7} {attacker:12} {'theta':6} {reveal:6} {defence + mark:10} "
                          f"{'n/a':>16}  (the "
                          f"bit attack is written for binary models)")
                    continue
                queries = None
                if defence == "noise" and reveal == "value":
                    if attacker == "data-owner" and seed.theta.shape[1] > 1:
                        queries = None  # the softmax fit is not repeated
                    else:
                        queries = args.repeat * needed(seed, attacker)
                start = time.perf_counter()
                r = run_attack(seed, attacker, reveal, defence, queries=queries,
                               candidate=(c.X, c.y))
                seconds = time.perf_counter() - start
                for goal in targets:
                    hit = queries_to_reach(r.frame, goal)
                    shown = f"{hit} {r.unit}" if hit is not None else f"> {r.queries} {r.unit}"
                    f = r.frame[r.frame.target == goal]
                    print(f"{name:7} {attacker:12} {goal:6} {reveal:6} {defence + mark:10} "
                          f"{shown:>16} {f.relative_error.iloc[-1]:12.3g} {r.queries:7d} "
                          f"{seconds:8.1f}", flush=True)
        honest_cost(name, task, seed, args.repeat)


LEVELS = (1e-4, 1e-3, 1e-2)


def honest_cost(name, task, seed, repeat: int) -> None:
    """The trade-off of the simulated defences at three levels (nats per row): Spearman's rho
    of influence against the utility on a label-noise market of 30 x 30 (noise: mean of 20
    draws), beside each attack's final error (value mode; noise: `repeat` rounds averaged;
    the softmax data-owner fit is skipped here)."""
    market = make_market(task, "label-noise", 30, 30, max_level=0.5, seed=1)
    truth = market_utilities(seed, market).utility.to_numpy()
    appraiser = make_appraiser("influence").fit(seed)
    values = np.array([appraiser.value(m.X, m.y) for m in market])
    sizes = [m.size for m in market]
    rng = np.random.default_rng(0)
    (c,) = make_market(task, "none", 1, 5, seed=0)
    per_row = np.median(np.abs(values) / 30)
    print(f"{name}: influence rho {stats.spearmanr(values, truth).statistic:.3f} without "
          f"defence; median per-row |value| {per_row:.2g} nats")
    for defence in SIMULATED:
        for level in LEVELS:
            d = make_defence(defence, grid=level, noise=level)
            rhos = [stats.spearmanr(protect(values, sizes, d, rng), truth).statistic
                    for _ in range(20 if defence == "noise" else 1)]
            errors = []
            for attacker in ("data-owner", "model-owner"):
                if attacker == "data-owner" and seed.theta.shape[1] > 1:
                    errors.append("      n/a")
                    continue
                queries = repeat * needed(seed, attacker) if defence == "noise" else None
                r = run_attack(seed, attacker, "value", defence, queries=queries,
                               candidate=(c.X, c.y), grid=level, noise=level)
                errors.append(f"{r.error:9.3g}")
            print(f"{name}: {defence}* {level:g}: rho {np.nanmean(rhos):.3f}; error after "
                  f"the attack: data owner {errors[0]}, model owner {errors[1]}")


if __name__ == "__main__":
    main()
