"""Paper Table 2: influence's Spearman rho against utility on WDBC, 100 candidates of 30, 10 runs.

Prints our mean +/- sd beside the paper's. Not a test: run `make bench` or this file directly.
"""

import sys
import time

from explorer.config import AppraiserConfig
from explorer.sweeps import repeated_rank_correlations

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
# (label, corruption, max level, min level, task options, paper mean, paper sd)
SETTINGS = [
    ("none", "none", 0.0, 0.0, {}, 0.880, 0.081),
    # label flips with probability p/500 and p/200 for p = 1..100
    ("noise up to 1/5", "label-noise", 0.2, 0.002, {}, 0.863, 0.064),
    ("noise up to 1/2", "label-noise", 0.5, 0.005, {}, 0.844, 0.106),
    # the paper drops 10 of the 30 columns from the whole problem, re-drawn each run
    ("missing features", "none", 0.0, 0.0, {"drop_features": 10}, 0.810, 0.213),
]

if __name__ == "__main__":
    print(f"table2 wdbc: 100 candidates of 30, {RUNS} runs, appraisers influence, "
          f"gradient-norm, finetune (lr 0.1, 16 full-batch steps)")
    for label, kind, hi, lo, task_options, mean, sd in SETTINGS:
        start = time.perf_counter()
        frame = repeated_rank_correlations("wdbc", kind, 100, 30, hi, lo, runs=RUNS,
                                           config=AppraiserConfig(
                                               names=("influence", "gradient-norm", "finetune")),
                                           task_options=task_options)
        stats = frame.groupby("appraiser", sort=False)["spearman"].agg(["mean", "std"])
        inf = stats.loc["influence"]
        others = "  ".join(f"{a} {r['mean']:+.3f}" for a, r in stats.iterrows()
                           if a != "influence")
        print(f"table2 {label:17s} influence {inf['mean']:.3f} +/- {inf['std']:.3f} "
              f"(paper {mean:.3f} +/- {sd:.3f})   [{others}]  {time.perf_counter() - start:.0f} s",
              flush=True)
