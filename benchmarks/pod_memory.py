"""One page's real-parties run inside a pod's memory limit, imposed with a memory cgroup.

Binder gives a pod 2 GB and kills what passes it. This runs what a dashboard page's kernel runs
for one real-parties Run (explorer.jobs.run_appraisal: ground truth, influence and gradient
norm between real parties with the TTP dealer, greedy acquisition), in a child process placed
in a new memory cgroup limited to ``--limit-mb`` (default 2048) before it imports anything, so
the kernel, its party processes and everything they start are counted by the kernel's own
accounting, as in a pod. Two ways of running the parties, each in its own cgroup:

- ``kept``: the dashboard's (config.keep_processes): the page keeps one party set, forked from a
  process that imported torch and CrypTen once (explorer.mpc.forker);
- ``fresh``: the command line's: a warm pool of processes that each import everything
  themselves and serve one session.

For each: the run's seconds, the cgroup's peak usage (v1 memory.max_usage_in_bytes, v2
memory.peak), how often an allocation met the limit (the kernel then reclaims; failcnt or
memory.events "max") and whether anything was killed for memory (oom_kill), and the tree's
proportional set sizes after the run (explorer.memory). The cgroup counts each page once,
including file pages the run was first to read; libraries already cached by other processes on
the machine are charged to those, so a pod that starts cold holds up to their size more.

Needs root (or a delegated cgroup) on Linux; otherwise it says so and exits with status 2.

    .venv/bin/python benchmarks/pod_memory.py [--task mnist] [--candidates 20] [--size 100]
        [--limit-mb 2048] [--ways kept,fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SHARED_MNIST = PROJECT.parent / "shared" / "data" / "mnist"
WAYS = ("kept", "fresh")
V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


class Cgroup:
    """A new memory cgroup limited to ``limit_mb`` (v1 or v2, whichever this machine mounts)."""

    def __init__(self, name: str, limit_mb: int):
        self.v1 = (V1 / "cgroup.procs").exists()
        self.path = (V1 if self.v1 else V2) / name
        self.path.mkdir()
        limit = str(limit_mb << 20)
        (self.path / ("memory.limit_in_bytes" if self.v1 else "memory.max")).write_text(limit)

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def read(self, name: str) -> str:
        try:
            return (self.path / name).read_text().strip()
        except OSError:
            return ""

    def figures(self) -> dict[str, float]:
        """Peak usage in MB, how often the limit was met, processes killed for memory."""
        if self.v1:
            oom = dict(line.split() for line in self.read("memory.oom_control").splitlines())
            return {"peak_mb": int(self.read("memory.max_usage_in_bytes") or 0) / 2**20,
                    "limit_met": int(self.read("memory.failcnt") or 0),
                    "oom_killed": int(oom.get("oom_kill", 0))}
        events = dict(line.split() for line in self.read("memory.events").splitlines())
        peak = self.read("memory.peak")
        return {"peak_mb": int(peak) / 2**20 if peak else float("nan"),
                "limit_met": int(events.get("max", 0)),
                "oom_killed": int(events.get("oom_kill", 0))}

    def remove(self) -> None:
        for _ in range(50):  # the last processes may still be exiting
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def inside(args) -> None:
    """The page's run, in this process (already in the cgroup); prints one JSON line."""
    sys.stdin.readline()  # placed in the cgroup before anything is imported
    from explorer.config import AppraiserConfig
    from explorer.jobs import RunSnapshot, run_appraisal
    from explorer.market import make_market
    from explorer.memory import children_of, process_mb
    from explorer.seed import fit_seed_model
    from explorer.tasks import load_task

    options = ({"data_dir": args.data_dir, "allow_download": False}
               if args.task == "mnist" else {})
    task = load_task(args.task, random_state=0, **options)
    seed = fit_seed_model(task)
    market = make_market(task, "label-noise", args.candidates, args.size, 0.5, 0.0,
                         random_state=0)
    config = AppraiserConfig.from_options(names=("influence", "gradient-norm"),
                                          backend="crypten", mode="parties", provider="TTP")
    if args.inside == "kept":
        config.keep_processes()
    start = time.perf_counter()
    run_appraisal(RunSnapshot.take(args.task, task, seed, market, config, 1000.0, 50.0))
    seconds = time.perf_counter() - start
    tree = [os.getpid(), *children_of(os.getpid())]
    print(json.dumps({"seconds": seconds, "tree_mb": sum(process_mb(p) for p in tree),
                      "kernel_mb": process_mb(os.getpid()), "processes": len(tree)}),
          flush=True)


def measure(way: str, args) -> dict:
    group = Cgroup(f"appraisal-pod-{os.getpid()}-{way}", args.limit_mb)
    try:
        child = subprocess.Popen(
            [sys.executable, __file__, "--inside", way, "--task", args.task, "--candidates",
             str(args.candidates), "--size", str(args.size), "--data-dir", str(args.data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        group.add(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        out, _ = child.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        figures = json.loads(lines[-1]) if lines else {}
        return {**figures, **group.figures(), "exit": child.returncode}
    finally:
        group.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("wdbc", "mnist", "digits"), default="mnist")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--limit-mb", type=int, default=2048)
    parser.add_argument("--ways", default="kept,fresh",
                        help=f"comma-separated, of {', '.join(WAYS)}")
    parser.add_argument("--data-dir", default=str(SHARED_MNIST))
    parser.add_argument("--inside", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args)
        return
    ways = tuple(w.strip() for w in args.ways.split(","))
    if not set(ways) <= set(WAYS):
        parser.error(f"--ways takes {', '.join(WAYS)}, not {args.ways!r}")
    if args.candidates < 1 or args.size < 1 or args.limit_mb < 256:
        parser.error("--candidates and --size must be at least 1 and --limit-mb at least 256")
    if not sys.platform.startswith("linux") or not os.access(
            V1 if (V1 / "cgroup.procs").exists() else V2, os.W_OK):
        parser.error("a memory cgroup cannot be made here: run as root on Linux (or in a "
                     "cgroup delegated to this user)")
    print(f"one page's real-parties run ({args.task}, {args.candidates} candidates of "
          f"{args.size}, influence and gradient norm, TTP dealer, acquisition) in a memory "
          f"cgroup limited to {args.limit_mb} MB; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    print(f"{'parties':8s} {'run':>8s} {'peak (cgroup)':>14s} {'limit met':>10s} "
          f"{'killed':>7s} {'tree after (PSS)':>17s} {'kernel':>8s} exit")
    for way in ways:
        r = measure(way, args)
        print(f"{way:8s} {r.get('seconds', float('nan')):7.1f}s {r['peak_mb']:11.0f} MB "
              f"{r['limit_met']:10d} {r['oom_killed']:7d} {r.get('tree_mb', float('nan')):14.0f}"
              f" MB {r.get('kernel_mb', float('nan')):5.0f} MB {r['exit']}", flush=True)


if __name__ == "__main__":
    main()
