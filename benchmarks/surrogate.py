"""The blog's surrogate: rank quality against what it reveals of the model, per kind, size and
score, beside influence.

    python benchmarks/surrogate.py [--runs 3] [--random-state 100] [--markets wdbc,digits-imbalance]

For each market and each surrogate (tree depth, or logistic projected features; the
``test-loss`` and ``agreement`` scores), over runs with seeds seed..seed+runs-1: the mean
Spearman rho of the values against the retrained utility, the surrogate's fidelity (share of
the model owner's test rows where its class is theta_hat's), and what the data owner's rebuilt
model has of theta_hat (explorer.leakage.surrogate.surrogate_reveal: relative error, cosine,
test-prediction agreement; rebuilt from the market's own rows), and the bytes handed over.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd

from explorer.config import AppraiserConfig
from explorer.experiments import appraise_market, market_utilities
from explorer.leakage.surrogate import surrogate_reveal
from explorer.market import make_market
from explorer.metrics import spearman
from explorer.seed import fit_seed_model
from explorer.tasks import load_task

MARKETS = {"wdbc-label-noise": ("wdbc", "label-noise", 30, 30, 0.5),
           "digits-imbalance": ("digits", "imbalance", 20, 100, 1.0),
           "digits-label-noise": ("digits", "label-noise", 20, 100, 1.0)}
SURROGATES = [("tree", s) for s in (2, 3, 4, 6)] + [("logistic", s) for s in (2, 4, 8, 16)]
SCORES = ("test-loss", "agreement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--random-state", type=int, default=100)
    parser.add_argument("--markets", default=",".join(MARKETS))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for label in args.markets.split(","):
        task_name, kind, n, size, hi = MARKETS[label]
        rows = []
        for run in range(args.random_state, args.random_state + args.runs):
            task = load_task(task_name, random_state=run)
            seed = fit_seed_model(task)
            market = make_market(task, kind, n, size, hi, random_state=run)
            truth = market_utilities(seed, market)
            probe = np.vstack([c.X for c in market])  # the data owner's own rows
            inf = appraise_market(seed, market, AppraiserConfig(names=("influence",)), truth)
            rows.append({"surrogate": "influence", "score": "", "run": run,
                         "rho": spearman(inf.value, inf.utility)})
            for skind, ssize in SURROGATES:
                if skind == "logistic" and ssize > seed.n_features:
                    continue
                reveal = None
                for score in SCORES:
                    config = AppraiserConfig(names=("surrogate",), surrogate=skind,
                                             surrogate_size=ssize, surrogate_score=score,
                                             random_state=run)
                    res = appraise_market(seed, market, config, truth)
                    appraiser = config.build("surrogate").fit(seed)
                    # the same surrogate whatever the score: its reveal is measured once
                    reveal = reveal or surrogate_reveal(seed, appraiser, probe)
                    rows.append({"surrogate": f"{skind} {ssize}", "score": score, "run": run,
                                 "rho": spearman(res.value, res.utility),
                                 "fidelity": appraiser.fidelity_,
                                 **reveal, "bytes": appraiser.handed_bytes()})
        table = pd.DataFrame(rows).drop(columns="run").groupby(["surrogate", "score"],
                                                               sort=False).mean()
        print(f"== {label}: {n} candidates of {size} (mean over {args.runs} runs from seed "
              f"{args.random_state})")
        print(table.round(3).to_string(), flush=True)


if __name__ == "__main__":
    main()
