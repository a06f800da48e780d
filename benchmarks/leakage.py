"""What the revealed values leak: revealed values or bits each attack needs to reach 10% error.

    python benchmarks/leakage.py [--tasks wdbc,digits] [--repeat 64] [--draws 20] [--bit-budget N]
                                 [--parts table,trade-off]

For WDBC (sigmoid) and digits (softmax), each attacker (data owner -> theta_hat; model owner ->
G(D_a) of a 5-row candidate), each reveal mode and each defence: the fewest revealed values or
bits after which the relative L2 error is at most 10%, and the error at the end of the budget.
Budgets: what the attack needs (bit mode: at most --bit-budget bits, if given); under noise or
rounding (both random: the grid rounds
stochastically) the value-mode attacker repeats its queries --repeat times and averages. Runs
in plaintext, which applies the protocol's own reveal defences (explorer.appraisers.reveal):
the curves under CrypTen agree up to fixed point (tests/test_leakage.py). Defaults: grid and
noise 0.01 nats, the model owner's weight bound its norm rounded up to a power of two, the data
owner's row bound 32.

Last, the trade-off at τ (or the grid step) = 0, 1%, 5% and 20% of the spread (max - min) of
influence values on a label-noise market of 30 candidates x 30 rows: Spearman's rho of the
revealed values against the true utility (retrained; mean and spread over --draws draws), each
attack's final error with and without repetition, and for noise the ε of one revealed value at
δ = 1e-5 (one row of a candidate, against the model owner; explorer.appraisers.reveal).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import stats

from explorer.appraisers import Influence, appraise
from explorer.appraisers.reveal import gaussian_epsilon, value_sensitivity
from explorer.config import AppraiserConfig
from explorer.experiments import market_utilities
from explorer.leakage import (
    DEFAULT_ROW_BOUND,
    public_weight_bound,
    queries_to_reach,
    run_attack,
)
from explorer.market import make_market
from explorer.seed import fit_seed_model
from explorer.tasks import load_task

CASES = [("value", "none"), ("bit", "bit-only"), ("value", "policy"), ("bit", "policy"),
         ("value", "rounding"), ("value", "noise"), ("bit", "noise")]
RANDOM = ("rounding", "noise")  # a repeated query gives a fresh draw


def needed(seed, attacker: str) -> int:
    d1, C = seed.n_features + 1, seed.theta.shape[1]
    if attacker == "model-owner":
        return d1 * C
    return 2 * d1 if C == 1 else 3 * d1 * (C - 1) // 2 - d1 + C * d1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="wdbc,digits")
    parser.add_argument("--repeat", type=int, default=64)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--bit-budget", type=int, default=None)
    parser.add_argument("--parts", default="table,trade-off")
    args = parser.parse_args()
    parts = args.parts.split(",")
    warnings.simplefilter("ignore")
    print(f"{'task':7} {'attacker':12} {'target':6} {'reveal':6} {'defence':10} "
          f"{'to 10% error':>16} "
          f"{'final error':>12} {'after':>7} {'seconds':>8}")
    for name in args.tasks.split(","):
        task = load_task(name, seed=0)
        seed = fit_seed_model(task)
        (c,) = make_market(task, "none", 1, 5, seed=0)
        for attacker in ("data-owner", "model-owner") if "table" in parts else ():
            targets = ("theta", "v") if attacker == "data-owner" else ("G",)
            for reveal, defence in CASES:
                if attacker == "data-owner" and reveal == "bit" and seed.theta.shape[1] > 1:
                    print(f"{name:7} {attacker:12} {'theta':6} {reveal:6} {defence:10} "
                          f"{'n/a':>16}  (the "
                          f"bit attack is written for binary models)")
                    continue
                queries = args.bit_budget if reveal == "bit" else None
                if defence in RANDOM and reveal == "value":
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
                    print(f"{name:7} {attacker:12} {goal:6} {reveal:6} {defence:10} "
                          f"{shown:>16} {f.relative_error.iloc[-1]:12.3g} {r.queries:7d} "
                          f"{seconds:8.1f}", flush=True)
        if "trade-off" in parts:
            trade_off(name, task, seed, args.repeat, args.draws)


LEVELS = (0.01, 0.05, 0.2)  # of the spread of the honest values


def trade_off(name, task, seed, repeat: int, draws: int) -> None:
    """Ranking quality against leakage at each level of noise and rounding."""
    market = make_market(task, "label-noise", 30, 30, max_level=0.5, seed=1)
    pairs = [(m.X, m.y) for m in market]
    truth = market_utilities(seed, market).utility.to_numpy()
    honest = Influence().fit(seed)
    values = appraise(honest, pairs).values
    spread = float(np.ptp(values))
    bound, rows, C = public_weight_bound(honest), DEFAULT_ROW_BOUND, seed.theta.shape[1]
    sensitivity = value_sensitivity(bound, rows, C)
    (c,) = make_market(task, "none", 1, 5, seed=0)
    print(f"{name}: value spread {spread:.3g} nats; weight bound W {bound:g} (norm "
          f"{float(honest.weights_.norm()):.3g}), row bound R {rows:g}, sensitivity "
          f"{sensitivity:.3g} nats; influence rho {stats.spearmanr(values, truth).statistic:.3f}"
          f" without defence")
    print(f"{'task':7} {'defence':9} {'level':>6} {'nats':>9} {'rho mean':>9} {'rho sd':>7} "
          f"{'eps(1e-5)':>10} {'DO err':>8} {'DO err rep':>10} {'MO err':>8} {'MO err rep':>10}")
    for defence in RANDOM:
        for level in LEVELS:
            step = level * spread
            options = {"grid": step} if defence == "rounding" else {"noise": step}
            config = AppraiserConfig.from_options(names=("influence",), weight_bound=bound,
                                                  row_bound=rows, **options)
            appraiser, runner = config.build("influence").fit(seed), config.runner()
            rhos = [stats.spearmanr(runner.run(appraiser, pairs).values, truth).statistic
                    for _ in range(draws)]
            eps = gaussian_epsilon(step, 1e-5, sensitivity) if defence == "noise" else None
            errors = []
            for attacker in ("data-owner", "model-owner"):
                for queries in (None, repeat):
                    if attacker == "data-owner" and C > 1:
                        errors.append("n/a")  # the softmax fit: minutes a run, not repeated
                        continue
                    budget = None if queries is None else queries * needed(seed, attacker)
                    r = run_attack(seed, attacker, "value", defence, queries=budget,
                                   candidate=(c.X, c.y), grid=step, noise=step,
                                   weight_bound=bound, row_bound=rows)
                    errors.append(f"{r.error:.3g}")
            shown = f"{eps:10.3g}" if eps is not None else f"{'-':>10}"
            print(f"{name:7} {defence:9} {level:6.0%} {step:9.3g} {np.mean(rhos):9.3f} "
                  f"{np.std(rhos):7.3f} {shown} {errors[0]:>8} {errors[1]:>10} "
                  f"{errors[2]:>8} {errors[3]:>10}", flush=True)


if __name__ == "__main__":
    main()
