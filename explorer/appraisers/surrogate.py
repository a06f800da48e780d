"""``surrogate``: the blog's model-data efficacy (McAteer, "Private ML Marketplaces").

The model owner distils theta_hat into a surrogate of public size and hands it over; the data
owner appraises each candidate alone, in the clear, against it, and reports the value. Once the
surrogate is handed over nothing is secret between them, so this appraiser has no private form:
it runs on torch tensors only (the plaintext runner), and a private configuration refuses it.

Distillation follows Bastani, Kim and Bastani (2017, "Interpretability via model extraction"):
the seed features plus DISTILL_SAMPLES rows drawn from a Gaussian fitted to them, labelled with
theta_hat's class probabilities (soft labels), so the surrogate learns the model rather than
the seed set's labels. Two kinds, each with a public ``size``:

- ``tree``: a regression tree of depth <= size fitted to the probabilities (scikit-learn's
  DecisionTreeRegressor, at least MIN_LEAF distillation rows a leaf). Handed over: its splits
  (feature, threshold), its leaves' class probabilities q (L, K) and, for the ``test-loss``
  score, each leaf's weight N_l = n_seed x the share of distillation rows reaching it (the seed
  set's pseudo-count) and the test set's label counts T (L, K) per leaf.
- ``logistic``: a logistic model on the top-``size`` principal directions P (k, d) of the seed
  features, distilled with soft targets and almost no penalty (DISTILL_LAM), so that with k = d
  it is theta_hat. Handed over: P, its parameters theta_s (k + 1, C) and, for ``test-loss``,
  its influence weights v_s / n_seed, v_s = H_s^-1 g_te,s computed by the model owner exactly
  as influence's v (explorer.appraisers.influence) with the surrogate in theta_hat's place and
  the projected seed and test sets in theirs.

Scores (higher = more valuable, nats):

- ``test-loss``: the surrogate's predicted test-loss reduction from adding the candidate. For
  the tree it is exact: the candidate's rows join the leaves as label counts k (L, K), each
  leaf refits to q' = (N q + k) / (N + m_l), and the value is (sum T log q' - sum T log q) /
  n_test, the mean test loss of the surrogate before minus after. For the logistic surrogate it
  is first-order influence on the surrogate, v_s . G_s(D_a) / n_seed.
- ``agreement``: the candidate's mean log-likelihood under the surrogate (minus its mean
  cross-entropy): how unsurprising the data is to the surrogate.

Orientation as everywhere: a higher value means a more valuable candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.tree import DecisionTreeRegressor

from explorer import model
from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.batch import row_mask
from explorer.appraisers.influence import influence_vector
from explorer.appraisers.logistic import cross_entropy_sums, gradient_sums
from explorer.appraisers.tensors import matmul
from explorer.constraints import DEFAULTS, check_params
from explorer.errors import ExplorerError
from explorer.model import DTYPE, with_bias
from explorer.seed import SeedModel

# Rows drawn from the Gaussian fitted to the seed features, beside the seed rows themselves.
DISTILL_SAMPLES = 2000
# L2 strength of the logistic surrogate's distillation: almost none, so that with k = d the
# soft targets (theta_hat's own probabilities) give back theta_hat.
DISTILL_LAM = 1e-6
# Distillation rows a tree leaf holds at least, and the deepest tree offered (2^12 leaves).
MIN_LEAF = 5
MAX_TREE_DEPTH = 12
# Leaf probabilities are kept above this: a test row in a leaf certain of another class would
# otherwise cost an infinite loss.
LEAF_FLOOR = 1e-6

PRIVATE_REFUSAL = ("the surrogate appraiser is run by the data owner alone, in the clear, on the "
                   "surrogate the model owner hands over, so it has no private form; appraise "
                   "it with the plaintext backend, or choose influence, gradient-norm, finetune "
                   "or newton for MPC.")


def distillation_set(seed: SeedModel, n_samples: int = DISTILL_SAMPLES,
                     random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The rows the surrogate learns from, (n_seed + n_samples, d), and theta_hat's class
    probabilities on them, (n, K): the seed features, then draws from a Gaussian with the seed
    features' mean and covariance (Bastani et al. 2017 sample from a fitted mixture)."""
    X = seed.X_train.numpy()
    rng = np.random.default_rng([random_state, 11])
    cov = np.atleast_2d(np.cov(X, rowvar=False)) + 1e-6 * np.eye(X.shape[1])
    drawn = rng.multivariate_normal(X.mean(axis=0), cov, size=n_samples, method="eigh")
    rows = np.vstack([X, drawn])
    return rows, model.class_probabilities(seed.theta, torch.from_numpy(rows)).numpy()


def principal_directions(X: np.ndarray, k: int) -> np.ndarray:
    """The top-k eigenvectors of X^T X / n as rows (k, d), largest first, each signed so that
    its largest entry is positive (a deterministic sign)."""
    _, vectors = np.linalg.eigh(X.T @ X / len(X))
    P = vectors[:, ::-1][:, :k].T
    signs = np.sign(P[np.arange(k), np.abs(P).argmax(axis=1)])
    return np.ascontiguousarray(P * signs[:, None])


def _tree_paths(tree) -> tuple[list[int], list[int], np.ndarray, np.ndarray]:
    """A fitted scikit-learn tree's internal nodes and leaves (node ids, in depth-first order)
    and the (J, L) matrices that say which leaves lie left (or right) of each internal node."""
    left_child, right_child = tree.children_left, tree.children_right
    internal, leaves, paths = [], [], []
    stack = [(0, ())]
    while stack:
        node, path = stack.pop()
        if left_child[node] == -1:
            leaves.append(node)
            paths.append(path)
            continue
        internal.append(node)
        stack.append((right_child[node], (*path, (node, -1))))
        stack.append((left_child[node], (*path, (node, 1))))
    index = {node: j for j, node in enumerate(internal)}
    left = np.zeros((len(internal), len(leaves)))
    right = np.zeros_like(left)
    for leaf, path in enumerate(paths):
        for node, side in path:
            (left if side > 0 else right)[index[node], leaf] = 1.0
    return internal, leaves, left, right


def leaf_membership(inputs: dict, A: torch.Tensor) -> torch.Tensor:
    """(B, m, L): 1 where a candidate's real row reaches the leaf. A (B, m, d + 1) with the bias
    column, zero on padding rows (which reach no leaf). A row goes left at an internal node when
    its feature is <= the threshold, compared as scikit-learn compares: the feature rounded to
    float32 (so the leaves are exactly DecisionTreeRegressor.apply's)."""
    X = A[..., :-1].to(torch.float32).to(DTYPE)
    right = (X[..., inputs["feature"].long()] > inputs["threshold"]).to(DTYPE)  # (B, m, J)
    reached = (1.0 - right) @ inputs["left"] + right @ inputs["right"]  # (B, m, L)
    depth = inputs["left"].sum(dim=0) + inputs["right"].sum(dim=0)  # (L,)
    return (reached == depth).to(DTYPE) * A[..., -1:]


def class_targets(A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """(B, m, K) one-hot labels with K >= 2 classes (a sigmoid model's 0/1 label Y (B, m, 1)
    becomes [1 - y, y]); zero on padding rows."""
    return torch.cat([A[..., -1:] - Y, Y], dim=-1) if Y.shape[-1] == 1 else Y


class Surrogate(Appraiser):
    """The model owner's distilled surrogate, appraised by the data owner in the clear (see the
    module's docstring for the kinds, sizes and scores)."""

    name = "surrogate"
    model_owner_data = ("nothing under MPC: the surrogate is handed to the data owner in the "
                        "clear")

    def __init__(self, kind: str = DEFAULTS["surrogate"], size: int = DEFAULTS["surrogate_size"],
                 score: str = DEFAULTS["surrogate_score"], random_state: int = 0):
        check_params({"surrogate": kind, "surrogate_size": size, "surrogate_score": score,
                      "random_state": random_state})
        if kind == "tree" and size > MAX_TREE_DEPTH:
            raise ExplorerError(f"a tree surrogate's size is its depth, at most "
                                f"{MAX_TREE_DEPTH}; got {size}.")
        self.kind, self.size, self.score, self.random_state = kind, size, score, random_state

    def params(self) -> dict:
        return {"kind": self.kind, "size": self.size, "score": self.score,
                "random_state": self.random_state}

    def check_private(self) -> None:
        raise ExplorerError(PRIVATE_REFUSAL)

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        raise ExplorerError(PRIVATE_REFUSAL)

    # -- the model owner's one-off work: distil, then hand over --------------------------

    def _setup(self, seed: SeedModel) -> None:
        rows, probs = distillation_set(seed, DISTILL_SAMPLES, self.random_state)
        if self.kind == "tree":
            self.inputs_ = self._fit_tree(seed, rows, probs)
        else:
            self.inputs_ = self._fit_logistic(seed, rows, probs)
        surrogate = self.probabilities(self.inputs_, seed.X_test)
        model_says = model.class_probabilities(seed.theta, seed.X_test)
        # share of the model owner's test rows where the surrogate's class is theta_hat's
        self.fidelity_ = float((surrogate.argmax(dim=1) == model_says.argmax(dim=1))
                               .to(DTYPE).mean())
        # the surrogate's own mean test cross-entropy, nats
        picked = surrogate.gather(1, seed.y_test[:, None]).clamp_min(LEAF_FLOOR)
        self.test_loss_ = float(-picked.log().mean())

    def _fit_tree(self, seed: SeedModel, rows: np.ndarray, probs: np.ndarray) -> dict:
        K = probs.shape[1]
        target = probs[:, 1:] if K == 2 else probs
        tree = DecisionTreeRegressor(max_depth=self.size, min_samples_leaf=MIN_LEAF,
                                     random_state=self.random_state).fit(rows, target)
        internal, leaves, left, right = _tree_paths(tree.tree_)
        t = tree.tree_
        value = t.value[leaves].reshape(len(leaves), -1)
        q = np.hstack([1.0 - value, value]) if K == 2 else value
        q = np.clip(q, LEAF_FLOOR, None)
        q = q / q.sum(axis=1, keepdims=True)
        handed = {"feature": torch.tensor(t.feature[internal], dtype=DTYPE),
                  "threshold": torch.tensor(t.threshold[internal], dtype=DTYPE),
                  "left": torch.from_numpy(left), "right": torch.from_numpy(right),
                  "probabilities": torch.from_numpy(q)}
        if self.score == "test-loss":
            position = {node: i for i, node in enumerate(leaves)}
            share = np.bincount([position[n] for n in tree.apply(rows)],
                                minlength=len(leaves)) / len(rows)
            tested = np.array([position[n] for n in tree.apply(seed.X_test.numpy())])
            counts = np.zeros((len(leaves), K))
            np.add.at(counts, (tested, seed.y_test.numpy()), 1.0)
            handed["weight"] = torch.from_numpy(seed.n_seed * share)
            handed["test_counts"] = torch.from_numpy(counts)
        return handed

    def _fit_logistic(self, seed: SeedModel, rows: np.ndarray, probs: np.ndarray) -> dict:
        d = seed.n_features
        if self.size > d:
            raise ExplorerError(f"a logistic surrogate keeps at most the d = {d} principal "
                                f"directions of the seed features; choose a surrogate size "
                                f"of at most {d}, got {self.size}.")
        P = principal_directions(seed.X_train.numpy(), self.size)
        K = probs.shape[1]
        Z = rows @ P.T
        # soft targets as weights: each row once per class, weighted by that class's probability
        fitted = model.fit(np.tile(Z, (K, 1)), np.repeat(np.arange(K), len(Z)), seed.n_classes,
                           DISTILL_LAM, n_seed=len(Z),
                           weight=torch.from_numpy(probs.T.reshape(-1).copy()))
        projection = torch.zeros(d + 1, self.size + 1, dtype=DTYPE)
        projection[:d, :self.size] = torch.from_numpy(P.T)
        projection[d, self.size] = 1.0
        handed = {"projection": projection, "theta": fitted.theta}
        if self.score == "test-loss":
            P_t = torch.from_numpy(P.T.copy())
            as_seed = SeedModel(theta=fitted.theta, lam=seed.lam, n_classes=seed.n_classes,
                                X_train=seed.X_train @ P_t, y_train=seed.y_train,
                                X_test=seed.X_test @ P_t, y_test=seed.y_test,
                                grad_norm=fitted.grad_norm, converged=fitted.converged)
            handed["weights"] = influence_vector(as_seed) / seed.n_seed
        return handed

    # -- what is handed over, and the data owner's computation ---------------------------

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        """The shapes of what is handed over (the data owner sees them: the surrogate is in
        the clear)."""
        return {k: tuple(v.shape) for k, v in self._handed().items()}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        """The surrogate as handed to the data owner, float64 tensors."""
        return dict(self._handed())

    def handed_bytes(self) -> int:
        """Bytes of the surrogate handed over, as float64 arrays."""
        return int(sum(v.numel() * v.element_size() for v in self._handed().values()))

    def _handed(self) -> dict[str, torch.Tensor]:
        self._fitted()
        return self.inputs_

    def probabilities(self, inputs: dict, X: torch.Tensor) -> torch.Tensor:
        """The surrogate's class probabilities (n, K) on rows X (n, d), from what is handed
        over alone (what the data owner can ask of it)."""
        A = with_bias(model.as_features(X))[None]
        if self.kind == "tree":
            return (leaf_membership(inputs, A) @ inputs["probabilities"])[0]
        return model.class_probabilities(inputs["projection"] @ inputs["theta"], A[0, :, :-1])

    def compute(self, inputs: dict, A, Y, public: Public):
        if self.kind == "tree":
            counts = leaf_membership(inputs, A).transpose(-2, -1) @ class_targets(A, Y)
            q = inputs["probabilities"]
            if self.score == "agreement":
                return (counts * q.log()).sum(dim=(-2, -1)) / public.sizes_tensor()
            weight = inputs["weight"][:, None]
            refit = (weight * q + counts) / (weight + counts.sum(dim=-1, keepdim=True))
            T = inputs["test_counts"]
            return (T * (refit.log() - q.log())).sum(dim=(-2, -1)) / public.n_test
        Z = matmul(A, inputs["projection"])  # (B, m, k + 1), the bias column carried
        if self.score == "agreement":
            mask = row_mask(public.sizes, A.shape[-2])
            loss = cross_entropy_sums(matmul(Z, inputs["theta"]), Y, mask)
            return -loss / public.sizes_tensor()
        return (gradient_sums(Z, Y, inputs["theta"]) * inputs["weights"]).sum(dim=(-2, -1))

    def diagnose(self, values: Sequence[float]) -> list[str]:
        if self.score == "agreement":
            return [""] * len(values)
        loss = self.test_loss_
        return ["exceeds the surrogate's whole test loss: first-order influence on it has left "
                "its range" if v > loss else "" for v in values]

    def work_per_row(self) -> int:
        handed = self._handed()
        if self.kind == "tree":
            return int(handed["probabilities"].numel() + handed["feature"].numel())
        return int(handed["theta"].numel())
