"""What private appraisal costs: CrypTen between real parties against the plaintext appraisers.

Private backend in ``parties`` mode (model owner and data owner in separate processes, a TTP
dealer process, 16 precision bits: the project's defaults); every appraiser runs one batched
session for the whole market. Measures:

1. WDBC, 100 label-noise candidates of 30 (max level 0.5), per appraiser (influence,
   gradient-norm, finetune with lr 0.1 and 16 full-batch steps): encrypted seconds of the session
   (sum of the ``private_seconds`` column), the session's whole wall time including process
   start-up (sum of ``seconds``), bytes sent by all parties, communication rounds, the plaintext
   appraiser's seconds (sum of ``seconds``), the private/plaintext time ratio (encrypted seconds
   over plaintext seconds) and Spearman's rho between private and plaintext values.
2. The same on an MNIST-sized market: 20 label-noise candidates of 500 digits, 10 classes of
   785 parameters (task ``mnist``; skipped when its files are missing). Fine-tuning is first
   timed on 2 candidates; when 20 would clearly take longer than ``--finetune-budget`` it runs
   on fewer candidates, and the output says so.
3. One batched influence session for the 100 WDBC candidates against one session per candidate,
   beside the target "at least 20x" (when the separate sessions would exceed
   ``--separate-budget`` only some are timed and the rest extrapolated, as printed).
4. Private influence against private fine-tuning (the paper's Figure 4): ratios of encrypted
   seconds and of bytes, beside the target "at least 10x cheaper".
5. First, the limit table (DESIGN §4b): the loopback round-trip time and bandwidth measured in
   this run, the limit of private influence computed from them (benchmarks/limit.py: the ideal
   protocol's rounds x RTT + bytes / bandwidth, its bytes derived from the shapes and from the
   project's sigmoid or softmax measured between real parties), and private influence between
   warm parties (explorer.mpc.launcher.warm_parties) beside it as ratios: session wall,
   encrypted seconds, rounds of the critical path, bytes sent on the wire. Rows: 100 WDBC
   candidates of 30, MNIST-sized (20 x 500 x 785, 10 classes; when MNIST is on disk) and,
   with ``--cifar``, CIFAR-sized (100 x 440 x 3073: task cifar-planecar when CIFAR-10 is on
   disk, else MNIST 3 vs 5 digits padded and repeated to CIFAR-10's shape). Then
   one batched session against one session per candidate, both with warm parties.

Bytes are what the model owner, the data owner and the dealer send on the wire, each byte
once; rounds are the sequential rounds of the critical path (explorer.mpc.wire).

No ground truth is needed (``--truth`` adds rho against the retrained utility). Not a test:
figures beside targets. Timings depend on the machine and on what else it runs.

    .venv/bin/python benchmarks/private_costs.py [--skip-mnist] [--quick] [--data-dir DIR]
        [--limit-only] [--cifar]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from limit import influence_limit, measure_link, measure_nonlinearity

from explorer.config import AppraiserConfig
from explorer.errors import ExplorerError
from explorer.experiments import UTILITY_COLUMNS, appraise_market, market_utilities
from explorer.market import make_market
from explorer.metrics import spearman
from explorer.mpc.session import warm_sessions
from explorer.seed import fit_seed_model
from explorer.tasks import TASKS, Task, data_on_disk, load_task, standardisation

APPRAISERS = ("influence", "gradient-norm", "finetune", "newton")
# fine-tuning: lr 0.1, 16 full-batch steps in both backends; newton: the defaults
CONFIG = AppraiserConfig(names=APPRAISERS, lr=0.1, steps=16)
PROJECT = Path(__file__).resolve().parents[1]
SHARED_MNIST = PROJECT.parent / "shared" / "data" / "mnist"
BATCH_TARGET = 20.0  # one batched session at least 20x faster than one session per candidate
FIGURE4_TARGET = 10.0  # private influence at least 10x cheaper than private fine-tuning
# issue 9's targets for private influence between warm parties, by row of the limit table
LIMIT_TARGETS = {
    "wdbc": {"wall": 0.4, "private": 0.06, "rounds": 30, "bytes_ratio": 1.3},
    "mnist-sized": {"private": 1.0},
    "cifar-sized": {"private": 15.0, "bytes": 2.5e9},
}
NONLINEARITY_ROWS = 20_000  # the sigmoid or softmax is measured on at most this many rows
# before each timed warm session: the pool refills as a session takes its processes, and the
# new processes' imports (seconds on a loaded machine) would otherwise compete with the next
# session; a dashboard user's clicks are this far apart too
WARM_PAUSE = 10.0


def private(name: str, timeout: float) -> AppraiserConfig:
    """The private configuration of one appraiser with the project's defaults: parties, TTP,
    16 precision bits."""
    return CONFIG.with_(names=(name,), backend="crypten", mode="parties", provider="TTP",
                        timeout=timeout)


def no_truth(market) -> pd.DataFrame:
    """A utilities frame without ground truth (NaN), so appraise_market retrains nothing."""
    return pd.DataFrame([{"candidate": c.index, "kind": c.kind, "level": c.level,
                          "size": c.size, "utility": np.nan, "accuracy_change": np.nan,
                          "truth_seconds": np.nan} for c in market], columns=UTILITY_COLUMNS)


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


def times(ratio: float) -> str:
    if not np.isfinite(ratio):
        return "n/a"
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def secs(s: float) -> str:
    return f"{s:.3g} s" if s < 10 else f"{s:.0f} s"


def costs(rows: pd.DataFrame) -> dict:
    """Totals over a market's rows of one appraiser."""
    return {"private": rows["private_seconds"].sum(), "session": rows["seconds"].sum(),
            "bytes": rows["bytes"].sum(), "rounds": rows["rounds"].sum(), "n": len(rows)}


def seed_facts(label: str, task, seed, market, kind: str, max_level: float) -> None:
    params_ = (seed.n_features + 1) * seed.theta.shape[1]
    print(f"{label} seed model: {seed.n_seed} training samples, {len(seed.y_test)} test samples, "
          f"{seed.n_features} features, {task.n_classes} classes, {params_} parameters "
          f"({seed.theta.shape[1]} x {seed.n_features + 1})")
    print(f"{label} seed model test accuracy {seed.test_accuracy:.3f}  "
          f"gradient norm {seed.grad_norm:.1e}")
    print(f"{label} candidates {len(market)} of {market[0].size} samples, {kind} up to "
          f"{max_level:g}", flush=True)


def appraise(label: str, seed, market, names, timeout: float, truth: pd.DataFrame) -> dict:
    """Private and plaintext appraisal of one market; prints one line per appraiser and returns
    the private cost totals by appraiser."""
    out = {}
    for name in names:
        plain = appraise_market(seed, market, CONFIG.with_(names=(name,)), truth)
        start = time.perf_counter()
        priv = appraise_market(seed, market, private(name, timeout), truth)
        outside = time.perf_counter() - start
        c = costs(priv)
        plain_s = plain["seconds"].sum()
        rho = spearman(priv["value"], plain["value"])
        p, q = priv["value"].to_numpy(), plain["value"].to_numpy()
        err, scale = np.abs(p - q).max(), np.abs(q).max()
        slope = float(p @ q / (q @ q)) if q @ q > 0 else float("nan")
        extra = ""
        if truth["utility"].notna().all():
            extra = (f"  rho vs utility: private {spearman(priv['value'], priv['utility']):.3f}"
                     f" plaintext {spearman(plain['value'], plain['utility']):.3f}")
        print(f"{label} {name} private {secs(c['private'])}  session {secs(c['session'])}  "
              f"{mb(c['bytes'])}  {c['rounds']:.0f} rounds  plaintext {secs(plain_s)}  "
              f"ratio {times(c['private'] / plain_s)}  "
              f"rho(private, plaintext) {rho:.4f}  max |error| {err / scale:.1e} of max |value|"
              f"  slope(private on plaintext) {slope:.3f}{extra}", flush=True)
        print(f"{label} {name}   ({c['n']} candidates in one session; appraise_market call "
              f"{secs(outside)}; plaintext set-up {secs(plain['setup_seconds'].iloc[0])})",
              flush=True)
        out[name] = c
    return out


def figure4(label: str, inf: dict, ft: dict) -> None:
    """Private influence against private fine-tuning, per candidate (same candidates)."""
    t = (ft["private"] / ft["n"]) / (inf["private"] / inf["n"])
    b = (ft["bytes"] / ft["n"]) / (inf["bytes"] / inf["n"])
    r = (ft["rounds"] / ft["n"]) / (inf["rounds"] / inf["n"])
    print(f"{label} figure4 finetune/influence encrypted seconds {times(t)}  "
          f"(target at least {FIGURE4_TARGET:.0f}x: {'met' if t >= FIGURE4_TARGET else 'NOT met'})"
          f"  [{secs(ft['private'])} vs {secs(inf['private'])}, {ft['n']} candidates]")
    print(f"{label} figure4 finetune/influence bytes {times(b)}  "
          f"(target at least {FIGURE4_TARGET:.0f}x: {'met' if b >= FIGURE4_TARGET else 'NOT met'})"
          f"  [{mb(ft['bytes'])} vs {mb(inf['bytes'])}]")
    print(f"{label} figure4 finetune/influence rounds {times(r)}  "
          f"[{ft['rounds']:.0f} vs {inf['rounds']:.0f}]", flush=True)


def batched_vs_separate(seed, market, timeout: float, limit: int, budget: float) -> None:
    """One influence session for all candidates against one session per candidate, back to
    back under the same load."""
    n = len(market)
    config = private("influence", timeout)
    appraiser, runner = config.build("influence").fit(seed), config.runner()
    batch = runner.run(appraiser, [(c.X, c.y) for c in market])
    batch_values = batch.values
    s = batch.last_session
    batched = {"session": s.wall_seconds, "private": s.private_seconds, "bytes": s.bytes,
               "rounds": s.rounds}
    sessions = []
    start = time.perf_counter()
    for c in market[:limit]:
        one = runner.run(appraiser, [(c.X, c.y)])
        s = one.last_session
        sessions.append((s.wall_seconds, s.private_seconds, s.bytes, s.rounds, one.values[0]))
        done = len(sessions)
        if done >= 10 and done < n and (time.perf_counter() - start) / done * n > budget:
            break
    done = len(sessions)
    wall, enc, nbytes, rounds, values = (np.array(v) for v in zip(*sessions, strict=True))
    scale = n / done
    how = (f"all {n} sessions timed" if done == n else
           f"timed {done} of {n} sessions and extrapolated x{scale:g}")
    print(f"wdbc batched influence: 1 session for {n} candidates: "
          f"session {secs(batched['session'])}  private {secs(batched['private'])}  "
          f"{mb(batched['bytes'])}  {batched['rounds']:.0f} rounds", flush=True)
    print(f"wdbc separate influence: {n} sessions of 1 candidate ({how}): "
          f"session {secs(wall.sum() * scale)}  private {secs(enc.sum() * scale)}  "
          f"{mb(nbytes.sum() * scale)}  {rounds.sum() * scale:.0f} rounds  "
          f"(per session: {wall.mean():.2f} s wall, {enc.mean():.3f} s encrypted)")
    speed = wall.sum() * scale / batched["session"]
    print(f"wdbc batched vs separate speed-up (session wall) {times(speed)}  (target at least "
          f"{BATCH_TARGET:.0f}x: {'met' if speed >= BATCH_TARGET else 'NOT met'})")
    print(f"wdbc batched vs separate speed-up (encrypted seconds only) "
          f"{times(enc.sum() * scale / batched['private'])}")
    print(f"wdbc batched vs separate rounds {times(rounds.sum() * scale / batched['rounds'])}  "
          f"bytes {nbytes.sum() * scale / batched['bytes']:.2f}x")
    diff = np.abs(values - batch_values[:done]).max() / np.abs(batch_values).max()
    print(f"wdbc batched vs separate max |value difference| {diff:.1e} of max |value| "
          f"(rho {spearman(values, batch_values[:done]):.4f})", flush=True)


def part_wdbc(args) -> None:
    task = load_task("wdbc", random_state=args.random_state)
    seed = fit_seed_model(task)
    market = make_market(task, "label-noise", args.candidates, 30, max_level=0.5,
                         random_state=args.random_state)
    seed_facts("wdbc", task, seed, market, "label-noise", 0.5)
    truth = market_utilities(seed, market) if args.truth else no_truth(market)
    names = APPRAISERS if not args.skip_finetune else ("influence", "gradient-norm", "newton")
    totals = appraise("wdbc", seed, market, names, args.timeout, truth)
    verification_cost("wdbc", seed, market, args.timeout)
    if not args.skip_separate:
        batched_vs_separate(seed, market, args.timeout, args.separate, args.separate_budget)
    if "finetune" in totals:
        figure4("wdbc", totals["influence"], totals["finetune"])


def part_mnist(args) -> None:
    data_dir = args.data_dir
    if data_dir is None:
        if not SHARED_MNIST.is_dir():
            print(f"mnist skipped: {SHARED_MNIST} is missing (pass --data-dir)")
            return
        data_dir = SHARED_MNIST
    try:
        task = load_task("mnist", random_state=args.random_state, data_dir=data_dir,
                         allow_download=False)
    except ExplorerError as exc:
        print(f"mnist skipped: {exc}")
        return
    seed = fit_seed_model(task)
    n = args.mnist_candidates
    market = make_market(task, "label-noise", n, 500, max_level=0.5, random_state=args.random_state)
    seed_facts("mnist", task, seed, market, "label-noise", 0.5)
    truth = market_utilities(seed, market) if args.truth else no_truth(market)
    totals = appraise("mnist", seed, market, ("influence", "gradient-norm", "newton"),
                      args.timeout, truth)
    if args.skip_finetune:
        return

    # fine-tuning under MPC on MNIST: time 2 candidates first, then choose how many to run
    probe_n = min(2, n)
    probe = private("finetune", args.timeout).appraise("finetune", seed,
                                                       [(c.X, c.y) for c in market[:probe_n]])
    s = probe.last_session
    per = s.wall_seconds / probe_n  # includes the fixed costs, so an over-estimate
    estimate = per * n
    n_ft = n if estimate <= args.finetune_budget else max(probe_n,
                                                           int(args.finetune_budget // per))
    print(f"mnist finetune probe: {probe_n} candidates, session {secs(s.wall_seconds)} "
          f"(encrypted {secs(s.private_seconds)}); {n} candidates estimated {secs(estimate)}"
          + ("" if n_ft == n else f" > budget {secs(args.finetune_budget)}: fine-tuning runs on "
                                  f"the first {n_ft} candidates only"), flush=True)
    sub = market[:n_ft]
    sub_truth = truth[truth["candidate"].isin([c.index for c in sub])]
    ft = appraise(f"mnist[{n_ft}]" if n_ft < n else "mnist", seed, sub, ["finetune"],
                  args.timeout, sub_truth)["finetune"]
    inf = totals["influence"]
    if n_ft < n:  # influence on the same candidates, for a like-for-like Figure 4 ratio
        inf = appraise(f"mnist[{n_ft}]", seed, sub, ["influence"], args.timeout,
                       sub_truth)["influence"]
    figure4("mnist", inf, ft)
    nt = totals["newton"]
    print(f"mnist newton vs 16-step finetune, per candidate: encrypted "
          f"{secs(nt['private'] / nt['n'])} vs {secs(ft['private'] / ft['n'])}, "
          f"{mb(nt['bytes'] / nt['n'])} vs {mb(ft['bytes'] / ft['n'])} (target: newton cheaper)",
          flush=True)


def verification_cost(label: str, seed, market, timeout: float) -> None:
    """Influence with and without verification (two independently shared copies)."""
    rows = {}
    for verify in (False, True):
        config = CONFIG.with_(names=("influence",), backend="crypten", verify=verify,
                              timeout=timeout)
        frame = appraise_market(seed, market, config, no_truth(market))
        rows[verify] = costs(frame)
    off, on = rows[False], rows[True]
    print(f"{label} influence verification: unverified {secs(off['private'])} "
          f"{mb(off['bytes'])} {off['rounds']:.0f} rounds; verified {secs(on['private'])} "
          f"{mb(on['bytes'])} {on['rounds']:.0f} rounds (x{on['private'] / off['private']:.2f} "
          f"time, x{on['bytes'] / off['bytes']:.2f} bytes)", flush=True)


def _target(row: str, key: str, got: float) -> str:
    target = LIMIT_TARGETS.get(row, {}).get(key)
    if target is None:
        return ""
    shown = {"wall": secs(target), "private": secs(target), "rounds": f"{target:.0f}",
             "bytes_ratio": f"{target:g}x the limit", "bytes": mb(target)}[key]
    return f"  (target <= {shown}: {'met' if got <= target else 'NOT met'})"


def limit_row(label: str, task, n: int, size: int, link, timeout: float, seed: int) -> None:
    """Private influence between warm parties against the limit, for one market."""
    seed_model = fit_seed_model(task)
    market = make_market(task, "label-noise", n, size, max_level=0.5, random_state=seed)
    pairs = [(c.X, c.y) for c in market]
    config = private("influence", timeout)
    appraiser, runner = config.build("influence").fit(seed_model), config.runner()
    d1, C = seed_model.n_features + 1, seed_model.theta.shape[1]
    copies = 2 if config.mpc.verify else 1
    m = max(len(y) for _, y in pairs)
    rows = min(n * m, NONLINEARITY_ROWS)
    nonlinear = measure_nonlinearity(rows, C, timeout=timeout)
    limit = influence_limit(n, m, d1, C, copies, link, nonlinear)
    with warm_sessions("TTP"):
        runner.run(appraiser, pairs)  # takes the pool's first processes; refills it
        sessions = []
        for _ in range(3):
            time.sleep(WARM_PAUSE)
            sessions.append(runner.run(appraiser, pairs).last_session)
    s = sorted(sessions, key=lambda x: x.wall_seconds)[1]  # the median session
    print(f"{label}: {n} candidates x {m} rows x {d1} features (with the bias), {C} logit(s), "
          f"{copies} copies (verified); limit {limit.rounds} rounds x {link.rtt_seconds * 1e3:.3f}"
          f" ms + {mb(limit.bytes)} / {link.bandwidth / 1e9:.2f} GB/s = {secs(limit.seconds)} "
          f"({'sigmoid' if C == 1 else 'softmax'}: {nonlinear.rounds} rounds, "
          f"{nonlinear.bytes_per_row:.0f} bytes a row, measured on {rows} rows)")
    print(f"{label}   {'':34s} {'project':>10s} {'limit':>10s} {'ratio':>7s}")
    lines = [("session wall, warm parties (median of 3)", secs(s.wall_seconds),
              secs(limit.seconds), s.wall_seconds / limit.seconds, "wall", s.wall_seconds),
             ("encrypted seconds", secs(s.private_seconds), secs(limit.seconds),
              s.private_seconds / limit.seconds, "private", s.private_seconds),
             ("rounds (critical path)", f"{s.rounds}", f"{limit.rounds}",
              s.rounds / limit.rounds, "rounds", s.rounds),
             ("bytes sent on the wire", mb(s.bytes), mb(limit.bytes), s.bytes / limit.bytes,
              "bytes", s.bytes)]
    for name, got, lim, ratio, key, value in lines:
        target = _target(label, key, value)
        if key == "bytes":
            target = _target(label, "bytes_ratio", ratio) + target
        print(f"{label}   {name:42s} {got:>10s} {lim:>10s} {times(ratio):>7s}{target}",
              flush=True)


def separate_warm(task, n: int, size: int, separate: int, timeout: float, seed: int) -> None:
    """One batched influence session against one session per candidate (the first
    ``separate``, extrapolated to all), every session on warm parties, back to back (so each
    may wait for the pool's refill)."""
    seed_model = fit_seed_model(task)
    market = make_market(task, "label-noise", n, size, max_level=0.5, random_state=seed)
    config = private("influence", timeout)
    appraiser, runner = config.build("influence").fit(seed_model), config.runner()
    with warm_sessions("TTP"):
        runner.run(appraiser, [(c.X, c.y) for c in market])  # warm-up
        batched = runner.run(appraiser, [(c.X, c.y) for c in market]).last_session.wall_seconds
        walls = []
        for c in market[:separate]:
            walls.append(runner.run(appraiser, [(c.X, c.y)]).last_session.wall_seconds)
    speed = np.mean(walls) * n / batched
    print(f"wdbc batched vs one session per candidate, warm parties: {secs(batched)} against "
          f"{len(walls)} x {np.mean(walls):.3f} s (extrapolated to {n}: "
          f"{secs(np.mean(walls) * n)}): {times(speed)}  (target at least "
          f"{BATCH_TARGET:.0f}x: {'met' if speed >= BATCH_TARGET else 'NOT met'})", flush=True)


def cifar_shaped(data_dir, seed: int) -> Task:
    """A task of CIFAR-10's shape (3072 features) from MNIST: task mnist-3v5, the paper's
    CIFAR plane-vs-car protocol on MNIST 3 vs 5, with every 28x28 digit padded to 32x32 and
    repeated over three colour channels, standardised as CIFAR-10 would be (shared units),
    with cifar-planecar's L2 strength."""
    task = load_task("mnist-3v5", random_state=seed, data_dir=data_dir, allow_download=False)

    def images(X: np.ndarray) -> np.ndarray:
        digits = np.pad(task.to_raw(X).reshape(-1, 28, 28), ((0, 0), (2, 2), (2, 2)))
        return np.repeat(digits[:, None], 3, axis=1).reshape(len(digits), 3 * 32 * 32)

    mean, scale = standardisation(images(task.X_train), shared_units=True)
    return dataclasses.replace(
        task, name="cifar-shaped", X_train=(images(task.X_train) - mean) / scale,
        X_test=(images(task.X_test) - mean) / scale, X_pool=(images(task.X_pool) - mean) / scale,
        feature_names=tuple(f"channel {c} pixel {i}" for c in range(3) for i in range(1024)),
        mean=mean, scale=scale, lam=TASKS["cifar-planecar"].lam)


def part_limit(args) -> None:
    link = measure_link(args.timeout)
    print(f"loopback link ({link.transport}, the one the exchanges use): round trip "
          f"{link.rtt_seconds * 1e3:.3f} ms (median of ping-pongs), bandwidth "
          f"{link.bandwidth / 1e9:.2f} GB/s (one 64 MB send)", flush=True)
    limit_row("wdbc", load_task("wdbc", random_state=args.random_state), args.candidates, 30, link,
              args.timeout, args.random_state)
    if not args.skip_mnist:
        data_dir = args.data_dir or (SHARED_MNIST if SHARED_MNIST.is_dir() else None)
        try:
            task = load_task("mnist", random_state=args.random_state, data_dir=data_dir,
                         allow_download=False)
            limit_row("mnist-sized", task, args.mnist_candidates, 500, link, args.timeout,
                      args.random_state)
        except ExplorerError as exc:
            print(f"mnist-sized skipped: {exc}")
    if args.cifar:
        if data_on_disk("cifar-planecar"):
            task = load_task("cifar-planecar", random_state=args.random_state)
        else:
            try:
                task = cifar_shaped(args.data_dir or SHARED_MNIST, args.random_state)
            except ExplorerError as exc:
                print(f"cifar-sized skipped: CIFAR-10 is not on disk, nor MNIST ({exc})")
                task = None
            else:
                print("cifar-sized: CIFAR-10 is not on disk; its shape from MNIST 3 vs 5 "
                      "(task mnist-3v5), each digit padded to 32x32 and repeated over 3 "
                      "channels (costs depend on the shapes alone)", flush=True)
        if task is not None:
            limit_row("cifar-sized", task, 100, 440, link, args.timeout, args.random_state)
    if not args.skip_separate:
        # warm sessions of one candidate vary little: 10 timed, extrapolated
        separate_warm(load_task("wdbc", random_state=args.random_state), args.candidates, 30,
                      min(args.separate, 10), args.timeout, args.random_state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 20 WDBC candidates, 4 MNIST, 5 separate sessions")
    parser.add_argument("--skip-wdbc", action="store_true")
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--skip-separate", action="store_true",
                        help="skip batched versus one session per candidate")
    parser.add_argument("--skip-finetune", action="store_true",
                        help="skip private fine-tuning (and so the Figure 4 ratio)")
    parser.add_argument("--candidates", type=int, default=100, help="WDBC candidates of 30")
    parser.add_argument("--mnist-candidates", type=int, default=20, help="MNIST candidates of 500")
    parser.add_argument("--separate", type=int, default=100,
                        help="at most this many separate one-candidate sessions")
    parser.add_argument("--separate-budget", type=float, default=600.0,
                        help="after 10 separate sessions, stop and extrapolate if all of them "
                             "would take longer than this many seconds")
    parser.add_argument("--finetune-budget", type=float, default=900.0,
                        help="seconds MNIST private fine-tuning may take before fewer "
                             "candidates are used")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per MPC session, s")
    parser.add_argument("--data-dir", help=f"MNIST IDX files (default {SHARED_MNIST})")
    parser.add_argument("--truth", action="store_true",
                        help="also compute ground truth by retraining and print rho vs utility")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--limit-only", action="store_true",
                        help="only the limit table (and batched vs separate, warm)")
    parser.add_argument("--cifar", action="store_true",
                        help="add the CIFAR-sized row to the limit table (minutes, GBs)")
    args = parser.parse_args()
    if args.quick:
        args.candidates, args.mnist_candidates, args.separate = 20, 4, 5
    args.separate = min(args.separate, args.candidates)

    start = time.perf_counter()
    print(f"private_costs: CrypTen mode parties, provider TTP, 16 precision bits vs plaintext; "
          f"finetune lr {CONFIG.lr}, {CONFIG.steps} full-batch steps; newton "
          f"{CONFIG.newton_steps} steps; seed {args.random_state}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start "
          f"(other work on the machine slows every timing)", flush=True)
    part_limit(args)
    if not args.limit_only and not args.skip_wdbc:
        part_wdbc(args)
    if not args.limit_only and not args.skip_mnist:
        part_mnist(args)
    print(f"load average {os.getloadavg()[0]:.2f} at the end; total "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
