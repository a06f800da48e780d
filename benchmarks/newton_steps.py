"""How many safeguarded Newton steps: rho of `newton` for K = 1..8 against first-order influence
and 16-step fine-tuning, on the markets where first-order influence holds and where it breaks.

    python benchmarks/newton_steps.py [--max-steps 8] [--runs 3] [--random-state 100]

Markets: WDBC label noise up to 1/2 (30 candidates of 30) at lam 0.3 and 0.001; digits
imbalance; the Fig. 6 protocol on mnist-3v5 at the paper's seed:candidate ratio (500:400) and
at the old 105:440. Each line: market, appraiser, rho overall (and in the car-rate ranges for
Fig. 6), mean over runs (seeds seed..seed+runs-1, never the ones the defaults were chosen on).
"""

from __future__ import annotations

import argparse
import warnings

import pandas as pd

from explorer.config import AppraiserConfig
from explorer.experiments import appraise_market, market_utilities
from explorer.market import make_market
from explorer.metrics import fig6_ranges
from explorer.seed import fit_seed_model
from explorer.tasks import load_task

MARKETS = [
    # label, task, task options, kind, n, size, max level, min level, one seed model?
    ("wdbc noise lam 0.3", "wdbc", {"lam": 0.3}, "label-noise", 30, 30, 0.5, 0.0),
    ("wdbc noise lam 0.001", "wdbc", {"lam": 0.001}, "label-noise", 30, 30, 0.5, 0.0),
    ("digits imbalance", "digits", {}, "imbalance", 20, 100, 1.0, 0.0),
    ("fig6 mnist-3v5 500:400", "mnist-3v5", {}, "imbalance", 20, 400, 1.0, 0.05),
    ("fig6 mnist-3v5 105:440", "mnist-3v5", {"seed_size": 105, "test_size": 0.2}, "imbalance",
     20, 440, 1.0, 0.05),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--random-state", type=int, default=100)
    parser.add_argument("--only", help="run only markets whose label contains this")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for label, task_name, task_options, kind, n, size, hi, lo in MARKETS:
        if args.only and args.only not in label:
            continue
        rows = []
        for run in range(args.random_state, args.random_state + args.runs):
            task = load_task(task_name, random_state=run, **task_options)
            seed = fit_seed_model(task)
            market = make_market(task, kind, n, size, hi, lo, random_state=run)
            truth = market_utilities(seed, market)
            config = AppraiserConfig(names=("influence", "finetune"))
            configs = {n: config.with_(names=(n,)) for n in config.names}
            configs.update({f"newton K={k}": config.with_(names=("newton",), newton_steps=k)
                            for k in range(1, args.max_steps + 1)})
            for label_, one in configs.items():
                frame = appraise_market(seed, market, one, truth)
                rows.append({"run": run, "appraiser": label_, **fig6_ranges(frame)})
        table = pd.DataFrame(rows).groupby("appraiser", sort=False).mean().drop(columns="run")
        print(f"== {label}")
        print(table.round(3).to_string())


if __name__ == "__main__":
    main()
