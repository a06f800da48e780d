"""Repeated runs and hyper-parameter sweeps: rank correlations over fresh tasks or markets
(Table 2, Figure 6), fine-tuning's batch size x epochs (Figure 3) and its budgets (Table 1)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from explorer.config import AppraiserConfig
from explorer.constraints import DEFAULTS
from explorer.errors import AppraisalWarning, ExplorerError
from explorer.experiments import INFLUENCE, appraise_market
from explorer.market import Candidate, make_market
from explorer.metrics import rank_correlations, spearman
from explorer.progress import Progress
from explorer.seed import LOGISTIC, AnySeed, SeedChoice
from explorer.tasks import load_task


def repeated_rank_correlations(task_name: str, kind: str, n_candidates: int, size: int,
                               max_level: float, min_level: float = 0.0, runs: int = 5,
                               config: AppraiserConfig = INFLUENCE,
                               task_options: dict | None = None,
                               market_options: dict | None = None, first_run: int = 0,
                               progress: Progress | None = None,
                               seed_choice: SeedChoice = LOGISTIC) -> pd.DataFrame:
    """Spearman rho against utility (and against level) per run and appraiser.

    Run r (first_run, first_run + 1, ...) rebuilds the task (split and, if asked, dropped
    columns), the seed model (``seed_choice``: which one, explorer.seed.SeedChoice) and the market
    from seed r. Columns: run, model, appraiser, backend, spearman, spearman_level,
    seed_accuracy.
    """
    if not isinstance(seed_choice, SeedChoice):
        raise ExplorerError("seed_choice must be an explorer.seed.SeedChoice.")
    rows = []
    backend = config.backend
    for run in range(first_run, first_run + runs):
        task = load_task(task_name, random_state=run, **(task_options or {}))
        model = seed_choice.fit(task)
        market = make_market(task, kind, n_candidates, size, max_level, min_level, random_state=run,
                             **(market_options or {}))
        results = appraise_market(model, market, config)
        by_level = rank_correlations(results, "level")
        for name, rho in rank_correlations(results).items():
            rows.append({"run": run, "model": model.family, "appraiser": name,
                         "backend": backend, "spearman": rho,
                         "spearman_level": by_level[name],
                         "seed_accuracy": model.test_accuracy})
        if progress:
            progress(f"{task_name} {kind}", run - first_run + 1, runs)
    return pd.DataFrame(rows)


def repeated_markets(seed: AnySeed, task, kind: str, n_candidates: int, size: int,
                     max_level: float, min_level: float = 0.0, repeats: int = 5,
                     config: AppraiserConfig = INFLUENCE, market_options: dict | None = None,
                     first_run: int = 0, progress: Progress | None = None) -> pd.DataFrame:
    """The paper's Figure 6 protocol: one seed model, ``repeats`` freshly sampled markets
    (market seeds first_run, first_run + 1, ...).

    Rows as ``appraise_market`` plus a ``run`` column (the market's seed).
    """
    frames = []
    for run in range(first_run, first_run + repeats):
        market = make_market(task, kind, n_candidates, size, max_level, min_level, random_state=run,
                             **(market_options or {}))
        frame = appraise_market(seed, market, config)
        frames.append(frame.assign(run=run))
        if progress:
            progress("markets", run - first_run + 1, repeats)
    return pd.concat(frames, ignore_index=True)


def finetune_grid(seed: AnySeed, candidates: Sequence[Candidate], utilities: pd.DataFrame,
                  batch_sizes: Sequence[int | None], epochs: Sequence[int],
                  lr: float = DEFAULTS["lr"]) -> pd.DataFrame:
    """The paper's Figure 3: fine-tuning's rank correlation and runtime over batch size x
    epochs (``None`` = full batch). Columns: batch_size, epochs, steps, spearman, seconds."""
    n_union = seed.n_seed + max(c.size for c in candidates)
    rows = []
    for batch in batch_sizes:
        per_epoch = 1 if batch is None else -(-n_union // batch)
        for ep in epochs:
            ft = AppraiserConfig(names=("finetune",), lr=lr, steps=ep * per_epoch,
                                 batch_size=batch)
            frame = appraise_market(seed, candidates, ft, utilities)
            rows.append({"batch_size": batch, "epochs": ep, "steps": ep * per_epoch,
                         "spearman": spearman(frame.value, frame.utility),
                         "seconds": frame.seconds.sum()})
    return pd.DataFrame(rows)


def finetune_steps(budget: float, n_seed: int, size: int) -> int:
    """Full-batch fine-tuning steps that fit in ``budget`` times influence's work on one
    candidate of ``size`` samples, from public sizes only: the same on any machine, at any load.

    Cost model, in per-sample gradient passes (one forward and backward pass of the model on
    one sample, what both appraisers are made of): influence appraises a candidate with one
    pass over its ``size`` samples (its v = H^-1 g_te is the model owner's one-off set-up,
    shared by every candidate of a market, and not charged); a full-batch fine-tuning step
    makes one pass over D_tr ∪ D_a, ``n_seed + size`` samples. Neither fine-tuning's final
    test-loss reading nor influence's dot product with v is charged. At least one step.
    """
    if budget <= 0 or n_seed < 1 or size < 1:
        raise ExplorerError(f"the budget and the sizes must be positive, got budget "
                            f"{budget:g}, n_seed {n_seed}, size {size}.")
    return max(1, int(round(budget * size / (n_seed + size))))


def finetune_budgets(seed: AnySeed, candidates: Sequence[Candidate], utilities: pd.DataFrame,
                     lrs: Sequence[float] = (0.001, 0.1, 10.0),
                     budgets: Sequence[int] = (1, 4, 16),
                     config: AppraiserConfig = INFLUENCE) -> pd.DataFrame:
    """The paper's Table 1: fine-tuning limited to 1x/4x/16x influence's work per candidate
    (``finetune_steps``: a cost model of public sizes, not a clock), at several learning rates.

    Columns: lr, budget, steps, spearman, spearman_level, influence_spearman,
    influence_spearman_level, diverges (a learning rate at which the steps cannot converge is
    not run: its rhos are NaN and ``diverges`` is True). The ``_level`` rhos rank against
    minus the noise level (less noise = more valuable). ``config`` gives the other settings
    (backend, the damping of a network; its names are ignored).
    """
    sizes = sorted({c.size for c in candidates})
    if len(sizes) != 1:
        raise ExplorerError(f"finetune_budgets needs candidates of one size (its budget is per "
                            f"candidate), got sizes {sizes}.")
    inf = appraise_market(seed, candidates, config.with_(names=("influence",)), utilities)
    finetune = config.with_(names=("finetune",))
    rows = []
    for budget in budgets:
        steps = finetune_steps(budget, seed.n_seed, sizes[0])
        for lr in lrs:
            row = {"lr": lr, "budget": budget, "steps": steps,
                   "influence_spearman": spearman(inf.value, inf.utility),
                   "influence_spearman_level": spearman(inf.value, -inf.level)}
            tuned = finetune.with_(lr=lr, steps=steps)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", AppraisalWarning)  # past the bound: known
                    frame = appraise_market(seed, candidates, tuned, utilities)
            except ExplorerError:  # the learning rate diverges (FineTune says why)
                rows.append({**row, "spearman": np.nan, "spearman_level": np.nan,
                             "diverges": True})
                continue
            rows.append({**row, "spearman": spearman(frame.value, frame.utility),
                         "spearman_level": spearman(frame.value, -frame.level),
                         "diverges": False})
    return pd.DataFrame(rows)
