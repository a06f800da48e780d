"""Each artefact of the paper (and the pricing study) as a DataFrame, figures and headline lines
that print our figure beside the paper's. ``quick=True`` is a reduced size for tests and demos.

CIFAR-10 is read when its batches are present (``data_dir``); otherwise the CIFAR plane-vs-car
protocols run on ``mnist-3v5``, MNIST 3 vs 5 under the same 10:1 seed and balanced test.

Every artefact fits the seed model ``Options.seed`` chooses (explorer.seed.SeedChoice: the
paper's logistic model by default, or a network) and runs the appraisers that model's family
defines; ``check_artefact`` refuses, before anything slow, an artefact that needs an appraiser
the family lacks or that is defined for the logistic model only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer import plots
from explorer.acquisition import acquisition_curves
from explorer.appraisers import FAMILIES, appraiser_class
from explorer.config import AppraiserConfig
from explorer.constraints import APPRAISER_NAMES, CONSTRAINTS
from explorer.errors import ExplorerError
from explorer.experiments import appraise_market, market_utilities, runtime_breakdown
from explorer.market import make_market
from explorer.market_prices import priced_market
from explorer.marketplace import SIZE as MARKETPLACE_SIZE
from explorer.marketplace import measure_marketplace, table_lines
from explorer.metrics import fig6_ranges, rank_correlations, spearman
from explorer.output import ensure_directory, write_atomic
from explorer.pricing import PricingRule
from explorer.progress import Progress
from explorer.seed import SeedChoice
from explorer.sweeps import (
    finetune_budgets,
    finetune_grid,
    repeated_markets,
    repeated_rank_correlations,
)
from explorer.tasks import TASKS, load_task
from explorer.utility import check_absorbs


@dataclass
class Reproduction:
    """One artefact: its tidy frame, its figures by file stem, and the lines to print."""

    name: str
    frame: pd.DataFrame
    figures: dict[str, go.Figure]
    headlines: list[str] = field(default_factory=list)

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``<name>.csv`` and one standalone ``<stem>.html`` per figure into out_dir
        (created if missing)."""
        out = ensure_directory(out_dir)
        csv = out / f"{self.name}.csv"
        write_atomic(csv, lambda f: self.frame.to_csv(f, index=False))
        return [csv, *(plots.write_html(fig, out / f"{stem}.html")
                       for stem, fig in self.figures.items())]


@dataclass(frozen=True)
class Options:
    """How to reproduce: the appraisers' configuration (backend, hyper-parameters, MPC
    options), a reduced size, CIFAR-10's directory, the base random state of the runs (run r
    uses random_state + r; the defaults were chosen on 0), the seed model (``seed``) and,
    when given, the number of ``candidates`` per market and of repeated ``runs`` (or markets)
    in place of the artefact's (see ``SIZES``: a network retrains far more slowly)."""

    config: AppraiserConfig = field(default_factory=AppraiserConfig)
    quick: bool = False
    data_dir: str | None = None
    random_state: int = 0
    progress: Progress | None = None
    seed: SeedChoice = field(default_factory=SeedChoice)
    candidates: int | None = None
    runs: int | None = None

    def count(self, default: int) -> int:
        """Candidates per market: ``candidates`` when given, else the artefact's."""
        return default if self.candidates is None else self.candidates

    def repeats(self, default: int) -> int:
        """Repeated runs or markets: ``runs`` when given, else the artefact's."""
        return default if self.runs is None else self.runs

    def defined(self, *names: str) -> tuple[str, ...]:
        """Those of ``names`` the seed model's family defines (FAMILIES), in order."""
        return tuple(n for n in names if n in FAMILIES[self.seed.model])

    def label(self) -> str:
        """What the headlines say of the seed model: nothing for the paper's logistic model,
        else e.g. " [mlp, hidden 64, relu]"."""
        return f" [{self.seed.describe()}]" if self.seed.network else ""

    @property
    def backend(self) -> str:
        return self.config.backend

    def only(self, *names: str) -> AppraiserConfig:
        """The configuration restricted to these appraisers."""
        return self.config.with_(names=names)


def _planecar(opts: Options) -> tuple[str, dict, int]:
    """The CIFAR plane-vs-car task when its batches are given, else the MNIST stand-in, with
    its task options and the candidate size of the paper's protocol on it."""
    name, options = ("cifar-planecar", {"data_dir": opts.data_dir}) if opts.data_dir else \
        ("mnist-3v5", {})
    return name, options, TASKS[name].candidate_size


def table1(opts: Options) -> Reproduction:
    """MNIST, labels 1 and 7 flipped with probability p/10 in candidate p = 1..10; fine-tuning
    limited to 1x/4x/16x influence's work per candidate (sweeps.finetune_steps: a cost
    model of public sizes, so the same seed gives the same table) at three learning rates."""
    task = load_task("mnist", random_state=opts.random_state)
    n, size = (opts.count(5), 200) if opts.quick else (opts.count(10), 740)
    seed = opts.seed.fit(task)
    market = make_market(task, "label-noise", n, size, 1.0, 1.0 / n, random_state=opts.random_state)
    truth = market_utilities(seed, market, opts.progress)
    frame = finetune_budgets(seed, market, truth,
                             config=opts.config.with_(backend="plaintext")).assign(
        model=seed.family)
    inf = frame.influence_spearman_level.iloc[0]
    tag = opts.label()
    lines = [f"table1{tag} influence rho vs noise level {inf:+.2f} (paper 0.96; vs utility "
             f"{frame.influence_spearman.iloc[0]:+.2f})"]
    paper = {0.001: (0.61, 0.58, 0.72), 0.1: (0.95, 1.0, 1.0), 10.0: (0.96, 0.59, 0.88)}
    for row in frame.itertuples():
        ref = paper.get(row.lr, (np.nan,) * 3)[[1, 4, 16].index(row.budget)]
        rho = "diverges (lr * lam' >= 2)" if row.diverges else f"{row.spearman_level:+.2f}"
        lines.append(f"table1{tag} finetune lr {row.lr:g} {row.budget}x ({row.steps} steps of "
                     f"{seed.n_seed} + {size} samples) rho {rho} (paper {ref:.2f})")
    return Reproduction("table1", frame, {"table1": plots.budget_heatmap(frame)}, lines)


TABLE2 = [("none", "none", 0.0, 0.0, {}, 0.880, 0.081),
          ("noise up to 1/5", "label-noise", 0.2, 0.002, {}, 0.863, 0.064),
          ("noise up to 1/2", "label-noise", 0.5, 0.005, {}, 0.844, 0.106),
          ("missing features", "none", 0.0, 0.0, {"drop_features": 10}, 0.810, 0.213)]


def table2(opts: Options) -> Reproduction:
    """WDBC, 100 candidates of 30, 10 runs: influence's rho under four corruptions."""
    n, runs = (opts.count(30), opts.repeats(3)) if opts.quick else \
        (opts.count(100), opts.repeats(10))
    frames, lines, rows = [], [], []
    for label, kind, hi, lo, task_options, mean, sd in TABLE2:
        f = repeated_rank_correlations("wdbc", kind, n, 30, hi, lo, runs=runs,
                                       config=opts.only("influence"),
                                       task_options=task_options, first_run=opts.random_state,
                                       seed_choice=opts.seed)
        frames.append(f.assign(setting=label))
        rows.append({"setting": label, "mean": f.spearman.mean(), "sd": f.spearman.std(),
                     "paper_mean": mean, "paper_sd": sd})
        spread = f"+/- {f.spearman.std():.2f}" if runs > 1 else "(1 run)"
        lines.append(f"table2{opts.label()} {label} influence {f.spearman.mean():.2f} {spread} "
                     f"(paper {mean:.3f} +/- {sd:.3f})")
    fig = plots.paper_comparison_bars(pd.DataFrame(rows),
                                      f"WDBC: influence's rank correlation with "
                                      f"utility{opts.label()}")
    return Reproduction("table2", pd.concat(frames, ignore_index=True), {"table2": fig}, lines)


def fig3(opts: Options) -> Reproduction:
    """Fine-tuning's rank correlation and runtime over batch size x epochs (MNIST label noise)."""
    task = load_task("mnist", random_state=opts.random_state)
    n, size = (opts.count(5), 200) if opts.quick else (opts.count(10), 740)
    seed = opts.seed.fit(task)
    market = make_market(task, "label-noise", n, size, 1.0, 1.0 / n, random_state=opts.random_state)
    truth = market_utilities(seed, market, opts.progress)
    batches = [64, None] if opts.quick else [16, 64, 256, None]
    epochs = [1, 2] if opts.quick else [1, 2, 4, 8]
    frame = finetune_grid(seed, market, truth, batches, epochs).assign(model=seed.family)
    def cell(row) -> str:
        batch = "full batch" if pd.isna(row.batch_size) else f"batch {int(row.batch_size)}"
        return f"{row.spearman:+.2f} ({batch}, {int(row.epochs)} epochs)"

    best, worst = frame.loc[frame.spearman.idxmax()], frame.loc[frame.spearman.idxmin()]
    lines = [f"fig3{opts.label()} finetune rho from {cell(worst)} to {cell(best)} (paper: "
             f"reliable only with small batches and many epochs)"]
    return Reproduction("fig3", frame, {"fig3": plots.finetune_grid_heatmaps(frame)}, lines)


# Quick Figure 4. Its encrypted cost is set by the seed set's size (fine-tuning passes over it
# at every step) and by the rounds of communication (each step's sigmoid takes hundreds): the
# quick run shrinks the seed and test sets and the market, takes the paper's three appraisers
# (not newton) and 4 fine-tuning steps instead of 16. An encrypted step costs the same in
# both, so quick fine-tuning costs about a quarter of a full run's against influence.
FIG4_QUICK = {"candidates": 3, "size": 50, "seed_size": 100, "test_size": 100, "steps": 4,
              "appraisers": ("influence", "gradient-norm", "finetune")}


def fig4(opts: Options) -> Reproduction:
    """Runtime of the appraisers in plaintext and encrypted (fine-tuning: 16 full-batch steps)
    on the plane-vs-car task; quick: FIG4_QUICK's smaller sets, appraisers and steps."""
    name, task_options, full_size = _planecar(opts)
    if opts.quick:
        task_options = {**task_options, "seed_size": FIG4_QUICK["seed_size"],
                        "test_size": FIG4_QUICK["test_size"]}
    task = load_task(name, random_state=opts.random_state, **task_options)
    n, size = (FIG4_QUICK["candidates"], FIG4_QUICK["size"]) if opts.quick else (20, full_size)
    names, steps = (FIG4_QUICK["appraisers"], FIG4_QUICK["steps"]) if opts.quick else \
        (opts.defined(*APPRAISER_NAMES), 16)
    seed = opts.seed.fit(task)
    market = make_market(task, "imbalance", n, size, 1.0, 0.05, random_state=opts.random_state)
    frames = []
    for backend in ("plaintext", "crypten"):
        config = opts.config.with_(names=names, backend=backend, lr=0.1, steps=steps)
        # party processes that have already imported torch and CrypTen: the figure is about
        # the appraisals' cost, not the interpreter's start-up
        with config.warm_processes():
            frames.append(runtime_breakdown(seed, market, config))
    frame = pd.concat(frames, ignore_index=True)
    enc = frame[frame.backend == "crypten"].set_index("appraiser")
    ratio = enc.private_seconds["finetune"] / enc.private_seconds["influence"]
    lines = [f"fig4{opts.label()} {name} ({seed.n_seed} seed samples, {n} candidates of {size}, "
             f"fine-tuning {steps} steps): encrypted "
             f"seconds influence {enc.private_seconds['influence']:.2f}, "
             f"gradient-norm {enc.private_seconds['gradient-norm']:.2f}, finetune "
             f"{enc.private_seconds['finetune']:.2f}: fine-tuning costs {ratio:.0f}x influence "
             f"(paper: influence far cheaper in private)"]
    return Reproduction("fig4", frame, {"fig4": plots.runtime_bars(frame)}, lines)


def fig5(opts: Options) -> Reproduction:
    """Gradient norm and loss reduction over MNIST label noise and plane-vs-car imbalance."""
    name, task_options, full_size = _planecar(opts)
    n, size = (opts.count(5), 150) if opts.quick else (opts.count(10), full_size)
    frames, lines = [], []
    for panel, task_name, kind, tk, paper in (
            ("MNIST label noise", "mnist", "label-noise", {}, -1),
            (f"{name} class balance", name, "imbalance", task_options, 1)):
        task = load_task(task_name, random_state=opts.random_state, **tk)
        seed = opts.seed.fit(task)
        market = make_market(task, kind, n, size, 1.0, 1.0 / n, random_state=opts.random_state)
        results = appraise_market(seed, market, opts.only("gradient-norm"))
        frames.append(results.assign(panel=panel))
        rho = spearman(results.value, results.utility)
        lines.append(f"fig5{opts.label()} {panel}: gradient norm vs loss reduction rho {rho:+.2f} "
                     f"(paper {paper:+d})")
    frame = pd.concat(frames, ignore_index=True)
    return Reproduction("fig5", frame, {"fig5": plots.gradient_norm_panels(frame)}, lines)


FIG6_PAPER = {"overall": 0.923, "cars 0-0.45": 0.908, "cars 0.55-1": 0.247}


def fig6(opts: Options) -> Reproduction:
    """Plane-vs-car, 20 candidates with 5p% planes, 5 repeated markets: every appraiser's rank
    against the utility's rank, overall and in the paper's zooms on the car rate."""
    name, task_options, full_size = _planecar(opts)
    task = load_task(name, random_state=opts.random_state, **task_options)
    n, size, repeats = (opts.count(10), 100, opts.repeats(2)) if opts.quick else \
        (opts.count(20), full_size, opts.repeats(5))
    seed = opts.seed.fit(task)
    names = opts.defined(*APPRAISER_NAMES)  # whatever the seed model's family defines
    frame = repeated_markets(seed, task, "imbalance", n, size, 1.0, 1.0 / n, repeats=repeats,
                             config=opts.only(*names), first_run=opts.random_state,
                             progress=opts.progress)
    lines = []
    for appraiser, g in frame.groupby("appraiser", sort=False):
        rho = fig6_ranges(g)
        lines.append(f"fig6{opts.label()} {name} {appraiser}: overall rho {rho['overall']:+.3f}; "
                     f"car rate in [0, 0.45] rho {rho['cars 0-0.45']:+.3f}; in [0.55, 1] rho "
                     f"{rho['cars 0.55-1']:+.3f} (paper, influence on CIFAR-10: "
                     f"{FIG6_PAPER['overall']} / {FIG6_PAPER['cars 0-0.45']} / "
                     f"{FIG6_PAPER['cars 0.55-1']}; here {seed.n_seed} seed images against "
                     f"candidates of {size})")
    figures = {"fig6": plots.rank_scatter(frame),
               "fig6-accuracy": plots.rank_scatter(frame, against="accuracy_change"),
               "fig6-cars-0-45": plots.rank_scatter(frame, level_range=(0.55, 1.0)),
               "fig6-cars-55-100": plots.rank_scatter(frame, level_range=(0.0, 0.45))}
    if "newton" in names:
        figures["fig6-newton"] = plots.rank_scatter(frame, appraiser="newton")
    return Reproduction("fig6", frame, figures, lines)


def fig8(opts: Options) -> Reproduction:
    """WDBC with 10 of 30 columns dropped: greedy acquisition by influence vs random."""
    n, rounds, runs = (opts.count(20), 5, opts.repeats(2)) if opts.quick else \
        (opts.count(100), 15, opts.repeats(5))
    rounds = min(rounds, n)
    frame = acquisition_curves("wdbc", "label-noise", n, 30, 0.5, rounds, runs=runs,
                               task_options={"drop_features": 10},
                               config=opts.only("influence"), first_run=opts.random_state,
                               progress=opts.progress, seed_choice=opts.seed)
    mean = frame.groupby(["strategy", "round"])[["loss_reduction", "relative_reduction"]].mean()
    k = min(3, rounds)

    def at(r: int) -> str:
        return ", ".join(f"{s} {mean.loc[(s, r), 'loss_reduction']:+.4f} nats "
                         f"({100 * mean.loc[(s, r), 'relative_reduction']:+.1f}% of the seed "
                         f"model's)" for s in ("influence", "random"))

    lines = [f"fig8{opts.label()} wdbc: test-loss reduction (higher = better) after {k} purchases: "
             f"{at(k)}; after {rounds}: {at(rounds)} (paper: influence drops the loss sooner than "
             f"random)"]
    return Reproduction("fig8", frame, {"fig8": plots.acquisition_curves(frame)}, lines)


def pricing(opts: Options) -> Reproduction:
    """Prices of clean, harmful, duplicate and noisy candidates under a calibrated rule."""
    task_name, size, n = ("wdbc", 30, 4) if opts.quick else ("mnist", 300, 5)
    task = load_task(task_name, random_state=opts.random_state)
    seed = opts.seed.fit(task)
    rule = PricingRule.calibrated(seed, size, rate=1000.0,
                                  influence=opts.config.build("influence", seed.family))
    frame = priced_market(seed, task, rule, n_per_kind=n, size=size, random_state=opts.random_state,
                          config=opts.only("influence"))
    by_kind = frame.groupby("kind").price.mean()
    lines = [f"pricing{opts.label()} {task_name}: threshold {rule.threshold:.4f} nats (own-data "
             f"baseline + 3 sd); mean price "
             + ", ".join(f"{k} {v:.2f}" for k, v in by_kind.items())
             + " (the blog post's aim: duplicates and harmful data at the floor, 0)"]
    figure = plots.price_bars(frame, threshold=rule.threshold)
    return Reproduction("pricing", frame, {"pricing": figure}, lines)


LEAKAGE_RUNS = (("value", "none"), ("bit", "none"), ("value", "policy"),
                ("value", "rounding"), ("value", "noise"))


def leakage(opts: Options) -> Reproduction:
    """The paper's §6 made concrete on WDBC: both reconstruction attacks against influence,
    their error against the values or bits revealed, per reveal mode and defence (rounding and
    noise as the protocol applies them before the reveal; one query each, not repeated)."""
    from explorer.leakage.attack import Attack, run_attack

    task = load_task("wdbc", random_state=opts.random_state)
    seed = opts.seed.fit(task)
    (candidate,) = make_market(task, "none", 1, 5, random_state=opts.random_state)
    frames, lines = [], []
    for attacker in ("data-owner", "model-owner"):
        for reveal, defence in LEAKAGE_RUNS:
            queries = None if reveal == "value" or not opts.quick else 200
            attack = Attack(attacker, reveal, defence, queries=queries,
                            random_state=opts.random_state)
            result = run_attack(seed, attack, (candidate.X, candidate.y))
            frames.append(result.frame.assign(attacker=attacker, reveal=reveal,
                                              defence=defence))
            lines.append(f"leakage wdbc {attacker} {reveal} {defence}: relative error "
                         f"{result.error:.3g} after {result.queries} revealed {result.unit} "
                         f"(paper §6: repeated queries reconstruct the other side's data)")
    frame = pd.concat(frames, ignore_index=True)
    return Reproduction("leakage", frame, {"leakage": plots.leakage_curves(frame)}, lines)


def marketplace(opts: Options) -> Reproduction:
    """The blog post's table measured on one WDBC market (explorer.marketplace): each approach
    the project runs, by data leakage, model leakage, practicality and fairness, beside the
    blog's ratings. The MPC rows run between real parties with ``--backend crypten``, else in
    simulated mode; the attacks always run simulated."""
    measured = measure_marketplace(opts.config, quick=opts.quick,
                                   random_state=opts.random_state, progress=opts.progress)
    market = measured.prices[measured.prices.approach == measured.table.approach.iloc[0]]
    counts = market.kind.value_counts()
    lines = [f"marketplace wdbc: {counts.get('label-noise', 0)} label-noise candidates and "
             f"{counts.get('duplicates', 0)} duplicates, {MARKETPLACE_SIZE} rows each; each "
             f"attacker sees {measured.queries} values or bits; MPC {measured.mpc_mode} (attacks "
             f"simulated); levels from the measured numbers beside the blog's ratings ("
             f"'≠': they disagree)"]
    lines += table_lines(measured)
    figures = {"marketplace": plots.marketplace_table(measured.table),
               "marketplace-prices": plots.marketplace_prices(measured.prices)}
    return Reproduction("marketplace", measured.table, figures, lines)


ARTEFACTS: dict[str, Callable[[Options], Reproduction]] = {
    "table1": table1, "table2": table2, "fig3": fig3, "fig4": fig4, "fig5": fig5,
    "fig6": fig6, "fig8": fig8, "pricing": pricing, "leakage": leakage,
    "marketplace": marketplace}


# Per artefact: the appraisers it cannot do without (its seed model's family must define them),
# whether --candidates and --runs change it, and whether it needs a seed model that buying can
# refit (explorer.utility.absorb) or the logistic model (the leakage attacks reconstruct its
# theta_hat; the marketplace measures them, and the surrogate, on it).
NEEDS: dict[str, tuple[str, ...]] = {
    "table1": ("influence", "finetune"), "table2": ("influence",), "fig3": ("finetune",),
    "fig4": ("influence", "gradient-norm", "finetune"), "fig5": ("gradient-norm",),
    "fig6": ("influence",), "fig8": ("influence",), "pricing": ("influence",),
    "leakage": ("influence",), "marketplace": ("influence", "surrogate")}
SIZES: dict[str, tuple[str, ...]] = {
    "table1": ("candidates",), "table2": ("candidates", "runs"), "fig3": ("candidates",),
    "fig4": (), "fig5": ("candidates",), "fig6": ("candidates", "runs"),
    "fig8": ("candidates", "runs"), "pricing": (), "leakage": (), "marketplace": ()}
ACQUIRES = ("fig8",)
LOGISTIC_ONLY = ("leakage", "marketplace")
assert set(NEEDS) == set(SIZES) == set(ARTEFACTS)


def check_artefact(name: str, opts: Options) -> None:
    """Refuse, in one sentence and before anything slow, what artefact ``name`` cannot do with
    these options: an unknown artefact, a size it has no use for, an appraiser it needs that
    the seed model's family does not define, or a family it is not defined for."""
    if name not in ARTEFACTS:
        raise ExplorerError(f"unknown artefact {name!r}; choose one of {', '.join(ARTEFACTS)}.")
    if not isinstance(opts, Options) or not isinstance(opts.seed, SeedChoice):
        raise ExplorerError("reproduce takes explorer.reproduce.Options, with its seed an "
                            "explorer.seed.SeedChoice.")
    for what, constraint in (("candidates", CONSTRAINTS["n_candidates"]),
                             ("runs", CONSTRAINTS["random_orders"])):
        value = getattr(opts, what)
        if value is None:
            continue
        if what not in SIZES[name]:
            uses = [a for a, sizes in SIZES.items() if what in sizes]
            raise ExplorerError(f"--{what} applies to {', '.join(uses)}, not {name}; drop it.")
        if not constraint.ok(value) or (what == "candidates" and value < 2):
            raise ExplorerError(f"--{what} must be a whole number from "
                                f"{2 if what == 'candidates' else 1} to {constraint.high}, "
                                f"got {value!r}.")
    family = opts.seed.model
    if name in LOGISTIC_ONLY:
        from explorer.leakage.attack import check_logistic

        check_logistic(family)
    if name in ACQUIRES:
        check_absorbs(family)
    for appraiser in NEEDS[name]:
        appraiser_class(family, appraiser)  # its sentence when the family lacks it


def reproduce(name: str, options: Options | None = None) -> Reproduction:
    """Run one artefact (see ARTEFACTS) after ``check_artefact``."""
    opts = options or Options()
    check_artefact(name, opts)
    return ARTEFACTS[name](opts)


__all__ = ["ARTEFACTS", "Options", "Reproduction", "check_artefact", "rank_correlations",
           "reproduce"]
