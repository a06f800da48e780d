"""Several data owners in one private session: k = 1, 2, 4, 8 data owners with 10 candidates
each (10k candidates in all), side by side.

WDBC, label-noise candidates of 30 samples (max level 0.5), the influence appraiser, private
backend between real parties with a TTP dealer (the project's defaults: verified values, 16
bits), fresh party processes per session (1 + k + 1 of them). Per k: the session's wall time
(process start-up included), encrypted seconds (slowest party), bytes on the wire (every
process, each byte once; and the model owner's own), rounds of the critical path
(explorer.mpc.wire), sessions (a repeat for candidates whose copies disagreed), with the ratio
to k = 1 and that ratio divided by k (1.0: linear growth in the candidates; below: cheaper than
k separate sessions would be). Then the audit: each data owner's process returned exactly its
own candidates' values (both copies, equal to the model owner's) and no other, and the values
agree with plaintext.

Not a test: figures side by side. Timings depend on the machine and on what else it runs; 8
data owners are 10 processes, which a 2-core machine runs slowly.

    .venv/bin/python benchmarks/sellers.py [--sellers 1,2,4,8] [--per-seller 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from explorer.appraisers import appraise
from explorer.config import AppraiserConfig
from explorer.market import make_market
from explorer.seed import fit_seed_model
from explorer.tasks import load_task

KEYS = ("wall", "session wall", "encrypted s", "bytes", "  model owner", "rounds", "sessions")


def run(seed, pairs, k: int) -> tuple[dict, np.ndarray, list[str]]:
    """One private appraisal of ``pairs`` split among ``k`` data owners: its costs, values and
    the audit's findings (empty when every data owner returned its own values only)."""
    config = AppraiserConfig.from_options(names=("influence",), backend="crypten",
                                          mode="parties", provider="TTP", sellers=k)
    start = time.perf_counter()
    appraisal = config.appraise("influence", seed, pairs)
    wall = time.perf_counter() - start
    totals, account = appraisal.totals, appraisal.account
    costs = {"wall": wall, "session wall": totals["wall"], "encrypted s": totals["private"],
             "bytes": totals["bytes"], "  model owner": account.party_bytes["model owner"],
             "rounds": totals["rounds"], "sessions": totals["sessions"]}
    findings = []
    blocks = np.array_split(np.arange(len(pairs)), k)
    first = appraisal.sessions[0]
    for j, report in enumerate(first.reports[1:], start=1):
        mine = first.values[:, blocks[j - 1]] if k > 1 else first.values
        got = report.values.numpy()
        if got.shape != mine.shape or not np.array_equal(got, mine):
            findings.append(f"data owner {j} returned {got.shape} values, not its own "
                            f"{mine.shape}")
    for seller, block in zip(account.sellers, blocks, strict=True):
        if seller.learned_candidates != tuple(block):
            findings.append(f"{seller.name} learned candidates {seller.learned_candidates}")
    return costs, appraisal.values, findings


def show(results: dict[int, dict]) -> None:
    ks = sorted(results)
    print(f"\n  {'':14}" + "".join(f"{f'k = {k}':>12}" for k in ks))
    for key in KEYS:
        def fmt(x, key=key):
            return f"{x / 1e6:.2f} MB" if "bytes" in key or "owner" in key else \
                f"{x:.0f}" if key in ("rounds", "sessions") else f"{x:.2f} s"
        print(f"  {key:14}" + "".join(f"{fmt(results[k][key]):>12}" for k in ks))
        if key == "sessions":
            continue
        base = results[ks[0]][key]
        print(f"  {'  / k = 1':14}" + "".join(f"{results[k][key] / base:>11.1f}x" for k in ks))
        print(f"  {'  / linear':14}" + "".join(
            f"{results[k][key] / base / (k / ks[0]):>12.2f}" for k in ks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sellers", default="1,2,4,8")
    parser.add_argument("--per-seller", type=int, default=10)
    args = parser.parse_args()
    ks = [int(k) for k in args.sellers.split(",")]
    task = load_task("wdbc", random_state=0)
    seed = fit_seed_model(task)
    market = make_market(task, "label-noise", max(ks) * args.per_seller, 30, 0.5,
                         random_state=0)
    config = AppraiserConfig.from_options(names=("influence",))
    print(f"WDBC, {args.per_seller} label-noise candidates of 30 per data owner, influence, "
          f"real parties with a TTP dealer, fresh processes")
    results = {}
    for k in ks:
        pairs = [(c.X, c.y) for c in market[:k * args.per_seller]]
        expected = appraise(config.build("influence").fit(seed), pairs).values
        costs, values, findings = run(seed, pairs, k)
        results[k] = costs
        error = np.abs(values - expected).max() / np.abs(expected).max()
        audit = "each data owner returned its own values only" if not findings else \
            "AUDIT FAILED: " + "; ".join(findings)
        print(f"  k = {k}: {len(pairs)} candidates, {k + 2} processes, largest error "
              f"{error:.2%} of the largest value; {audit}", flush=True)
    show(results)


if __name__ == "__main__":
    main()
