"""Party processes kept for a dashboard kernel's life against one-session processes.

1. ``--sessions`` (10) back-to-back private influence sessions on WDBC (20 label-noise
   candidates of 30, levels 0 to 0.5; TTP dealer, 16 bits, verified: the defaults) with fresh
   processes for every session, with the warm pool (explorer.mpc.launcher.warm_parties: each
   process imported ahead, serving one session) and with a kernel-lived PartySet
   (explorer.mpc.launcher.kernel_parties: the same three processes serve every session).
   Each mode's clock starts as it is entered (the pool and the set start their processes
   then), so its total includes its own start-up; also the median session's wall time. One
   untimed session first fills the launching process's rehearsal and draw caches for all three.
2. ``explorer.jobs.run_appraisal`` for the dashboard's default real-parties run (task wdbc,
   20 candidates of 30, levels 0 to 0.5, influence + gradient-norm, crypten parties TTP,
   greedy acquisition's rounds): as today (a warm pool per run; the first and a second Run),
   then with the kernel's set (its first Run, which starts the set, and a second Run).
3. Resident memory (VmRSS from /proc) of this process (the kernel) and of the set's idle
   party processes.

Not a test: figures side by side, ratios measured in the same run; timings depend on the
machine and on what else it runs.

    .venv/bin/python benchmarks/kernel_parties.py [--sessions 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from explorer.config import AppraiserConfig
from explorer.jobs import RunSnapshot, run_appraisal
from explorer.market import make_market
from explorer.mpc.launcher import kept_parties, kernel_parties
from explorer.mpc.session import PARTY_MODULES, run_session, session_inputs, warm_sessions
from explorer.seed import fit_seed_model
from explorer.tasks import load_task

CANDIDATES, SIZE, MAX_LEVEL = 20, 30, 0.5
DASHBOARD = {"names": ("influence", "gradient-norm"), "backend": "crypten", "mode": "parties",
             "provider": "TTP"}
RATE, FLAT, THRESHOLD_SD = 1000.0, 50.0, 3.0  # the dashboard's control defaults


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of process ``pid`` in MB: all of it (VmRSS) or its own, not shared
    with other processes through the libraries' file pages (RssAnon); 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sessions(run: Callable[[], float], n: int) -> tuple[float, float]:
    """Total wall seconds of ``n`` back-to-back sessions and the median session's wall."""
    start, walls = time.perf_counter(), []
    for _ in range(n):
        walls.append(run())
    return time.perf_counter() - start, statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args()
    if args.sessions < 1:
        parser.error("--sessions must be at least 1.")

    task = load_task("wdbc", random_state=0)
    seed = fit_seed_model(task)
    market = make_market(task, "label-noise", CANDIDATES, SIZE, MAX_LEVEL, 0.0, random_state=0)
    config = AppraiserConfig.from_options(**DASHBOARD)
    appraiser = config.build("influence").fit(seed)
    spec, mo, do = session_inputs(appraiser, [(c.X, c.y) for c in market], config.mpc,
                                  config.defences)

    def one() -> float:
        return run_session(spec, mo, do, provider="TTP").wall_seconds

    one()  # fills the rehearsal and draw caches for every mode below
    n = args.sessions
    fresh = sessions(one, n)
    with warm_sessions("TTP"):
        warm = sessions(one, n)
    with kernel_parties(preload=PARTY_MODULES):
        kernel = sessions(one, n)
    print(f"{n} back-to-back influence sessions, WDBC {CANDIDATES} candidates of {SIZE} "
          f"(TTP, 16 bits, verified):")
    print(f"  {'':28s} {'total':>9s} {'median session':>15s} {'total vs kernel set':>20s}")
    for label, (total, median) in (("fresh processes", fresh), ("warm pool", warm),
                                   ("kernel-lived party set", kernel)):
        print(f"  {label:28s} {total:8.2f}s {median:14.3f}s {total / kernel[0]:19.1f}x",
              flush=True)

    snapshot = RunSnapshot.take("wdbc", task, seed, market, config, RATE, FLAT, THRESHOLD_SD)

    def appraisal() -> float:
        start = time.perf_counter()
        run_appraisal(snapshot)
        return time.perf_counter() - start

    before = [appraisal(), appraisal()]  # a warm pool per run, as the CLI and the dashboard
    kernel_rss = rss_mb(os.getpid())
    config.keep_processes()  # the dashboard's first Run with real parties does this
    after = [appraisal(), appraisal()]
    party_set = kept_parties()
    print(f"run_appraisal, the dashboard's default real-parties run ({snapshot.rounds} "
          f"acquisition rounds):")
    print(f"  {'':28s} {'first Run':>10s} {'second Run':>11s}")
    print(f"  {'warm pool per run (before)':28s} {before[0]:9.2f}s {before[1]:10.2f}s")
    print(f"  {'kernel-lived set (after)':28s} {after[0]:9.2f}s {after[1]:10.2f}s")
    print(f"  {'ratio before / after':28s} {before[0] / after[0]:9.1f}x "
          f"{before[1] / after[1]:10.1f}x")
    print(f"resident memory (VmRSS; in brackets RssAnon, not shared through the libraries' "
          f"pages): kernel {kernel_rss:.0f} MB before keeping the set, "
          f"{rss_mb(os.getpid()):.0f} MB after ({rss_mb(os.getpid(), 'RssAnon'):.0f} MB)")
    for field in ("VmRSS", "RssAnon"):
        parties = [rss_mb(pid, field) for pid in party_set.pids]
        print(f"  the set's {len(parties)} idle processes, {field}: "
              f"{' + '.join(f'{r:.0f}' for r in parties)} = {sum(parties):.0f} MB")
    party_set.close()


if __name__ == "__main__":
    main()
