"""Command line: ``appraisal-explorer appraise|reproduce|sample-candidate|tasks|export-encoding|
party|attack|acquire``.

Bad input ends with one sentence on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.appraisers import FAMILIES, appraiser_class
from explorer.config import AppraiserConfig
from explorer.constraints import (
    ACTIVATIONS,
    ALL_APPRAISER_NAMES,
    APPRAISER_NAMES,
    BACKENDS,
    CONSTRAINTS,
    DEFAULTS,
    LABELS,
    MODELS,
    MODES,
    ORACLES,
    PRECONDITIONERS,
    PROVIDERS,
    REVEALS,
    SURROGATE_KINDS,
    parse_appraiser_names,
)
from explorer.errors import ExplorerError
from explorer.experiments import appraise_market
from explorer.jobs import candidate_from_file
from explorer.ledger import Budget
from explorer.loaders.user import read_candidate_file, write_candidate_file
from explorer.market import CORRUPTIONS, make_market
from explorer.metrics import rank_correlations
from explorer.model import n_outputs
from explorer.output import check_output_directory, check_output_file, write_atomic
from explorer.parties import (
    check_environment,
    encoding,
    read_encoding,
    run_data_owner,
    run_dealer,
    run_model_owner,
    session_key,
    write_encoding,
    write_session_key,
)
from explorer.reproduce import ARTEFACTS, Options, check_artefact, reproduce
from explorer.seed import AnySeed, SeedChoice, model_description
from explorer.tasks import TASKS, load_task
from explorer.timeline import SETUP, Timeline, wall_seconds
from explorer.utility import check_absorbs

PROG = "appraisal-explorer"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage problem in one line."""

    def error(self, message: str):
        raise ExplorerError(f"{message} (see {self.prog} --help).")


def _number(text: str, whole: bool) -> float | int:
    """A whole or finite number from the command line (the table decides its range)."""
    try:
        return int(text) if whole else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if whole else 'a number'}"
                                         f", got {text!r}") from None


def _option(name: str, whole: bool):
    """The argparse type of parameter ``name``: parsed, then checked against CONSTRAINTS."""
    def parse(text: str):
        value = _number(text, whole)
        if not whole and not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if not CONSTRAINTS[name].ok(value):
            label = LABELS[name].split(" (")[0]
            raise argparse.ArgumentTypeError(f"{label} must be {CONSTRAINTS[name].describe()}, "
                                             f"got {text!r}")
        return value

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _lam(text: str) -> float | str:
    if text == "cv":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not CONSTRAINTS["lam"].ok(value):
        raise argparse.ArgumentTypeError(f"expected a positive number or cv, got {text!r} (lam "
                                         f"is {CONSTRAINTS['lam'].describe()})")
    return value


def _flip(text: str) -> tuple[int, int] | str:
    if text == "any":
        return text
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two classes such as 1,7 or the word any, got {text!r}") from None
    return a, b


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, such as "
                                         f"30,30, got {text!r}") from None
    if not all(CONSTRAINTS["sizes"].ok(n) for n in sizes):
        raise argparse.ArgumentTypeError(f"expected each size to be "
                                         f"{CONSTRAINTS['sizes'].describe()}, got {text!r}")
    return sizes


def _hidden(text: str) -> tuple[int, ...]:
    """One or two hidden widths, e.g. 64 or 64,32."""
    parts = text.split(",")
    if not 1 <= len(parts) <= 2:
        raise argparse.ArgumentTypeError(f"expected one or two hidden widths such as 64 or "
                                         f"64,32, got {text!r}")
    try:
        widths = tuple(int(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected one or two whole numbers such as 64 or "
                                         f"64,32, got {text!r}") from None
    if not all(CONSTRAINTS["hidden"].ok(h) for h in widths):
        raise argparse.ArgumentTypeError(f"each hidden width must be "
                                         f"{CONSTRAINTS['hidden'].describe()}, got {text!r}")
    return widths


def _path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def _add_task_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help=f"seed task: {', '.join(TASKS)}")
    p.add_argument("--data-dir", type=_path, help="directory with the task's files (mnist: IDX "
                   "files; cifar-planecar: the python batches)")
    p.add_argument("--random-state", type=_option("random_state", whole=True), default=0,
                   help="the random state of every random choice (0 .. 2^32 - 1)")
    p.add_argument("--lam", type=_lam, help="L2 strength of the seed model, or cv to choose it "
                   "by 5-fold cross-validated log-loss on the seed set alone (task default "
                   "otherwise; see README)")
    p.add_argument("--drop-features", type=_option("drop_features", whole=True), default=0,
                   help="drop this many random feature columns from the whole task")


def _add_seed_options(p: argparse.ArgumentParser) -> None:
    """The seed model's family and a network's architecture (README: neural seed models);
    given where they do nothing they are refused (``_seed_choice``)."""
    g = p.add_argument_group("seed model")
    g.add_argument("--model", choices=MODELS, help="the seed model: logistic (the paper's L2 "
                   "logistic regression, default), mlp (an L2 network), or last-layer (that "
                   "network's hidden layers frozen, its head a logistic model)")
    g.add_argument("--hidden", type=_hidden, help=f"mlp and last-layer: one or two hidden "
                   f"widths, e.g. 64 or 64,32 (default "
                   f"{','.join(map(str, DEFAULTS['hidden']))})")
    g.add_argument("--activation", choices=ACTIVATIONS, help=f"mlp and last-layer: the hidden "
                   f"activation (default {DEFAULTS['activation']})")


def _add_private_options(p: argparse.ArgumentParser, defaults: bool = True):
    """The MPC options; without ``defaults`` they stay None when not given (see
    APPRAISE_DEFAULTS). Returns their argument group."""
    def default(value):
        return value if defaults else None

    g = p.add_argument_group("private appraisal (--backend crypten)")
    g.add_argument("--backend", default=DEFAULTS["backend"], choices=BACKENDS, help="plaintext, or "
                   "crypten: secure multi-party computation between the model owner and the "
                   "data owner")
    g.add_argument("--mode", default=default(DEFAULTS["mode"]), choices=MODES,
                   help="parties: one OS process per party (and the dealer) on this "
                   "machine; simulated: one process, no real secret sharing (for teaching and "
                   "fast checks)")
    g.add_argument("--precision-bits", type=_option("precision_bits", whole=True),
                   default=default(DEFAULTS["precision_bits"]),
                   help=f"fixed-point fractional bits (default {DEFAULTS['precision_bits']}; "
                   "the paper's 24 makes CrypTen's two-party truncation fail now and then on "
                   "large data, see README)")
    g.add_argument("--provider", default=default(DEFAULTS["provider"]),
                   choices=tuple(PROVIDERS),
                   help="TTP: " + PROVIDERS["TTP"] + "; TFP: " + PROVIDERS["TFP"])
    g.add_argument("--reveal", default=default(DEFAULTS["reveal"]), choices=REVEALS,
                   help="value, or bit: reveal only whether value > --threshold")
    g.add_argument("--threshold", type=_option("threshold", whole=False),
                   default=default(DEFAULTS["threshold"]),
                   help="the model owner's threshold in bit mode")
    _add_budget_options(g)
    g.add_argument("--timeout", type=_option("timeout", whole=False),
                   default=default(DEFAULTS["timeout"]),
                   help="seconds before a private session is stopped")
    return g


def _add_defence_options(p, defaults: bool = True) -> None:
    """The reveal defences (explorer.appraisers.reveal), public settings both parties agree
    on; without ``defaults`` they stay None when not given (see APPRAISE_DEFAULTS)."""
    def default(value):
        return value if defaults else None

    g = p.add_argument_group("reveal defences (both backends; the same in every party)")
    g.add_argument("--grid", type=_option("grid", whole=False),
                   default=default(DEFAULTS["grid"]),
                   help="reveal only multiples of this step (nats), rounded stochastically "
                   "inside MPC; value mode only (default 0: off)")
    g.add_argument("--noise", type=_option("noise", whole=False),
                   default=default(DEFAULTS["noise"]),
                   help="each party adds its own Gaussian noise of this standard deviation "
                   "(nats) inside MPC before the reveal; needs --weight-bound and --row-bound "
                   "(default 0: off)")
    g.add_argument("--weight-bound", type=_option("weight_bound", whole=False),
                   help="influence only: refuse the session, before any value is revealed, "
                   "unless the model owner's weights (v / n_seed) have at most this norm "
                   "(checked inside MPC, one revealed bit)")
    g.add_argument("--row-bound", type=_option("row_bound", whole=False),
                   help="the data owner scales each of its rows to at most this feature norm "
                   "(standardised units) before entering it")


def _add_budget_options(p) -> None:
    for what in ("sessions", "values", "bits"):
        p.add_argument(f"--budget-{what}", type=_option("budget_count", whole=True),
                       help=f"the query ledger: refuse a session that would take the {what} "
                       f"revealed to this counterparty past this number (real parties only; "
                       f"default: count, never refuse)")


def _add_hyper_parameters(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    def default(value):
        return value if defaults else None

    p.add_argument("--lr", type=_option("lr", whole=False), default=default(DEFAULTS["lr"]),
                   help="fine-tuning learning rate")
    p.add_argument("--steps", type=_option("steps", whole=True),
                   default=default(DEFAULTS["steps"]), help="fine-tuning steps")
    p.add_argument("--newton-steps", type=_option("newton_steps", whole=True),
                   default=default(DEFAULTS["newton_steps"]),
                   help="newton: safeguarded Newton steps K")
    p.add_argument("--preconditioner", default=default(DEFAULTS["preconditioner"]),
                   choices=PRECONDITIONERS,
                   help="newton: the seed Hessian's inverse, dense or Kronecker-factored "
                   "(auto: dense for two classes or up to 1,000 parameters)")
    _add_damping(p)


def _add_damping(p) -> None:
    p.add_argument("--damping", type=_option("damping", whole=False),
                   help=f"mlp: influence solves (H + damping x lam I) v = g_te, and newton's "
                   f"preconditioner takes the same damping (default {DEFAULTS['damping']:g}; "
                   f"README: neural seed models)")


def _add_surrogate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--surrogate", choices=SURROGATE_KINDS,
                   help=f"surrogate: the model owner's distilled surrogate, a depth-limited "
                   f"tree or a logistic model on the seed features' top principal directions "
                   f"(default {DEFAULTS['surrogate']})")
    p.add_argument("--surrogate-size", type=_option("surrogate_size", whole=True),
                   help=f"surrogate: its public size, the tree's depth or the logistic model's "
                   f"projected features (default {DEFAULTS['surrogate_size']})")


# appraise's options that mean something only beside another choice, with their defaults: given
# where they would do nothing, they are refused rather than silently ignored.
APPRAISE_DEFAULTS = {
    "corruption": "none", "candidates": 10, "size": 100, "max_level": 1.0, "min_level": 0.0,
    "flip": None, "target_class": 0, "budget_sessions": None, "budget_values": None,
    "budget_bits": None,
    **{k: DEFAULTS[k] for k in ("lr", "steps", "batch_size", "newton_steps", "preconditioner",
                                "surrogate", "surrogate_size",
                                "mode", "provider", "reveal", "precision_bits", "threshold",
                                "timeout", "sellers", "grid", "noise", "weight_bound",
                                "row_bound")},
}
APPRAISE_APPLIES_ONLY = (
    (("corruption", "candidates", "size", "max_level", "min_level", "sellers"),
     "to a synthetic market, not with --candidate-file", lambda a: a.candidate_file is None),
    (("flip",), "with --corruption label-noise", lambda a: a.corruption == "label-noise"),
    (("target_class",), "with --corruption imbalance", lambda a: a.corruption == "imbalance"),
    (("lr", "steps", "batch_size"), "to the finetune appraiser",
     lambda a: "finetune" in a.appraisers),
    (("newton_steps", "preconditioner"), "to the newton appraiser",
     lambda a: "newton" in a.appraisers),
    (("surrogate", "surrogate_size"), "to the surrogate appraiser",
     lambda a: "surrogate" in a.appraisers),
    (("mode", "provider", "reveal", "precision_bits", "timeout", "sellers", "budget_sessions",
      "budget_values", "budget_bits"), "with --backend crypten",
     lambda a: a.backend == "crypten"),
    (("threshold",), "with --reveal bit", lambda a: a.reveal == "bit"),
)


def _option_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _appraise_options(args) -> None:
    """Refuse options that would be ignored, then fill in the defaults of the others."""
    given = {k for k in APPRAISE_DEFAULTS if getattr(args, k) is not None}
    for k, v in APPRAISE_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.appraisers is None:  # the defaults the seed model's family defines
        family = FAMILIES.get(args.model or DEFAULTS["model"], {})
        args.appraisers = tuple(n for n in DEFAULTS["names"] if n in family)
    args.appraisers = parse_appraiser_names(args.appraisers)
    for options, where, applies in APPRAISE_APPLIES_ONLY:
        idle = [_option_name(o) for o in options if o in given]
        if idle and not applies(args):
            raise ExplorerError(f"{', '.join(idle)} {'applies' if len(idle) == 1 else 'apply'} "
                                f"only {where}; drop {'it' if len(idle) == 1 else 'them'}.")
    if args.out is not None and args.candidate_file is not None \
            and Path(args.out).resolve() == Path(args.candidate_file).resolve():
        raise ExplorerError(f"--out {args.out} would overwrite the candidate file; write the "
                            f"results elsewhere.")
    if args.out is not None and args.timeline_out is not None \
            and Path(args.out).resolve() == Path(args.timeline_out).resolve():
        raise ExplorerError(f"--out and --timeline-out both name {args.out}; give the timeline "
                            f"a file of its own.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Appraise candidate datasets for a model "
                     "without sharing them.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    a = sub.add_parser("appraise", help="appraise a synthetic market or your own candidate file")
    _add_task_options(a)
    _add_seed_options(a)
    a.add_argument("--corruption", help=f"one of {', '.join(CORRUPTIONS)} (default none)")
    a.add_argument("--candidates", type=_option("n_candidates", whole=True),
                   help="number of candidates (default 10)")
    a.add_argument("--size", type=_option("size", whole=True),
                   help="samples per candidate (default 100)")
    a.add_argument("--max-level", type=_option("max_level", whole=False),
                   help="highest corruption level (default 1)")
    a.add_argument("--min-level", type=_option("min_level", whole=False),
                   help="lowest corruption level (default 0)")
    a.add_argument("--flip", type=_flip, help="label noise: class pair such as 1,7, or any")
    a.add_argument("--target-class", type=_option("target_class", whole=True),
                   help="imbalance: the class whose share the level sets (default 0)")
    a.add_argument("--appraisers", help=f"comma-separated: {', '.join(ALL_APPRAISER_NAMES)} "
                   f"(default {','.join(DEFAULTS['names'])}: those the seed model's family "
                   f"defines; surrogate: plaintext only, the data owner runs it alone)")
    _add_hyper_parameters(a, defaults=False)
    _add_surrogate_options(a)
    a.add_argument("--batch-size", type=_option("batch_size", whole=True),
                   help="fine-tuning batch size (full batch if omitted)")
    private = _add_private_options(a, defaults=False)
    private.add_argument("--sellers", type=_option("sellers", whole=True),
                         help="split the market's candidates among this many data owners, in "
                         "consecutive blocks, each its own process (real parties; default 1)")
    _add_defence_options(a, defaults=False)
    a.add_argument("--candidate-file", type=_path, help="appraise your own dataset instead: a "
                   "CSV with a header naming the task's feature columns and a label column (or "
                   ".npz with X, y)")
    a.add_argument("--out", type=_path, help="write one CSV row per candidate and appraiser "
                   "here")
    a.add_argument("--timeline-out", type=_path, help="write the run's timeline here: one CSV "
                   "row per phase (phase, appraiser, part, seconds, count), adding up to the "
                   "run's wall time")

    s = sub.add_parser("sample-candidate", help="write a candidate dataset in the file format "
                       "--candidate-file reads (raw units)")
    _add_task_options(s)
    s.add_argument("--corruption", default="none", help=f"one of {', '.join(CORRUPTIONS)}")
    s.add_argument("--level", type=_option("level", whole=False), default=0.0,
                   help="corruption level in [0, 1]")
    s.add_argument("--size", type=_option("size", whole=True), default=100, help="samples")
    s.add_argument("--out", type=_path, required=True, help="CSV file to write")

    sub.add_parser("tasks", help="list the seed tasks")

    r = sub.add_parser("reproduce", help="reproduce an artefact of the paper: CSV and HTML "
                       "figures into --out, headline figures beside the paper's")
    r.add_argument("artefact", choices=tuple(ARTEFACTS), help=f"one of {', '.join(ARTEFACTS)}")
    r.add_argument("--out", type=_path, required=True, help="directory for the CSV and HTML "
                   "files (created if missing)")
    r.add_argument("--random-state", type=_option("random_state", whole=True), default=0,
                   help="base random state of the artefact's runs (run r uses random state + "
                   "r), to check a figure on runs it was not tuned on")
    r.add_argument("--quick", action="store_true", help="a reduced version (under a minute)")
    r.add_argument("--data-dir", type=_path, help="CIFAR-10 python batches for the plane-vs-car "
                   "artefacts (otherwise MNIST 3 vs 5 stands in)")
    r.add_argument("--candidates", type=_option("n_candidates", whole=True),
                   help="candidates per market instead of the artefact's (table1, table2, "
                   "fig3, fig5, fig6, fig8; a network's ground truth retrains it per "
                   "candidate, far more slowly than the logistic model's)")
    r.add_argument("--runs", type=_positive(whole=True), help="repeated runs or markets "
                   "instead of the artefact's (table2, fig6, fig8)")
    _add_seed_options(r)
    _add_damping(r)
    _add_private_options(r)

    e = sub.add_parser("export-encoding", help="model owner: write the public encoding (feature "
                       "order and scaling, classes) a data owner needs for `party data-owner`")
    _add_task_options(e)
    _add_seed_options(e)
    e.add_argument("--out", type=_path, required=True, help="JSON file to write")
    e.add_argument("--session-key-out", type=_path, help="also write a fresh session key to "
                   "this file (readable by you only); share it with the data owner and the "
                   "dealer out of band")

    p = sub.add_parser("party", help="run one party of a private appraisal on this machine, "
                       "with RENDEZVOUS, WORLD_SIZE=2 (k + 1 with k data owners) and RANK set "
                       "(see README)")
    roles = p.add_subparsers(dest="role", required=True, parser_class=_Parser)
    mo = roles.add_parser("model-owner", help="RANK=0: the model owner")
    _add_task_options(mo)
    _add_seed_options(mo)
    mo.add_argument("--sizes", type=_sizes, required=True, action="append",
                    help="the agreed candidate sizes, e.g. 30,30; with several data owners, "
                    "repeat it once per data owner, in rank order")
    dow = roles.add_parser("data-owner", help="RANK=1 (data owner j of k: RANK=j): a data "
                           "owner")
    dow.add_argument("--encoding", type=_path, required=True,
                     help="the model owner's encoding file")
    dow.add_argument("--candidate-file", type=_path, action="append", required=True,
                     help="a candidate dataset (repeat for several)")
    dow.add_argument("--sizes", type=_sizes, action="append",
                     help="with several data owners: every data owner's candidate sizes, "
                     "repeated once per data owner in rank order (the same as the model "
                     "owner's), its own at position RANK")
    for r in (mo, dow):
        r.add_argument("--appraiser", default="influence", choices=APPRAISER_NAMES)
        _add_hyper_parameters(r)
        r.add_argument("--precision-bits", type=_option("precision_bits", whole=True),
                       default=DEFAULTS["precision_bits"])
        r.add_argument("--provider", default=DEFAULTS["provider"], choices=tuple(PROVIDERS),
                       help="TTP (needs the dealer) or TFP")
        r.add_argument("--reveal", default=DEFAULTS["reveal"], choices=REVEALS,
                       help="value or bit")
        _add_budget_options(r)
        _add_defence_options(r)
    mo.add_argument("--threshold", type=_option("threshold", whole=False),
                    default=DEFAULTS["threshold"],
                    help="bit mode: the threshold")
    dealer = roles.add_parser("dealer", help="RANK=2 (k + 1 with k data owners): the dealer "
                              "of the TTP provider")
    for r in (mo, dow, dealer):
        r.add_argument("--session-key-file", type=_path, help="the session key shared out of "
                       "band (else the environment variable APPRAISAL_SESSION_KEY)")
    _add_attack_parser(sub)
    _add_acquire_parser(sub)
    return parser


# the settings a command's options may give (the rest of its options are not appraisal settings)
CONFIG_OPTIONS = ("backend", "lr", "steps", "batch_size", "newton_steps", "preconditioner",
                  "damping", "surrogate", "surrogate_size",
                  "mode", "precision_bits", "provider", "reveal", "threshold", "timeout",
                  "sellers", "grid", "noise", "weight_bound", "row_bound")


def _config(args, names=None) -> AppraiserConfig:
    """The one AppraiserConfig of a command's options (validated by it, whatever the
    backend); a command without --backend (party, reproduce) runs privately."""
    given = {k: getattr(args, k) for k in CONFIG_OPTIONS if getattr(args, k, None) is not None}
    return AppraiserConfig.from_options(
        names=names or args.appraisers, **{"backend": "crypten", **given},
        budget=Budget(getattr(args, "budget_sessions", None),
                      getattr(args, "budget_values", None),
                      getattr(args, "budget_bits", None)))


def _task(args):
    lam = None if args.lam == "cv" else args.lam
    return load_task(args.task, random_state=args.random_state, data_dir=args.data_dir, lam=lam,
                     drop_features=args.drop_features)


def _seed_choice(args, model: str | None = None) -> SeedChoice:
    """The seed model the options choose (``model``: a family known otherwise, the data
    owner's from its encoding), checked before anything slow; options that would do nothing
    beside it are refused."""
    model = model or getattr(args, "model", None) or DEFAULTS["model"]
    if model == "logistic":
        idle = [o for o in ("hidden", "activation") if getattr(args, o, None) is not None]
        if idle:
            raise ExplorerError(f"{', '.join(_option_name(o) for o in idle)} "
                                f"{'applies' if len(idle) == 1 else 'apply'} only with --model "
                                f"mlp or last-layer; drop {'it' if len(idle) == 1 else 'them'}.")
    if getattr(args, "damping", None) is not None and model != "mlp":
        raise ExplorerError(f"--damping damps the mlp seed model's Hessian; it does "
                            f"nothing for the {model} seed model, so drop it.")
    lam = "cv" if getattr(args, "lam", None) == "cv" else None  # a number is in the task
    hidden = args.hidden if getattr(args, "hidden", None) is not None else DEFAULTS["hidden"]
    activation = getattr(args, "activation", None) or DEFAULTS["activation"]
    return SeedChoice(model, hidden, activation, lam)


def _seed_line(task, seed: AnySeed) -> str:
    """The seed model in one line: task, family and widths, samples, lam, accuracy."""
    chosen = " (chosen by cross-validation)" if getattr(seed, "lam_choice", None) is not None \
        else ""
    return (f"seed model: {task.name}, {model_description(seed)}, {seed.n_seed} training "
            f"samples, lam {seed.lam:.3g}{chosen}, test accuracy {seed.test_accuracy:.3f}, "
            f"gradient norm {seed.grad_norm:.1e}")


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    write_atomic(path, lambda f: frame.to_csv(f, index=False))


def cmd_appraise(args) -> int:
    _appraise_options(args)
    choice = _seed_choice(args)
    config = _config(args)  # validated before the slow part
    for name in config.names:  # each appraiser defined for the seed model's family
        appraiser_class(choice.model, name)
    if config.private and args.candidate_file is None:
        config.mpc.sellers_of(args.candidates)  # every data owner holds a candidate
    for out in (args.out, args.timeline_out):
        if out is not None:
            check_output_file(out)
    timeline = Timeline().start()
    with config.warm_processes():  # party processes import while the task loads
        with timeline.phase(SETUP):
            task = _task(args)
            if args.candidate_file:
                candidates = [candidate_from_file(args.candidate_file, task)]
            else:
                candidates = make_market(task, args.corruption, args.candidates, args.size,
                                         args.max_level, args.min_level,
                                         random_state=args.random_state, flip=args.flip,
                                         target_class=args.target_class)
            seed = choice.fit(task)
        print(_seed_line(task, seed))
        if seed.family == "mlp" and {"influence", "newton"} & set(config.names):
            # delta enters every value of both: (H + delta I) v = g_te, newton's preconditioner
            print(f"damping delta {config.damping * seed.lam:.3g} (= {config.damping:g} x lam) "
                  f"in the network's (H + delta I)")
        defences = _defence_line(config, n_outputs(seed.n_classes))
        if defences:
            print(defences)
        appraisals = []
        results = appraise_market(seed, candidates, config, progress=_progress(),
                                  on_appraisal=lambda _, a: appraisals.append(a),
                                  timeline=timeline)
    timeline.stop()
    times = timeline.frame()
    if args.out is not None:
        _write_csv(results, args.out)
    if args.timeline_out is not None:
        _write_csv(times, args.timeline_out)
    if args.candidate_file:
        first = results.iloc[0]
        print(f"utility {first.utility:.6g}")
        print(f"accuracy_change {first.accuracy_change:.6g}")
        for row in results.itertuples():
            print(f"value {row.appraiser} {row.value:.6g}")
    else:
        for name, rho in rank_correlations(results).items():
            print(f"spearman {name} {rho:.4f}")
    if args.backend == "crypten":
        for name, g in results.groupby("appraiser", sort=False):
            print(f"cost {name}: plaintext {g.plaintext_seconds.sum():.2f} s, encrypted "
                  f"{g.private_seconds.sum():.2f} s, {g.bytes.sum() / 1e6:.1f} MB sent on the "
                  f"wire, {g.rounds.sum():.0f} rounds (critical path) ({args.mode}, "
                  f"{args.provider}, {args.precision_bits} bits, reveal {args.reveal}"
                  + (f", {args.sellers} data owners" if args.sellers > 1 else "") + ")")
        for appraisal in appraisals:  # who sees what (the dashboard's party lanes)
            for line in appraisal.account.lines():
                print(f"session {appraisal.appraiser}: {line}")
        print(_ledger_line(appraisals))
    for line in timeline_lines(times):
        print(line)
    return 0


def timeline_lines(times) -> list[str]:
    """The run's timeline as "seconds <phase>[ <appraiser> <part>] <seconds>" lines, in the
    order measured ("other": what no phase measured), then "seconds wall <seconds>", their
    sum: the run's wall time from loading the task to the last appraiser's value."""
    lines = []
    for row in times.itertuples():
        where = row.phase + (f" {row.appraiser} {row.part}" if row.appraiser or
                             row.part != row.phase else "")
        lines.append(f"seconds {where} {row.seconds:.3f}")
    lines.append(f"seconds wall {wall_seconds(times):.3f}")
    return lines


def _ledger_line(appraisals) -> str:
    counts = [a.ledger_counts for a in appraisals if a.ledger_counts is not None]
    if not counts:
        return ("ledger: off (simulated mode: one process plays both parties, nothing is "
                "revealed to anyone else)")
    c = counts[-1]
    return (f"ledger: {c['sessions']} sessions, {c['values']} values and {c['bits']} bits "
            f"revealed to this counterparty so far (both roles count; see README)")


def cmd_sample_candidate(args) -> int:
    check_output_file(args.out)
    task = _task(args)
    (c,) = make_market(task, args.corruption, 1, args.size, args.level, args.level,
                       random_state=args.random_state)
    write_candidate_file(args.out, task.to_raw(c.X), c.y, task.feature_names)
    print(f"wrote {c.size} samples of task {task.name} ({c.kind}, level {c.level:g}) to "
          f"{args.out}")
    return 0


def cmd_export_encoding(args) -> int:
    check_output_file(args.out)
    if args.session_key_out:
        check_output_file(args.session_key_out)
    choice = _seed_choice(args)
    task = _task(args)
    seed = choice.fit(task)
    write_encoding(args.out, encoding(task, seed))
    if args.session_key_out:
        write_session_key(args.session_key_out)
        print(f"wrote a fresh session key to {args.session_key_out}")
    print(f"wrote the encoding of task {task.name} ({task.n_features} features, "
          f"{task.n_classes} classes, seed model {model_description(seed)}) to {args.out}")
    return 0


def _print_party_report(name: str, report, reveal: str) -> None:
    label = "bit" if reveal == "bit" else "value"
    for i, v in enumerate(report.values.tolist()):
        print(f"{label} {name} candidate {i} {v:.6g}")
    print(f"cost {name}: encrypted {report.seconds:.2f} s, {report.bytes / 1e6:.2f} MB sent on "
          f"the wire by this party, {report.rounds} rounds it waited through")


def cmd_party(args) -> int:
    # files and options first, then the environment, the key last: before any networking
    if args.role == "dealer":
        check_environment("dealer", None)
        run_dealer(session_key(args.session_key_file))
        return 0
    config = _config(args, names=(args.appraiser,))
    if args.role == "model-owner":
        choice = _seed_choice(args)
    else:  # the family is the model owner's, from its encoding
        enc = read_encoding(args.encoding)
        choice = _seed_choice(args, enc["family"])
    appraiser, runner = config.build(args.appraiser, choice.model), config.runner()
    check_environment(args.role.replace("-", " "), max(len(args.sizes or ()), 1))
    if args.role == "model-owner":
        task = _task(args)
        appraiser.fit(choice.fit(task))
        report = run_model_owner(appraiser, runner, args.sizes,
                                 session_key(args.session_key_file))
    else:
        candidates = [read_candidate_file(f, tuple(enc["feature_names"]),
                                          tuple(enc["class_names"]), mean=enc["mean"],
                                          scale=enc["scale"])
                      for f in args.candidate_file]
        report = run_data_owner(enc, appraiser, runner, candidates,
                                session_key(args.session_key_file), args.sizes or ())
    outputs = n_outputs(appraiser.seed_.n_classes) if args.role == "model-owner" \
        else enc["n_outputs"]
    defences = _defence_line(config, int(outputs))
    if defences:
        print(defences)
    _print_party_report(appraiser.name, report, args.reveal)
    return 0


def cmd_reproduce(args) -> int:
    config = _config(args, names=APPRAISER_NAMES)  # validates the options up front
    options = Options(config=config, quick=args.quick, data_dir=args.data_dir,
                      random_state=args.random_state, progress=_progress(),
                      seed=_seed_choice(args), candidates=args.candidates, runs=args.runs)
    check_artefact(args.artefact, options)  # before anything slow
    check_output_directory(args.out)  # created when the results are written
    rep = reproduce(args.artefact, options)
    written = rep.write(args.out)
    for line in rep.headlines:
        print(line)
    print(f"wrote {', '.join(p.name for p in written)} to {args.out}")
    return 0


def _defence_line(config: AppraiserConfig, n_outputs: int) -> str | None:
    """One line on the reveal defences in force, with the privacy the noise buys."""
    from explorer.appraisers.reveal import gaussian_epsilon, value_sensitivity

    d = config.defences
    if not d.active:
        return None
    parts = [f"grid {d.grid:g}" if d.grid else "", f"weight bound {d.weight_bound:g}"
             if d.weight_bound is not None else "", f"row bound {d.row_bound:g}"
             if d.row_bound is not None else ""]
    if d.noise:
        delta = DP_DELTA
        eps = gaussian_epsilon(d.noise, delta, value_sensitivity(d.weight_bound, d.row_bound,
                                                                 n_outputs))
        parts.append(f"noise {d.noise:g} per party (each value ({eps:.3g}, {delta:g})-DP for "
                     f"one row of a candidate, against the model owner; see README)")
    return "defences: " + ", ".join(p for p in parts if p)


# The δ at which the command line reports the noise's ε.
DP_DELTA = 1e-5


def _positive(whole: bool):
    """The argparse type of a positive (whole or finite) number."""
    def parse(text: str):
        value = _number(text, whole)
        if not (np.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def _add_attack_parser(sub) -> None:
    from explorer.leakage.attack import ATTACKERS
    from explorer.leakage.defences import (
        DEFAULT_GRID,
        DEFAULT_NOISE,
        DEFAULT_ROW_BOUND,
        DEFENCES,
    )

    k = sub.add_parser("attack", help="measure what repeated appraisals leak: reconstruct the "
                       "model (data-owner attacker) or the candidate's gradient (model-owner "
                       "attacker) from revealed values or bits")
    _add_task_options(k)
    _add_seed_options(k)
    k.add_argument("--attacker", required=True, choices=ATTACKERS,
                   help="data-owner: crafted candidates recover theta_hat and v; model-owner: "
                   "crafted weights recover G(D_a) of the data owner's candidate")
    k.add_argument("--reveal", choices=REVEALS, help="value (default), or bit: only "
                   "value > threshold (threshold 0, the model owner's in its own bisection)")
    k.add_argument("--queries", type=_positive(whole=True), help="most values or bits the "
                   "attacker may ask for (default: what the attack needs)")
    k.add_argument("--defence", default="none", choices=DEFENCES, help="bit-only, policy "
                   "(min size 10, 8 candidates a session, 4 sessions, no repeated rows), or "
                   "rounding / noise (applied by the protocol before the reveal, with the "
                   "model owner's weight bound checked inside MPC)")
    k.add_argument("--grid", type=_positive(whole=False),
                   help=f"rounding: the public grid step of revealed values, nats (default "
                   f"{DEFAULT_GRID:g})")
    k.add_argument("--noise", type=_positive(whole=False),
                   help=f"noise: each party's standard deviation, nats (default "
                   f"{DEFAULT_NOISE:g})")
    k.add_argument("--weight-bound", type=_option("weight_bound", whole=False),
                   help="rounding, noise: the public bound of the model owner's weight norm "
                   "(default: the honest norm rounded up to a power of two)")
    k.add_argument("--row-bound", type=_option("row_bound", whole=False),
                   help=f"noise: the data owner's public bound of a row's feature norm "
                   f"(default {DEFAULT_ROW_BOUND:g})")
    k.add_argument("--size", type=_option("size", whole=True), default=5,
                   help="model-owner attacker: rows of the data owner's candidate (drawn from "
                   "the task's pool)")
    k.add_argument("--backend", default="plaintext", choices=BACKENDS)
    k.add_argument("--mode", default="simulated", choices=MODES, help="crypten: simulated (one "
                   "process, TFP) or parties (real processes, TTP dealer)")
    k.add_argument("--precision-bits", type=_option("precision_bits", whole=True),
                   default=DEFAULTS["precision_bits"])
    k.add_argument("--timeout", type=_option("timeout", whole=False),
                   default=DEFAULTS["timeout"],
                   help="seconds per private session")
    k.add_argument("--out", type=_path, required=True, help="CSV of the curve: attacker, "
                   "reveal, defence, queries, target, relative_error")


def cmd_attack(args) -> int:
    from explorer.leakage.attack import Attack, check_logistic, run_attack
    from explorer.leakage.defences import DEFAULT_GRID, DEFAULT_NOISE, DEFAULT_ROW_BOUND

    reveal = args.reveal or ("bit" if args.defence == "bit-only" else "value")
    if args.defence == "bit-only" and reveal != "bit":
        raise ExplorerError("the bit-only defence reveals bits; drop --reveal value.")
    if args.defence == "rounding" and reveal == "bit":
        raise ExplorerError("the rounding defence rounds revealed values; drop --reveal bit.")
    # each defence's settings, refused beside another defence rather than silently ignored
    uses = {"grid": ("rounding",), "noise": ("noise",), "weight_bound": ("rounding", "noise"),
            "row_bound": ("noise",)}
    idle = [k for k, on in uses.items() if getattr(args, k) is not None and args.defence not in on]
    if idle:
        raise ExplorerError(f"{_option_name(idle[0])} applies only with --defence "
                            f"{' or '.join(uses[idle[0]])}; drop it.")
    choice = _seed_choice(args)
    check_logistic(choice.model)
    check_output_file(args.out)
    task = _task(args)
    seed = choice.fit(task)
    candidate = None
    if args.attacker == "model-owner":
        (c,) = make_market(task, "none", 1, args.size, random_state=args.random_state)
        candidate = (c.X, c.y)
    attack = Attack(args.attacker, reveal, args.defence, args.backend, args.mode, args.queries,
                    random_state=args.random_state, precision_bits=args.precision_bits,
                    timeout=args.timeout, grid=args.grid or DEFAULT_GRID,
                    noise=args.noise or DEFAULT_NOISE, weight_bound=args.weight_bound,
                    row_bound=args.row_bound or DEFAULT_ROW_BOUND)
    result = run_attack(seed, attack, candidate)
    _write_csv(result.frame, args.out)
    target = "theta_hat" if args.attacker == "data-owner" else "G(D_a)"
    print(f"attack: {args.attacker} on task {task.name}, target {target}, reveal {reveal}, "
          f"defence {args.defence}, backend {args.backend}"
          + (f" ({args.mode})" if args.backend == "crypten" else ""))
    print(f"relative reconstruction error {result.error:.3g} after {result.queries} revealed "
          f"{result.unit}")
    return 0


def _prices(text: str) -> tuple[float, ...]:
    try:
        prices = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, such as "
                                         f"30,25.5,40, got {text!r}") from None
    if not all(CONSTRAINTS["price"].ok(p) for p in prices):
        raise argparse.ArgumentTypeError(f"expected each price to be "
                                         f"{CONSTRAINTS['price'].describe()}, got {text!r}")
    return prices


def _add_acquire_parser(sub) -> None:
    from explorer.asks import PRICE_NOISE, PRICE_PER_SAMPLE

    q = sub.add_parser("acquire", help="the budgeted buyer: buy candidates by appraised value "
                       "per asking price within a budget, beside random buying and the oracle")
    _add_task_options(q)
    _add_seed_options(q)
    q.add_argument("--corruption", default="none",
                   help=f"one of {', '.join(CORRUPTIONS)} (default none)")
    q.add_argument("--candidates", type=_option("n_candidates", whole=True), default=10,
                   help="number of candidates (sellers; default 10)")
    q.add_argument("--size", type=_option("size", whole=True), default=30,
                   help="samples per candidate (default 30)")
    q.add_argument("--max-level", type=_option("max_level", whole=False), default=1.0,
                   help="highest corruption level (default 1)")
    q.add_argument("--min-level", type=_option("min_level", whole=False), default=0.0,
                   help="lowest corruption level (default 0)")
    q.add_argument("--flip", type=_flip, help="label noise: class pair such as 1,7, or any")
    q.add_argument("--budget", type=_option("budget", whole=False), required=True,
                   help="what the model owner may spend in all (currency units)")
    q.add_argument("--prices", type=_prices, help="the sellers' asking prices, one per "
                   "candidate in market order, e.g. 30,25.5,40 (otherwise the asks model)")
    q.add_argument("--price-per-sample", type=_option("price_per_sample", whole=False),
                   help=f"asks model: the median price of a sample (default "
                   f"{PRICE_PER_SAMPLE:g})")
    q.add_argument("--price-noise", type=_option("price_noise", whole=False),
                   help=f"asks model: the log-price's standard deviation (default "
                   f"{PRICE_NOISE:g}; 0: prices proportional to size)")
    q.add_argument("--appraiser", default="influence", choices=APPRAISER_NAMES,
                   help="what the greedy buyer appraises the candidates with")
    _add_hyper_parameters(q)
    q.add_argument("--batch-size", type=_option("batch_size", whole=True),
                   help="fine-tuning batch size (full batch if omitted)")
    q.add_argument("--random-orders", type=_option("random_orders", whole=True), default=5,
                   help="random buying: this many random orders (default 5)")
    q.add_argument("--oracle", default="auto", choices=ORACLES,
                   help="knapsack: retrain on every affordable subset (exact; small markets); "
                   "greedy: by true utility per price; auto: knapsack up to 1024 affordable "
                   "subsets")
    _add_private_options(q)
    _add_defence_options(q)
    q.add_argument("--out", type=_path, required=True, help="CSV: one row per purchase of each "
                   "strategy and run, and its round 0 (see README)")


def cmd_acquire(args) -> int:
    from explorer.acquisition import budget_summary, budgeted_acquisition
    from explorer.asks import PRICE_NOISE, PRICE_PER_SAMPLE, asking_prices, check_prices

    model = [o for o in ("price_per_sample", "price_noise") if getattr(args, o) is not None]
    if args.prices is not None and model:
        raise ExplorerError(f"{_option_name(model[0])} sets the asks model, which --prices "
                            f"replaces; drop one of them.")
    choice = _seed_choice(args)
    check_absorbs(choice.model)
    config = _config(args, names=(args.appraiser,))
    appraiser_class(choice.model, args.appraiser)
    if config.reveals_bits:
        raise ExplorerError("the budgeted buyer ranks candidates by value per price, which a "
                            "bit cannot say; use --reveal value.")
    check_output_file(args.out)
    with config.warm_processes():
        task = _task(args)
        market = make_market(task, args.corruption, args.candidates, args.size, args.max_level,
                             args.min_level, random_state=args.random_state, flip=args.flip)
        if args.prices is not None:
            prices = check_prices(args.prices, len(market))
        else:
            prices = asking_prices(market, args.price_per_sample or PRICE_PER_SAMPLE,
                                   PRICE_NOISE if args.price_noise is None else args.price_noise,
                                   random_state=args.random_state)
        seed = choice.fit(task)
        frame = budgeted_acquisition(seed, market, prices, args.budget, args.appraiser, config,
                                     args.random_orders, args.oracle, args.random_state,
                                     progress=_progress())
    _write_csv(frame, args.out)
    print(f"{_seed_line(task, seed)}, test loss {seed.test_loss:.4f} nats")
    print(f"asks: {len(market)} candidates, {prices.min():.4g} to {prices.max():.4g}, "
          f"{prices.sum():.4g} in all; budget {args.budget:g}")
    for strategy, row in budget_summary(frame).iterrows():
        if row.runs == 1:
            print(f"{strategy} ({row.method}): {row.bought_mean:.0f} bought for "
                  f"{row.spent_mean:.4g}, test loss {row.test_loss_mean:.4f}")
        else:
            print(f"{strategy} ({row.method}, {row.runs} orders): {row.bought_mean:.3g} "
                  f"± {row.bought_std:.2g} bought for {row.spent_mean:.4g} ± "
                  f"{row.spent_std:.2g}, test loss {row.test_loss_mean:.4f} ± "
                  f"{row.test_loss_std:.4f} (mean ± sd)")
    print(f"wrote {len(frame)} rows to {args.out}")
    return 0


def cmd_tasks(args) -> int:
    for name, spec in TASKS.items():
        print(f"{name}: {spec.description}; default lam {spec.lam:g} (networks "
              f"{spec.network_lam:g})")
    return 0


def _progress():
    if not sys.stderr.isatty():
        return None

    def report(phase: str, done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\r{phase}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return report


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    commands = {"appraise": cmd_appraise, "sample-candidate": cmd_sample_candidate,
                "tasks": cmd_tasks, "export-encoding": cmd_export_encoding, "party": cmd_party,
                "reproduce": cmd_reproduce, "attack": cmd_attack, "acquire": cmd_acquire}
    try:
        args = build_parser().parse_args(argv)
        code = commands[args.command](args)
    except ExplorerError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)  # one line
        code = 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted.", file=sys.stderr)
        code = 130
    _leave_broken_session(code)
    return code


def _leave_broken_session(code: int) -> None:
    """A party whose session broke still holds gloo's process group, whose destructors abort
    once peers are gone: end the process here, with the code already reported."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
