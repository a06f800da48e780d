"""Paper Table 1 (influence column): MNIST, labels 1 and 7 flipped with probability p/10 in
candidate p = 1..10; Spearman rho of influence against utility and against the noise level.

Reads ../shared/data/mnist (or --data-dir). Prints ours beside the paper's 0.96.
"""

import argparse
import time

from explorer.config import AppraiserConfig
from explorer.sweeps import repeated_rank_correlations

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    start = time.perf_counter()
    # 10,000 digits: 2,000 test, 600 seed (the paper's D_tr), 7,400 pool -> 10 candidates of 740
    frame = repeated_rank_correlations(
        "mnist", "label-noise", 10, 740, max_level=1.0, min_level=0.1, runs=args.runs,
        config=AppraiserConfig(names=("influence", "gradient-norm", "finetune")),
        task_options={"data_dir": args.data_dir} if args.data_dir else None)
    stats = frame.groupby("appraiser", sort=False)[["spearman", "spearman_level"]].agg(
        ["mean", "std"])
    print(f"table1 mnist: 10 candidates of 740, 1<->7 flipped with p/10, {args.runs} runs, "
          f"seed accuracy {frame.seed_accuracy.mean():.3f}, {time.perf_counter() - start:.0f} s")
    for name, r in stats.iterrows():
        paper = "  (paper 0.96 vs noise level)" if name == "influence" else ""
        print(f"table1 {name:13s} rho vs utility {r[('spearman', 'mean')]:+.3f} +/- "
              f"{r[('spearman', 'std')]:.3f}   rho vs -level "
              f"{-r[('spearman_level', 'mean')]:+.3f} +/- {r[('spearman_level', 'std')]:.3f}"
              f"{paper}")
