"""Seed-model families side by side on MNIST: the logistic model, an L2 network 784-64-10 (mlp)
and that network with its hidden layers frozen (last-layer).

1. The seed models on MNIST's 600 seed digits (task ``mnist``, 2,000 test digits), fitted on the
   first random state: test accuracy, test loss (nats), fit seconds, final gradient norm of J
   against the tolerance it was fitted to. The logistic model takes the task's ``lam``, the
   network the task's ``network_lam``; the last-layer model refits the network's head on its
   frozen hidden layers (its seconds are the head's alone).
2. Spearman's rho of every appraiser each family has (explorer.appraisers.FAMILIES, whatever it
   holds when this runs; default hyper-parameters) against the retrained utility
   (explorer.utility.ground_truth: for the network a warm-started retrain with the seed model's
   optimiser and tolerance), on MNIST label noise (classes 1 and 7 swapped with probability
   p/10 in candidate p, as benchmarks/table1_mnist.py), MNIST imbalance (the share of class 0
   from 0 to 1) and digits label noise (1 and 7, levels 0.1..1), for each random state asked
   (each state draws the task's split, the network's start and the market). Beside: the
   targets newton >= 0.9 and influence >= 0.8 on MNIST label noise with the mlp.
3. What the mlp's influence costs between real parties (CrypTen, mode parties, TTP dealer, 16
   precision bits, verified: the project's defaults; warm processes,
   explorer.mpc.session.warm_sessions) on an MNIST market of 20 label-noise candidates of 500:
   encrypted seconds, bytes on the wire, rounds of the critical path, beside (a) the limit of
   benchmarks/limit.py's ``network_influence_limit`` on the link measured in this run and (b)
   the logistic model's private influence on the same market in the same run, with the ratios
   and the targets (at most 10x the limit, at most 5x the logistic model's encrypted seconds).
   Private values are compared with plaintext's.

Every figure is measured in this run; timings depend on what else the machine runs (the load
average is printed). Not a test: figures beside targets.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/network_seed.py [--quick] [--states 11,12]
        [--mnist-states 11] [--mnist-candidates 10] [--imbalance-candidates 10]
        [--mnist-size 250] [--markets mnist-label-noise,...] [--skip-rho] [--skip-private]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from limit import (
    influence_limit,
    measure_activation,
    measure_link,
    measure_nonlinearity,
    network_influence_limit,
)
from private_costs import mb, secs, times

from explorer.appraisers import FAMILIES
from explorer.config import AppraiserConfig
from explorer.errors import ExplorerError
from explorer.experiments import market_utilities
from explorer.market import make_market
from explorer.metrics import spearman
from explorer.mpc.session import warm_sessions
from explorer.seed import fit_seed_model, freeze_hidden
from explorer.tasks import load_task

PROJECT = Path(__file__).resolve().parents[1]
SHARED_MNIST = PROJECT.parent / "shared" / "data" / "mnist"
HIDDEN = (64,)
RHO_TARGETS = {"newton": 0.9, "influence": 0.8}  # mlp on MNIST label noise
LIMIT_TARGET = 10.0  # mlp private influence at most 10x its limit (encrypted seconds)
LOGISTIC_TARGET = 5.0  # and at most 5x the logistic model's
NONLINEARITY_ROWS = 20_000  # the softmax is measured on at most this many rows
ACTIVATION_ELEMENTS = 200_000  # the hidden activation on at most this many elements
WARM_PAUSE = 10.0  # before each timed warm session: the pool refills (benchmarks/private_costs)


@dataclass(frozen=True)
class MarketSpec:
    label: str
    task: str
    kind: str
    max_level: float
    min_level: float


MARKETS = ("mnist-label-noise", "mnist-imbalance", "digits-label-noise")


def market_specs(args) -> list[tuple[MarketSpec, int, int, tuple[int, ...]]]:
    """The markets of part 2 asked for (--markets), with their candidate counts, sizes and
    random states."""
    specs = {"mnist-label-noise": (MarketSpec("mnist label-noise", "mnist", "label-noise", 1.0,
                                              0.1),
                                   args.mnist_candidates, args.mnist_size, args.mnist_states),
             "mnist-imbalance": (MarketSpec("mnist imbalance", "mnist", "imbalance", 1.0, 0.0),
                                 args.imbalance_candidates, args.mnist_size, args.mnist_states),
             "digits-label-noise": (MarketSpec("digits label-noise", "digits", "label-noise",
                                               1.0, 0.1),
                                    args.digits_candidates, args.digits_size, args.states)}
    return [specs[name] for name in args.markets]


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


class Seeds:
    """The three families' seed models of each (task, random state), fitted once and timed."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.tasks: dict = {}
        self.models: dict = {}
        self.seconds: dict = {}

    def task(self, name: str, state: int):
        if (name, state) not in self.tasks:
            options = {"data_dir": self.data_dir, "allow_download": False} \
                if name == "mnist" else {}
            self.tasks[name, state] = load_task(name, random_state=state, **options)
        return self.tasks[name, state]

    def get(self, name: str, state: int) -> dict:
        if (name, state) not in self.models:
            task = self.task(name, state)
            start = time.perf_counter()
            logistic = fit_seed_model(task)
            t_logistic = time.perf_counter() - start
            start = time.perf_counter()
            mlp = fit_seed_model(task, model="mlp", hidden=HIDDEN, random_state=state)
            t_mlp = time.perf_counter() - start
            start = time.perf_counter()
            last = freeze_hidden(mlp)  # = fit_seed_model(task, "last-layer", ...) without refit
            t_last = time.perf_counter() - start
            self.models[name, state] = {"logistic": logistic, "mlp": mlp, "last-layer": last}
            self.seconds[name, state] = {"logistic": t_logistic, "mlp": t_mlp,
                                         "last-layer": t_last}
            print(f"[{name} state {state}: seed models fitted in {secs(t_logistic)}, "
                  f"{secs(t_mlp)}, {secs(t_last)}]", flush=True)
        return self.models[name, state]


def part_seeds(seeds: Seeds, state: int) -> None:
    """Part 1: the three seed models of MNIST at ``state``."""
    models, fit_s = seeds.get("mnist", state), seeds.seconds["mnist", state]
    task = seeds.task("mnist", state)
    print(f"\n1. seed models on MNIST, random state {state}: {len(task.y_train)} seed digits, "
          f"{len(task.y_test)} test digits, 784 features, 10 classes; gradient norm of J at the "
          f"fit (each fitted to 1e-8 relative to its starting gradient)")
    print(f"{'family':11s} {'model':24s} {'params':>7s} {'lam':>5s} {'test acc':>8s} "
          f"{'test loss':>9s} {'fit':>7s} {'grad norm':>9s} converged")
    for family, seed in models.items():
        if family == "logistic":
            what, params = "linear 784-10 softmax", seed.theta.numel()
        elif family == "mlp":
            arch = seed.architecture
            what, params = f"{arch.describe()} {arch.activation}", arch.n_params
        else:
            what, params = f"head on {HIDDEN[0]} frozen units", seed.head.theta.numel()
        note = " (head only; + the mlp's fit)" if family == "last-layer" else ""
        print(f"{family:11s} {what:24s} {params:7d} {seed.lam:5g} {seed.test_accuracy:8.3f} "
              f"{seed.test_loss:9.4f} {secs(fit_s[family]):>7s} {seed.grad_norm:9.1e} "
              f"{seed.converged}{note}", flush=True)


def appraise_family(seed, family: str, pairs, utility: np.ndarray) -> dict[str, dict]:
    """rho against ``utility`` of every appraiser of ``family`` (default hyper-parameters,
    plaintext), with its seconds; an appraiser that refuses gives its sentence instead."""
    out = {}
    for name in FAMILIES[family]:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                values = AppraiserConfig(names=(name,)).appraise(name, seed, pairs).values
            except ExplorerError as exc:
                out[name] = {"rho": np.nan, "error": str(exc), "notes": [],
                             "seconds": time.perf_counter() - start}
                continue
        out[name] = {"rho": spearman(values, utility), "error": "",
                     "notes": sorted({str(w.message) for w in caught}),
                     "seconds": time.perf_counter() - start}
    return out


def part_rho(seeds: Seeds, args) -> pd.DataFrame:
    """Part 2: rho of every appraiser of every family on each market and state."""
    rows = []
    for spec, n, size, states in market_specs(args):
        print(f"\n2. {spec.label}: {n} candidates of {size}, levels {spec.min_level:g}.."
              f"{spec.max_level:g}, random states {', '.join(map(str, states))}", flush=True)
        for state in states:
            task = seeds.task(spec.task, state)
            models = seeds.get(spec.task, state)
            market = make_market(task, spec.kind, n, size, spec.max_level, spec.min_level,
                                 random_state=state)
            pairs = [(c.X, c.y) for c in market]
            level = np.array([c.level for c in market])
            for family, seed in models.items():
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    truth = market_utilities(seed, market)
                utility = truth["utility"].to_numpy()
                truth_note = sorted({str(w.message) for w in caught})
                base = {"market": spec.label, "state": state, "family": family}
                rows.append({**base, "appraiser": "truth vs -level",
                             "rho": spearman(utility, -level), "error": "",
                             "notes": truth_note,
                             "seconds": truth["truth_seconds"].sum()})
                for name, r in appraise_family(seed, family, pairs, utility).items():
                    rows.append({**base, "appraiser": name, **r})
                print(f"[{spec.label} state {state} {family}: ground truth "
                      f"{secs(truth['truth_seconds'].sum())} ({secs(truth['truth_seconds'].mean())}"
                      f" a candidate)]", flush=True)
        print_rho_table(pd.DataFrame(rows), spec.label, states)
    return pd.DataFrame(rows)


def print_rho_table(frame: pd.DataFrame, label: str, states) -> None:
    """One market's table: appraisers down, families across; each cell the rho of every state
    and their mean."""
    frame = frame[frame.market == label]
    families = list(FAMILIES)
    names = ["truth vs -level", *dict.fromkeys(n for f in families for n in FAMILIES[f])]
    width = 8 * len(states) + 10
    print(f"{label}: Spearman rho against the retrained utility, "
          f"{' / '.join(f'state {s}' for s in states)} (mean)")
    print(f"{'':16s}" + "".join(f"{f:>{width}s}" for f in families))
    notes = []
    for name in names:
        cells = []
        for family in families:
            part = frame[(frame.family == family) & (frame.appraiser == name)]
            if part.empty:
                cells.append("not defined")
                continue
            shown = []
            for _, r in part.iterrows():
                shown.append("error" if r["error"] else f"{r['rho']:+.2f}")
                if r["error"]:
                    notes.append(f"{family} {name} state {r['state']}: {r['error']}")
                notes.extend(f"{family} {name} state {r['state']}: {n}" for n in r["notes"])
            mean = part["rho"].mean()
            cells.append(" / ".join(shown) + (f" ({mean:+.2f})" if len(part) > 1 else ""))
        print(f"{name:16s}" + "".join(f"{c:>{width}s}" for c in cells))
    secs_row = []
    for family in families:
        part = frame[(frame.family == family) & (frame.appraiser == "truth vs -level")]
        secs_row.append(secs(part["seconds"].sum()))
    print(f"{'truth seconds':16s}" + "".join(f"{c:>{width}s}" for c in secs_row))
    for note in dict.fromkeys(notes):
        print(f"  note: {note}")
    if label == "mnist label-noise":
        mlp = frame[frame.family == "mlp"]
        for name, target in RHO_TARGETS.items():
            part = mlp[mlp.appraiser == name]
            if part.empty:
                print(f"  target mlp {name} rho >= {target}: not measured ({name} is not "
                      f"defined for the mlp family in this build)")
            else:
                mean = part["rho"].mean()
                print(f"  target mlp {name} rho >= {target}: mean {mean:+.3f} "
                      f"({met(bool(mean >= target))})")
    print(end="", flush=True)


def private_session(config: AppraiserConfig, seed, pairs, repeats: int):
    """The median of ``repeats`` timed sessions on warm processes (each after a pause for the
    pool's refill), and the revealed values of the last."""
    sessions, values = [], None
    for _ in range(repeats):
        time.sleep(WARM_PAUSE)
        appraisal = config.appraise("influence", seed, pairs)
        sessions.append(appraisal.last_session)
        values = appraisal.values
    middle = sorted(sessions, key=lambda s: s.private_seconds)[len(sessions) // 2]
    return middle, values


def part_private(seeds: Seeds, args) -> None:
    """Part 3: mlp influence between real parties against its limit and against the logistic
    model's on the same market."""
    state = args.mnist_states[0]
    task, models = seeds.task("mnist", state), seeds.get("mnist", state)
    mlp, logistic = models["mlp"], models["logistic"]
    n, size = args.private_candidates, args.private_size
    market = make_market(task, "label-noise", n, size, max_level=0.5, random_state=state)
    pairs = [(c.X, c.y) for c in market]
    config = AppraiserConfig.from_options(names=("influence",), backend="crypten",
                                          mode="parties", timeout=args.timeout)
    copies = 2 if config.mpc.verify else 1
    d1, h, C = task.n_features + 1, HIDDEN[0], mlp.architecture.n_outputs
    rows = n * size
    print(f"\n3. private influence between real parties: MNIST {n} label-noise candidates of "
          f"{size} (up to 0.5), random state {state}; CrypTen, TTP dealer, "
          f"{config.mpc.precision_bits} precision bits, {copies} copies (verified), warm "
          f"processes, median of {args.repeats} timed session(s) each", flush=True)
    link = measure_link(args.timeout)
    act_rows = min(rows, ACTIVATION_ELEMENTS // h)
    act = measure_activation(act_rows, h, mlp.architecture.activation, timeout=args.timeout)
    soft_rows = min(rows, NONLINEARITY_ROWS)
    softmax = measure_nonlinearity(soft_rows, C, timeout=args.timeout)
    net_limit = network_influence_limit(n, size, d1, h, C, copies, link, act, softmax)
    log_limit = influence_limit(n, size, d1, C, copies, link, softmax)
    print(f"link ({link.transport}): round trip {link.rtt_seconds * 1e3:.3f} ms, bandwidth "
          f"{link.bandwidth / 1e9:.2f} GB/s; {act.name} and its slope {act.rounds} rounds, "
          f"{act.bytes_per_element:.0f} bytes an element (measured on {act_rows} x {h}); "
          f"softmax {softmax.rounds} rounds, {softmax.bytes_per_row:.0f} bytes a row "
          f"(measured on {soft_rows} rows)", flush=True)

    plain = {f: AppraiserConfig(names=("influence",)).appraise("influence", s, pairs).values
             for f, s in (("mlp", mlp), ("logistic", logistic))}
    with warm_sessions("TTP"):
        config.appraise("influence", logistic, pairs)  # takes the pool's first processes
        log_s, log_v = private_session(config, logistic, pairs, args.repeats)
        mlp_s, mlp_v = private_session(config, mlp, pairs, args.repeats)
    for family, values in (("mlp", mlp_v), ("logistic", log_v)):
        q = plain[family]
        err = np.abs(values - q).max() / np.abs(q).max()
        print(f"{family} private against plaintext: rho {spearman(values, q):.4f}, max |error| "
              f"{err:.1e} of max |value|")
    print(f"{'':34s} {'mlp 784-64-10':>14s} {'mlp limit':>10s} {'ratio':>7s} "
          f"{'logistic':>10s} {'mlp/logistic':>13s} {'logistic limit':>15s}")
    lines = [("encrypted seconds", secs(mlp_s.private_seconds), secs(net_limit.seconds),
              mlp_s.private_seconds / net_limit.seconds, secs(log_s.private_seconds),
              mlp_s.private_seconds / log_s.private_seconds, secs(log_limit.seconds)),
             ("session wall (warm processes)", secs(mlp_s.wall_seconds), secs(net_limit.seconds),
              mlp_s.wall_seconds / net_limit.seconds, secs(log_s.wall_seconds),
              mlp_s.wall_seconds / log_s.wall_seconds, secs(log_limit.seconds)),
             ("bytes on the wire", mb(mlp_s.bytes), mb(net_limit.bytes),
              mlp_s.bytes / net_limit.bytes, mb(log_s.bytes), mlp_s.bytes / log_s.bytes,
              mb(log_limit.bytes)),
             ("rounds (critical path)", f"{mlp_s.rounds}", f"{net_limit.rounds}",
              mlp_s.rounds / net_limit.rounds, f"{log_s.rounds}", mlp_s.rounds / log_s.rounds,
              f"{log_limit.rounds}")]
    for name, got, lim, ratio, log_got, log_ratio, log_lim in lines:
        print(f"{name:34s} {got:>14s} {lim:>10s} {times(ratio):>7s} {log_got:>10s} "
              f"{times(log_ratio):>13s} {log_lim:>15s}")
    to_limit = mlp_s.private_seconds / net_limit.seconds
    to_logistic = mlp_s.private_seconds / log_s.private_seconds
    print(f"  target mlp encrypted seconds <= {LIMIT_TARGET:.0f}x the limit: "
          f"{times(to_limit)} ({met(to_limit <= LIMIT_TARGET)})")
    print(f"  target mlp encrypted seconds <= {LOGISTIC_TARGET:.0f}x the logistic model's: "
          f"{times(to_logistic)} ({met(to_logistic <= LOGISTIC_TARGET)})")
    print(f"  (logistic influence against its own limit: "
          f"{times(log_s.private_seconds / log_limit.seconds)} in encrypted seconds)",
          flush=True)


def states_list(text: str) -> tuple[int, ...]:
    try:
        states = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"random states are whole numbers separated by "
                                         f"commas, e.g. 11,12; got {text!r}") from None
    if not states or any(s < 0 for s in states):
        raise argparse.ArgumentTypeError(f"give at least one non-negative random state, "
                                         f"got {text!r}")
    return states


def markets_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(","))
    unknown = [n for n in names if n not in MARKETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"markets are {', '.join(MARKETS)}; got {text!r}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Seed-model families side by side on MNIST (logistic, mlp 784-64-10, "
                    "last-layer): the seed models, every appraiser's rho against retrained "
                    "utility, and the mlp's private influence against its limit and the "
                    "logistic model's. Run with OMP_NUM_THREADS=1 on a loaded machine.")
    parser.add_argument("--quick", action="store_true",
                        help="a short run: state 11 only, MNIST 3 candidates of 100, digits 5 "
                             "of 50, private 4 candidates of 100 (still minutes: the mlp's "
                             "fit on MNIST)")
    parser.add_argument("--states", type=states_list, default=(11, 12),
                        help="random states, comma-separated (default 11,12: away from the "
                             "state 0 of the tests and examples)")
    parser.add_argument("--mnist-states", type=states_list,
                        help="random states of the MNIST markets and seed models (default: "
                             "--states); each fits the mlp on MNIST (minutes)")
    parser.add_argument("--mnist-candidates", type=int, default=10,
                        help="candidates of the MNIST label-noise market in part 2 (default "
                             "10); each network's ground truth is a retrain of minutes")
    parser.add_argument("--imbalance-candidates", type=int, default=10,
                        help="candidates of the MNIST imbalance market in part 2 (default 10)")
    parser.add_argument("--mnist-size", type=int, default=250,
                        help="digits in each MNIST candidate of part 2 (default 250)")
    parser.add_argument("--digits-candidates", type=int, default=10)
    parser.add_argument("--digits-size", type=int, default=100)
    parser.add_argument("--private-candidates", type=int, default=20,
                        help="MNIST candidates of part 3 (default 20)")
    parser.add_argument("--private-size", type=int, default=500,
                        help="digits in each candidate of part 3 (default 500)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed private sessions per model (the median is shown)")
    parser.add_argument("--markets", type=markets_list, default=MARKETS,
                        help=f"the markets of part 2, comma-separated (default all: "
                             f"{','.join(MARKETS)})")
    parser.add_argument("--skip-rho", action="store_true", help="skip part 2")
    parser.add_argument("--skip-private", action="store_true", help="skip part 3")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per MPC session, s")
    parser.add_argument("--data-dir", help=f"MNIST IDX files (default {SHARED_MNIST})")
    args = parser.parse_args()
    if args.quick:
        args.states, args.mnist_states = (11,), None
        args.mnist_candidates = args.imbalance_candidates = 3
        args.mnist_size = 100
        args.digits_candidates, args.digits_size = 5, 50
        args.private_candidates, args.private_size = 4, 100
    args.mnist_states = args.mnist_states or args.states
    for name in ("mnist_candidates", "imbalance_candidates", "mnist_size",
                 "digits_candidates", "digits_size", "private_candidates", "private_size",
                 "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    data_dir = args.data_dir or SHARED_MNIST
    if not Path(data_dir).is_dir():
        parser.error(f"MNIST is not at {data_dir}; pass --data-dir with its IDX files")

    start = time.perf_counter()
    print(f"network_seed: families {', '.join(FAMILIES)}; appraisers "
          + "; ".join(f"{f}: {', '.join(FAMILIES[f])}" for f in FAMILIES)
          + f"; random states {', '.join(map(str, args.states))} (MNIST "
          f"{', '.join(map(str, args.mnist_states))}); torch threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start "
          f"(other work on the machine slows every timing)", flush=True)
    seeds = Seeds(data_dir)
    part_seeds(seeds, args.mnist_states[0])
    if not args.skip_rho:
        part_rho(seeds, args)
    if not args.skip_private:
        part_private(seeds, args)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; total "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
