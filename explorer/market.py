"""The candidate market, the data owners' side: candidate datasets drawn from a task's pool and
corrupted in a known way, each carrying its corruption kind and level.

Corruptions (``level`` is always in [0, 1]):

- ``none``: a clean random sample of the pool (level 0).
- ``label-noise``: each label of the flip pair (a, b) is swapped with probability ``level``;
  with ``flip="any"`` every label is replaced by a uniformly drawn different class instead.
- ``imbalance``: exactly round(level * size) samples of the target class, the rest drawn from the
  other classes.
- ``missing-features``: round(level * d) randomly chosen columns are missing; the model owner
  imputes them with the seed training mean, which is 0 in standardised units.
- ``duplicates``: round(level * size) samples are copies of the model owner's seed training set
  (the data owner resells what the buyer already has), the rest fresh pool samples.
- ``feature-noise``: Gaussian noise of standard deviation ``level`` (in seed-set standard
  deviations) is added to every feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from explorer.constraints import check_params, is_whole
from explorer.errors import ExplorerError
from explorer.tasks import Task

CORRUPTIONS = ("none", "label-noise", "imbalance", "missing-features", "duplicates",
               "feature-noise")


@dataclass(frozen=True)
class Candidate:
    """One candidate dataset D_a: standardised features (m, d), labels (m,), and its provenance."""

    index: int
    X: np.ndarray
    y: np.ndarray
    kind: str
    level: float
    details: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.y)


def levels(n_candidates: int, max_level: float, min_level: float = 0.0) -> np.ndarray:
    """Corruption levels spread evenly over [min_level, max_level], one per candidate."""
    return np.linspace(min_level, max_level, n_candidates)


def _check(task: Task, kind: str, n_candidates: int, size: int, min_level: float,
           max_level: float, random_state: int, flip, target_class: int) -> None:
    if not isinstance(task, Task):
        raise ExplorerError(f"make_market takes a Task from load_task, got "
                            f"{type(task).__name__}.")
    if not isinstance(kind, str) or kind not in CORRUPTIONS:
        raise ExplorerError(f"unknown corruption {kind!r}; choose one of "
                            f"{', '.join(CORRUPTIONS)}.")
    check_params({"n_candidates": n_candidates, "size": size, "max_level": max_level,
                  "min_level": min_level, "random_state": random_state,
                  "target_class": target_class})
    pool = len(task.y_pool)
    if size > pool:
        raise ExplorerError(f"a candidate of {size} samples is larger than the pool of {pool}; "
                            f"use --size {pool} or less.")
    if min_level > max_level:
        raise ExplorerError(f"the min-level {min_level} is above the max-level {max_level}.")
    if not target_class < task.n_classes:
        raise ExplorerError(f"target class {target_class} is not a class of task "
                            f"{task.name!r} (0..{task.n_classes - 1}).")
    _flip_pair(task, flip)


def make_market(task: Task, kind: str = "none", n_candidates: int = 10, size: int = 100,
                max_level: float = 1.0, min_level: float = 0.0, random_state: int = 0,
                flip: tuple[int, int] | str | None = None,
                target_class: int = 0) -> list[Candidate]:
    """Synthesize ``n_candidates`` candidate datasets of ``size`` samples with the given corruption.

    Levels are spread over [min_level, max_level] (all 0 for ``none``). Candidates are disjoint
    slices of the pool when it is large enough, otherwise independent draws from it. ``flip``
    (label noise) is a class pair or "any" (default: the task's flip pair); ``target_class`` is the
    class whose share ``imbalance`` sets.
    """
    _check(task, kind, n_candidates, size, min_level, max_level, random_state, flip, target_class)
    rng = np.random.default_rng([random_state, 2])
    lv = np.zeros(n_candidates) if kind == "none" else levels(n_candidates, max_level, min_level)
    pool = len(task.y_pool)
    if kind == "imbalance":
        slices = [_imbalanced_indices(task, size, float(level), target_class, rng)
                  for level in lv]
    elif n_candidates * size <= pool:
        perm = rng.permutation(pool)
        slices = [perm[i * size:(i + 1) * size] for i in range(n_candidates)]
    else:
        slices = [rng.choice(pool, size=size, replace=False) for _ in range(n_candidates)]
    pair = _flip_pair(task, flip) if kind == "label-noise" else None
    market = []
    for i, (idx, level) in enumerate(zip(slices, lv, strict=True)):
        # per-candidate streams: a corruption's draws never shift another candidate's
        draw = np.random.default_rng([random_state, 3, i])
        order = np.random.default_rng([random_state, 4, i]).permutation(size)
        X, y = task.X_pool[idx].copy(), task.y_pool[idx].copy()
        details: dict = {}
        if kind == "label-noise":
            y, details = _label_noise(y, float(level), pair, task.n_classes, draw)
        elif kind == "missing-features":
            k = int(round(level * task.n_features))
            cols = np.sort(draw.choice(task.n_features, size=k, replace=False))
            X[:, cols] = 0.0  # the seed-set mean in standardised units
            details = {"missing_columns": cols.tolist()}
        elif kind == "duplicates":
            k = int(round(level * size))
            n_tr = len(task.y_train)
            dup = draw.choice(n_tr, size=k, replace=k > n_tr)
            X[:k], y[:k] = task.X_train[dup], task.y_train[dup]
            details = {"duplicates": k}
        elif kind == "feature-noise":
            X = X + draw.normal(scale=level, size=X.shape) if level > 0 else X
        # shuffled so that corrupted rows are not all at the front (fine-tuning batches)
        market.append(Candidate(index=i, X=X[order], y=y[order], kind=kind, level=float(level),
                                details=details))
    return market


def _flip_pair(task: Task, flip) -> tuple[int, int] | None:
    """The class pair to swap, or None for "any" label."""
    if flip is None:
        flip = task.flip_pair
    if flip is None or (isinstance(flip, str) and flip == "any"):
        return None
    if isinstance(flip, str) or not isinstance(flip, (tuple, list)) or len(flip) != 2 \
            or not all(is_whole(c) for c in flip):
        raise ExplorerError(f"flip must be two classes such as (1, 7) or 'any', got {flip!r}.")
    a, b = (int(c) for c in flip)
    if a == b or not (0 <= a < task.n_classes and 0 <= b < task.n_classes):
        raise ExplorerError(f"flip pair {a},{b} must be two different classes of task "
                            f"{task.name!r} (0..{task.n_classes - 1}).")
    return a, b


def _label_noise(y: np.ndarray, p: float, pair: tuple[int, int] | None, n_classes: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    y = y.copy()
    if pair is None:
        flip = rng.random(len(y)) < p
        # a uniformly drawn class other than the true one
        offset = rng.integers(1, n_classes, size=int(flip.sum()))
        y[flip] = (y[flip] + offset) % n_classes
        eligible = len(y)
    else:
        a, b = pair
        in_pair = (y == a) | (y == b)
        flip = in_pair & (rng.random(len(y)) < p)
        y[flip] = np.where(y[flip] == a, b, a)
        eligible = int(in_pair.sum())
    return y, {"flipped": int(flip.sum()), "eligible": eligible}


def _imbalanced_indices(task: Task, size: int, level: float, target: int,
                        rng: np.random.Generator) -> np.ndarray:
    n_target = int(round(level * size))
    members = np.flatnonzero(task.y_pool == target)
    others = np.flatnonzero(task.y_pool != target)
    if n_target > len(members) or size - n_target > len(others):
        raise ExplorerError(f"the pool has {len(members)} samples of class {target} and "
                            f"{len(others)} of the others, too few for a candidate of {size} "
                            f"with {n_target} of class {target}; use a smaller --size.")
    return np.concatenate([rng.choice(members, n_target, replace=False),
                           rng.choice(others, size - n_target, replace=False)])
