"""Greedy acquisition between real parties: one private session per round against one session
for all the rounds (explorer.mpc.acquisition).

WDBC, 20 label-noise candidates of 30 (max level 0.5), 5 rounds of greedy acquisition by
influence, private backend in ``parties`` mode with a TTP dealer (the project's defaults). Per
round: each round a whole private appraisal of the remaining candidates
(``AppraiserConfig.appraise``, as explorer.acquisition did before), the model owner refitting in
between. One session: ``PrivateRunner.acquire``, the candidates entered once. Side by side, with
the ratio per-round / one-session, measured in the same run:

- wall seconds: the whole acquisition as the caller waits for it (processes, refits, all);
- session wall: the sessions' own wall time, process start-up included;
- encrypted seconds (slowest party; in one session they include the model owner's refits in
  the clear between rounds, shown on the next line, which the per-round sessions do not),
  bytes on the wire (model owner, data owner and dealer,
  each byte once), rounds of the critical path (explorer.mpc.wire), sessions.

Both with fresh party processes per session, then both with warm ones (``--skip-warm`` to skip;
explorer.mpc.launcher.warm_parties). Both must buy the same candidates; the script says so.
Not a test: figures side by side. Timings depend on the machine and on what else it runs.

    .venv/bin/python benchmarks/acquisition_costs.py [--candidates 20] [--rounds 5]
        [--skip-warm]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np

from explorer.config import AppraiserConfig
from explorer.market import make_market
from explorer.mpc.session import warm_sessions
from explorer.seed import fit_seed_model
from explorer.tasks import load_task
from explorer.utility import absorb

KEYS = ("wall", "session wall", "encrypted s", "  of it refits", "bytes", "rounds", "sessions")


def per_round(config: AppraiserConfig, seed, pairs, rounds: int) -> tuple[list[int], dict]:
    """Greedy acquisition with one private appraisal session per round."""
    start = time.perf_counter()
    current, remaining, picks = seed, list(range(len(pairs))), []
    cost = dict.fromkeys(KEYS[1:], 0.0)  # the refits happen between sessions: 0 in them
    for _ in range(rounds):
        appraisal = config.appraise("influence", current, [pairs[i] for i in remaining])
        for key, total in (("session wall", "wall"), ("encrypted s", "private"),
                           ("bytes", "bytes"), ("rounds", "rounds"), ("sessions", "sessions")):
            cost[key] += appraisal.totals[total]
        picks.append(remaining.pop(int(np.argmax(appraisal.values))))
        current = absorb(current, *pairs[picks[-1]])
    return picks, {"wall": time.perf_counter() - start, **cost}


def one_session(config: AppraiserConfig, seed, pairs, rounds: int) -> tuple[list[int], dict]:
    """Greedy acquisition with every round in one private session."""
    start = time.perf_counter()
    got = config.runner().acquire(config.build("influence").fit(seed), pairs, rounds)
    totals = got.totals
    return list(got.picks), {"wall": time.perf_counter() - start,
                             "session wall": totals["wall"], "encrypted s": totals["private"],
                             "  of it refits": totals["refits"],
                             "bytes": totals["bytes"], "rounds": totals["rounds"],
                             "sessions": totals["sessions"]}


def show(label: str, before: dict, after: dict) -> None:
    print(f"\n{label}")
    print(f"  {'':14}{'per round':>14}{'one session':>14}{'ratio':>9}")
    for key in KEYS:
        a, b = before[key], after[key]
        fmt = (lambda x: f"{x / 1e6:.2f} MB") if key == "bytes" else \
            (lambda x: f"{x:.0f}") if key in ("rounds", "sessions") else (lambda x: f"{x:.2f} s")
        ratio = f"{a / b:.1f}x" if a and b else "-"
        print(f"  {key:14}{fmt(a):>14}{fmt(b):>14}{ratio:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-warm", action="store_true")
    args = parser.parse_args()
    task = load_task("wdbc", random_state=0)
    seed = fit_seed_model(task)
    market = make_market(task, "label-noise", args.candidates, 30, 0.5, random_state=0)
    pairs = [(c.X, c.y) for c in market]
    config = AppraiserConfig.from_options(backend="crypten", mode="parties", provider="TTP")
    print(f"WDBC, {args.candidates} label-noise candidates of 30, {args.rounds} rounds of greedy "
          f"acquisition by influence, real parties with a TTP dealer")
    for label, context in (("fresh processes per session", contextlib.nullcontext),
                           *(() if args.skip_warm else
                             (("warm processes", lambda: warm_sessions("TTP")),))):
        with context():
            picks_before, before = per_round(config, seed, pairs, args.rounds)
            picks_after, after = one_session(config, seed, pairs, args.rounds)
        show(label, before, after)
        same = "the same" if picks_before == picks_after else "DIFFERENT"
        print(f"  bought: {picks_before} per round, {picks_after} in one session ({same})")


if __name__ == "__main__":
    main()
