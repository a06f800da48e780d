"""The model owner's fitted seed model: theta_hat on D_tr, with D_tr and D_te kept beside it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from explorer import model as logistic
from explorer import network
from explorer.constraints import DEFAULTS, check_params
from explorer.errors import ConvergenceWarning, ExplorerError
from explorer.loaders.user import check_magnitudes
from explorer.tasks import Task

# Candidate L2 strengths for cross-validation, 1e-4 .. 1e2 in half-decade steps (13 values): covers
# the tasks' recommended defaults (0.01 .. 1) with two decades of room either side.
LAM_GRID: np.ndarray = np.logspace(-4, 2, 13)


@dataclass(frozen=True)
class LamChoice:
    """A cross-validated choice of the L2 strength on the seed set D_tr.

    ``curve`` has one row per grid value, ascending: ``lam``, ``log_loss`` (mean over folds of
    the held-out mean cross-entropy, nats) and ``log_loss_sd`` (its standard deviation over folds).
    ``folds`` is the number of folds actually used.
    """

    lam: float
    curve: pd.DataFrame
    folds: int


@dataclass(frozen=True)
class SeedModel:
    """theta_hat (d + 1, C) minimising J on D_tr (see explorer.model), and what it was fitted on.

    Tensors are float64 (features) and int64 (labels).
    """

    theta: torch.Tensor
    lam: float
    n_classes: int
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    grad_norm: float
    converged: bool
    lam_choice: LamChoice | None = None  # set when lam was chosen by cross-validation

    @property
    def n_seed(self) -> int:
        return len(self.y_train)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def test_loss(self) -> float:
        """Mean test cross-entropy at theta_hat, nats."""
        return logistic.mean_loss(self.theta, self.X_test, self.y_test)

    @property
    def test_accuracy(self) -> float:
        return logistic.accuracy(self.theta, self.X_test, self.y_test)

    family = "logistic"

    def check_candidate(self, X, y) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate a candidate dataset against this model (see ``checked_candidate``)."""
        return checked_candidate(self.n_features, self.n_classes, X, y)


@dataclass(frozen=True)
class NetworkSeed:
    """The ``mlp`` family's seed model (explorer.network): flat parameters theta (P,) at a
    local minimum of J on D_tr reached from the seeded start ``random_state``, its
    architecture, and what it was fitted on. ``tol`` is the absolute gradient-norm tolerance
    it was fitted to; the ground truth retrains with the same optimiser and tolerance."""

    architecture: network.Architecture
    theta: torch.Tensor
    lam: float
    n_classes: int
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    grad_norm: float
    converged: bool
    tol: float
    random_state: int = 0

    family = "mlp"

    @property
    def n_seed(self) -> int:
        return len(self.y_train)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def test_loss(self) -> float:
        """Mean test cross-entropy at theta_hat, nats."""
        return network.mean_loss(self.architecture, self.theta, self.X_test, self.y_test)

    @property
    def test_accuracy(self) -> float:
        return network.accuracy(self.architecture, self.theta, self.X_test, self.y_test)

    def check_candidate(self, X, y) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate a candidate dataset against this model (see ``checked_candidate``)."""
        return checked_candidate(self.n_features, self.n_classes, X, y)


class _Of:
    """A read-only attribute read from the same-named attribute of one of an object's parts
    (``part``: the name of the attribute holding it)."""

    def __init__(self, part: str):
        self.part = part

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(getattr(obj, self.part), self.name)


@dataclass(frozen=True)
class LastLayerSeed:
    """The ``last-layer`` family's seed model: an mlp seed model's hidden layers frozen as a
    feature map phi(x) (n, h_last), and its head refitted as the logistic model ``head`` on
    phi of the seed set (the same optimum: at the network's minimum the head's gradient is
    zero). Candidates are checked and given in the raw features; the appraisers and the
    ground truth see phi of them."""

    network: NetworkSeed
    head: SeedModel

    family = "last-layer"

    def features(self, X: torch.Tensor) -> torch.Tensor:
        """phi(X): the frozen hidden layers' activations (n, h_last)."""
        s = self.network
        return network.hidden_features(s.architecture, s.theta, X)

    # the network's architecture, features and data sets; the head's fit and its figures
    architecture = _Of("network")
    n_features = _Of("network")
    X_train = _Of("network")
    y_train = _Of("network")
    X_test = _Of("network")
    y_test = _Of("network")
    lam = _Of("head")
    n_classes = _Of("head")
    n_seed = _Of("head")
    grad_norm = _Of("head")
    test_loss = _Of("head")
    test_accuracy = _Of("head")

    @property
    def converged(self) -> bool:
        return self.head.converged and self.network.converged

    def check_candidate(self, X, y) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate a candidate dataset against this model (see ``checked_candidate``)."""
        return checked_candidate(self.n_features, self.n_classes, X, y)


def freeze_hidden(seed: NetworkSeed, tol: float = 1e-8) -> LastLayerSeed:
    """The last-layer seed model of an mlp seed model: its head refitted, warm-started from the
    network's output layer, as a logistic model on the hidden activations of the seed set."""
    arch = seed.architecture
    last = arch.unflatten(seed.theta)[-1]
    phi_train = network.hidden_features(arch, seed.theta, seed.X_train)
    res = logistic.fit(phi_train, seed.y_train, seed.n_classes, seed.lam, tol=tol,
                       theta0=last.clone())
    head = SeedModel(theta=res.theta, lam=seed.lam, n_classes=seed.n_classes,
                     X_train=phi_train, y_train=seed.y_train,
                     X_test=network.hidden_features(arch, seed.theta, seed.X_test),
                     y_test=seed.y_test, grad_norm=res.grad_norm, converged=res.converged)
    return LastLayerSeed(network=seed, head=head)


def checked_candidate(n_features: int, n_classes: int, X,
                      y) -> tuple[torch.Tensor, torch.Tensor]:
    """A candidate dataset validated for a model of ``n_features`` and ``n_classes``, as
    tensors (m, d), (m,).

    X: real numbers (m, d), standardised, each within MAX_STANDARDISED seed-set standard
    deviations; y: whole class indices 0..K-1 (whole-valued floats are accepted).
    """
    X = _real_array(X, "the candidate's features")
    y = _real_array(y, "the candidate's labels", labels=True)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ExplorerError(f"a candidate must have shape (samples, {n_features}), got "
                            f"{X.shape}.")
    if len(X) == 0:
        raise ExplorerError("the candidate dataset is empty; give it at least one sample.")
    if y.shape != (len(X),):
        raise ExplorerError(f"a candidate of {len(X)} samples needs {len(X)} labels, got "
                            f"shape {y.shape}.")
    if not np.isfinite(X).all():
        raise ExplorerError("the candidate's features contain NaN or infinite values; remove "
                            "or impute them first.")
    check_magnitudes(X)
    if not np.issubdtype(y.dtype, np.integer):
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise ExplorerError(f"the candidate's label {y[i].item()!r} (sample {i}, from 0) "
                                f"is not a whole number; labels must be whole class "
                                f"indices 0..{n_classes - 1}.")
    if y.min() < 0 or y.max() >= n_classes:
        bad = sorted(set(np.unique(y).tolist()) - set(range(n_classes)))
        raise ExplorerError(f"the candidate has labels {bad[:5]} that the model does not "
                            f"know; labels must be 0..{n_classes - 1}.")
    return logistic.as_features(X), logistic.as_labels(y.astype(np.int64))


def _real_array(values, what: str, labels: bool = False) -> np.ndarray:
    """``values`` as a float64 (features) or numeric (labels) array; one sentence otherwise."""
    kinds = "iuf" if labels else "biuf"
    try:
        array = np.asarray(values.detach() if isinstance(values, torch.Tensor) else values)
        if array.dtype.kind == "O":
            array = array.astype(np.float64)
    except (TypeError, ValueError, RuntimeError):
        array = None
    if array is None or array.dtype.kind not in kinds:
        kind = "true/false values" if array is not None and array.dtype.kind == "b" else \
            f"{type(values).__name__}" + (f" of {array.dtype}" if array is not None else "")
        need = ("whole class indices (class names are read from candidate files only)"
                if labels else "an array of real numbers")
        raise ExplorerError(f"{what} must be {need}, got {kind}.")
    return array if labels else array.astype(np.float64)


def choose_lam(X, y, n_classes: int, grid: Sequence[float] | np.ndarray = LAM_GRID,
               folds: int = 5, random_state: int | None = 0) -> LamChoice:
    """Choose lam by stratified K-fold cross-validation on the seed set (X (n, d), y (n,)) alone.

    Each fold's model minimises J on its training folds with that part's own n, so lam keeps its
    mean-loss meaning; it is scored by the held-out mean log-loss (nats). The lam with the smallest
    mean over folds wins (ties: the larger lam). With a class rarer than ``folds``, as many folds
    as the rarest class allows are used (at least 2).
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ExplorerError(f"cross-validation needs a whole number of folds >= 2, got {folds!r}.")
    try:
        lams = np.asarray(grid, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ExplorerError("the lam grid must be a list of positive numbers.") from None
    if lams.size == 0 or not np.isfinite(lams).all() or (lams <= 0).any():
        raise ExplorerError(f"the lam grid must be a non-empty list of positive finite numbers, "
                            f"got {lams.tolist()[:5]}.")
    lams = np.unique(lams)  # ascending, duplicates dropped
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape != (len(X),):
        raise ExplorerError(f"cross-validation needs X of shape (n, d) and y of shape (n,), got "
                            f"{X.shape} and {y.shape}.")
    rarest = int(np.unique(y, return_counts=True)[1].min()) if len(y) else 0
    k = min(int(folds), rarest)
    if k < 2:
        raise ExplorerError(f"cross-validation needs at least 2 seed samples of every class but "
                            f"the rarest has {rarest}; add samples or give lam as a number.")
    splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
                  .split(X, y))
    labels = list(range(n_classes))
    losses = np.empty((len(lams), k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, lam in enumerate(lams):
            for j, (tr, te) in enumerate(splits):
                res = logistic.fit(X[tr], y[tr], n_classes, float(lam))
                p = logistic.class_probabilities(res.theta, logistic.as_features(X[te])).numpy()
                losses[i, j] = log_loss(y[te], p, labels=labels)
    mean = losses.mean(axis=1)
    best = int(np.flatnonzero(mean == mean.min())[-1])
    curve = pd.DataFrame({"lam": lams, "log_loss": mean, "log_loss_sd": losses.std(axis=1)})
    return LamChoice(lam=float(lams[best]), curve=curve, folds=k)


def fit_seed_model(task: Task, lam: float | str | None = None, tol: float = 1e-8,
                   max_iter: int = 2000, model: str = DEFAULTS["model"],
                   hidden: tuple[int, ...] = DEFAULTS["hidden"],
                   activation: str = DEFAULTS["activation"],
                   random_state: int = 0) -> SeedModel | NetworkSeed | LastLayerSeed:
    """Fit the model owner's seed model on the task's seed training set to gradient norm
    ``tol`` (relative to max(1, ||grad J|| at the start)).

    ``model`` is the family (explorer.constraints.MODELS): "logistic", theta_hat (d + 1, C);
    "mlp", a network of ``hidden`` widths and ``activation`` from the seeded start
    ``random_state`` (explorer.network); "last-layer", that network with its hidden layers
    frozen and its head refitted as a logistic model on their activations
    (``freeze_hidden``). ``lam`` is the L2 strength (default ``task.lam``, or
    ``task.network_lam`` for a network), or ``"cv"`` to choose a logistic model's by
    cross-validation on the seed set (``choose_lam``; kept as ``lam_choice``).
    """
    if not isinstance(task, Task):
        raise ExplorerError(f"fit_seed_model takes a Task from load_task, got "
                            f"{type(task).__name__}.")
    check_params({"tol": tol, "max_iter": max_iter, "model": model,
                  "random_state": random_state})
    if model != "logistic":
        return _fit_network_seed(task, lam, tol, max_iter, model, hidden, activation,
                                 random_state)
    choice = None
    if isinstance(lam, str):
        if lam != "cv":
            raise ExplorerError(f"lam must be a number or 'cv', got {lam!r}; use a positive "
                                f"number or 'cv'.")
        choice = choose_lam(task.X_train, task.y_train, task.n_classes)
        lam = choice.lam
    lam = task.lam if lam is None else lam
    check_params({"lam": lam})
    X_tr, y_tr = logistic.as_features(task.X_train), logistic.as_labels(task.y_train)
    res = logistic.fit(X_tr, y_tr, task.n_classes, lam, tol=tol, max_iter=max_iter)
    return SeedModel(theta=res.theta, lam=float(lam), n_classes=task.n_classes, X_train=X_tr,
                     y_train=y_tr, X_test=logistic.as_features(task.X_test),
                     y_test=logistic.as_labels(task.y_test), grad_norm=res.grad_norm,
                     converged=res.converged, lam_choice=choice)


def _fit_network_seed(task: Task, lam, tol: float, max_iter: int, family: str,
                      hidden, activation: str, random_state: int):
    if isinstance(lam, str):
        raise ExplorerError(f"cross-validated lam ('cv') is for the logistic model; give the "
                            f"{family} seed model a number, or leave lam at the task's "
                            f"{task.network_lam:g}.")
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not 1 <= len(hidden) <= 2:
        raise ExplorerError(f"an mlp has one or two hidden layers, got {len(hidden)} widths "
                            f"{hidden!r}; give one or two widths, e.g. --hidden 64.")
    check_params({"activation": activation})
    for width in hidden:
        check_params({"hidden": width})
    lam = task.network_lam if lam is None else lam
    check_params({"lam": lam})
    arch = network.architecture(task.n_features, task.n_classes, hidden, activation)
    X_tr, y_tr = logistic.as_features(task.X_train), logistic.as_labels(task.y_train)
    res = network.fit(X_tr, y_tr, arch, float(lam), tol=tol, max_iter=max_iter,
                      random_state=random_state)
    seed = NetworkSeed(architecture=arch, theta=res.theta, lam=float(lam),
                       n_classes=task.n_classes, X_train=X_tr, y_train=y_tr,
                       X_test=logistic.as_features(task.X_test),
                       y_test=logistic.as_labels(task.y_test), grad_norm=res.grad_norm,
                       converged=res.converged, tol=res.tol, random_state=random_state)
    return freeze_hidden(seed) if family == "last-layer" else seed


@dataclass(frozen=True)
class SeedChoice:
    """Which seed model the model owner fits, checked when made: the family ``model``
    (explorer.constraints.MODELS), a network's ``hidden`` widths (one or two) and
    ``activation`` (ignored by the logistic model), and ``lam``: None for the task's default
    of the family (``Task.lam``, or ``Task.network_lam`` for a network), a positive number, or
    "cv" to cross-validate a logistic model's (``choose_lam``)."""

    model: str = DEFAULTS["model"]
    hidden: tuple[int, ...] = DEFAULTS["hidden"]
    activation: str = DEFAULTS["activation"]
    lam: float | str | None = None

    def __post_init__(self) -> None:
        check_params({"model": self.model, "activation": self.activation})
        hidden = (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else self.hidden
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) \
                or not 1 <= len(hidden) <= 2:
            raise ExplorerError(f"an mlp has one or two hidden layers, got {self.hidden!r}; "
                                f"give one or two widths, e.g. (64,) or (64, 32).")
        for width in hidden:
            check_params({"hidden": width})
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if isinstance(self.lam, str):
            if self.lam != "cv":
                raise ExplorerError(f"lam must be a number or 'cv', got {self.lam!r}.")
            if self.network:
                raise ExplorerError(f"lam cv (cross-validation) is defined for the logistic "
                                    f"seed model; give the {self.model} seed model a number, "
                                    f"or leave lam out for the task's network default.")
        elif self.lam is not None:
            check_params({"lam": self.lam})

    @property
    def network(self) -> bool:
        """Whether the seed model is a network (mlp or last-layer)."""
        return self.model != "logistic"

    def describe(self) -> str:
        """In words, before fitting: "logistic", or e.g. "mlp, hidden 64, relu"."""
        if not self.network:
            return self.model
        return f"{self.model}, hidden {','.join(map(str, self.hidden))}, {self.activation}"

    def fit(self, task: Task, tol: float = 1e-8, max_iter: int = 2000,
            random_state: int = 0) -> SeedModel | NetworkSeed | LastLayerSeed:
        """The seed model of ``task`` (``fit_seed_model``)."""
        return fit_seed_model(task, lam=self.lam, tol=tol, max_iter=max_iter, model=self.model,
                              hidden=self.hidden, activation=self.activation,
                              random_state=random_state)


# the paper's seed model: the task's L2 logistic regression at its default lam
LOGISTIC = SeedChoice()


def model_description(seed: SeedModel | NetworkSeed | LastLayerSeed) -> str:
    """The seed model's family and widths in words: "logistic 30-2", "mlp 784-64-10 relu",
    "last-layer 784-64-10 relu" (input, hidden and output widths; two classes read as 2)."""
    if isinstance(seed, SeedModel):
        return f"logistic {seed.n_features}-{seed.n_classes}"
    arch = seed.architecture
    return f"{seed.family} {arch.describe()} {arch.activation}"


# a seed model of any family
AnySeed = SeedModel | NetworkSeed | LastLayerSeed
