"""The mlp family's appraisers against the retrained utility: rho of influence, gradient norm,
finetune and newton (K = 4 and 16) on label-noise markets, and one private run's cost.

    python benchmarks/network_appraisers.py [--candidates 20] [--size 20] [--hidden 8]
        [--random-state 100] [--private]

Markets: WDBC and digits label noise up to 1/2, the network at the tasks' network lam (0.03) and
the default activation. Each line: market, appraiser, rho against the utility, mean
|value - utility| / max |utility| (not for gradient norm), plaintext seconds; the first line
says whether the seed model's fit converged (a utility from an unconverged seed is suspect).
With ``--private``: one WDBC session per appraiser between real parties (4 candidates), its
encrypted seconds, bytes and rounds beside plaintext's, in the same run.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from explorer.config import AppraiserConfig
from explorer.experiments import market_utilities
from explorer.market import make_market
from explorer.metrics import spearman
from explorer.seed import fit_seed_model
from explorer.tasks import load_task

MARKETS = [("wdbc label noise", "wdbc"), ("digits label noise", "digits")]
APPRAISERS = [("influence", {}), ("gradient-norm", {}), ("finetune", {}),
              ("newton K=4", {"newton_steps": 4}), ("newton K=16", {"newton_steps": 16})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--random-state", type=int, default=100)
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    run = args.random_state
    for label, task_name in MARKETS:
        task = load_task(task_name, random_state=run)
        seed = fit_seed_model(task, model="mlp", hidden=(args.hidden,))
        market = make_market(task, "label-noise", args.candidates, args.size, 0.5,
                             random_state=run)
        truth = market_utilities(seed, market)["utility"].to_numpy()
        print(f"{label}: {seed.architecture.describe()}, lam {seed.lam:g}, seed fit "
              f"{'converged' if seed.converged else 'NOT converged'}, utility in "
              f"[{truth.min():.4f}, {truth.max():.4f}]")
        pairs = [(c.X, c.y) for c in market]
        for name, options in APPRAISERS:
            base = name.split()[0]
            config = AppraiserConfig.from_options(names=(base,), **options)
            start = time.perf_counter()
            values = config.appraise(base, seed, pairs).values
            seconds = time.perf_counter() - start
            # gradient norm is no test-loss prediction: its rank alone is compared
            error = "" if base == "gradient-norm" else \
                f"  mean error {np.abs(values - truth).mean() / np.abs(truth).max():.3f}"
            print(f"  {name:14s} rho {spearman(values, truth):+.3f}{error}  plaintext "
                  f"{seconds:.2f} s")
    if args.private:
        task = load_task("wdbc", random_state=run)
        seed = fit_seed_model(task, model="mlp", hidden=(args.hidden,))
        pairs = [(c.X, c.y) for c in make_market(task, "label-noise", 4, args.size, 0.5,
                                                 random_state=run)]
        print(f"private, wdbc {seed.architecture.describe()}, 4 candidates of {args.size} "
              f"(parties, TTP, 16 bits, verified twice):")
        for name, options in (("influence", {}), ("finetune", {"steps": 4}),
                              ("newton", {"newton_steps": 2})):
            plain = AppraiserConfig.from_options(names=(name,), **options)
            start = time.perf_counter()
            expected = plain.appraise(name, seed, pairs).values
            plain_seconds = time.perf_counter() - start
            private = AppraiserConfig.from_options(names=(name,), backend="crypten",
                                                   mode="parties", **options)
            appraisal = private.appraise(name, seed, pairs)
            t = appraisal.totals
            error = np.abs(appraisal.values - expected).max() / np.abs(expected).max()
            print(f"  {name:10s} {options}: plaintext {plain_seconds:.2f} s, encrypted "
                  f"{t['private']:.2f} s, wall {t['wall']:.1f} s, {t['bytes'] / 1e6:.1f} MB, "
                  f"{t['rounds']} rounds, max error {error:.3%} of the largest value")


if __name__ == "__main__":
    main()
