"""What the blog's surrogate gives away (explorer.appraisers.surrogate).

- ``surrogate_reveal``: how much of theta_hat the data owner holds once the surrogate is handed
  over. Its best reconstruction (``rebuilt_model``): for the logistic surrogate, the surrogate
  itself read in the full feature space, (P^T w_s, b_s), exactly; for the tree, a logistic
  model (the public L2 strength) fitted to the tree's class probabilities on rows the data
  owner holds (its own candidates' features): model extraction, as the model owner did. It is
  scored against theta_hat by the relative L2 error and the cosine (classes centred, as in
  explorer.leakage.trace) and by the share of the model owner's test rows where the rebuilt
  model's class is theta_hat's.
- ``model_owner_surrogate_attack``: a model owner who hands over crafted logistic surrogates
  recovers G(D_a), the candidate's summed gradient at theta_hat, one coordinate a value,
  exactly as influence's model owner does with crafted weights (explorer.leakage.model_owner):
  the projection's first C rows span theta_hat's weights (so the surrogate's logits are
  theta_hat's), one more row is the basis vector e_j, and the shipped influence weights pick
  that row's coordinate. Under the ``agreement`` score the same surrogate with a small step
  +-eps along that row gives the coordinate by a central difference. The data owner computes
  each value honestly with the agreed definition.
"""

from __future__ import annotations

import numpy as np
import torch

from explorer import model
from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.logistic import gradient_sums
from explorer.appraisers.surrogate import Surrogate
from explorer.errors import ExplorerError
from explorer.leakage.trace import Trace, centre_classes, relative_error
from explorer.model import DTYPE
from explorer.seed import SeedModel

# The agreement score's central-difference step along the crafted row: its error is O(eps^2).
AGREEMENT_STEP = 1e-4


def rebuilt_model(surrogate: Surrogate, inputs: dict, probe: np.ndarray, lam: float,
                  n_classes: int) -> torch.Tensor:
    """The data owner's best reconstruction of theta_hat (d + 1, C) from the handed-over
    surrogate ``inputs``; ``probe`` (n, d) are standardised rows the data owner holds and
    ``lam`` the public L2 strength."""
    if surrogate.kind == "logistic":
        return inputs["projection"] @ inputs["theta"]
    X = model.as_features(probe)
    if X.ndim != 2 or len(X) == 0:
        raise ExplorerError("rebuilding a model from a tree needs rows to ask it about.")
    targets = surrogate.probabilities(inputs, X).numpy()  # (n, K)
    K = targets.shape[1]
    fitted = model.fit(np.tile(X.numpy(), (K, 1)), np.repeat(np.arange(K), len(X)), n_classes,
                       lam, n_seed=len(X), weight=torch.from_numpy(targets.T.reshape(-1).copy()))
    return fitted.theta


def surrogate_reveal(seed: SeedModel, surrogate: Surrogate, probe: np.ndarray) -> dict:
    """How much of theta_hat a fitted ``surrogate`` reveals: ``relative_error`` and ``cosine``
    of the data owner's rebuilt model against theta_hat (classes centred), and
    ``test_agreement``, the share of the model owner's test rows where both pick the same
    class; ``bytes`` handed over."""
    inputs = surrogate.model_owner_inputs(surrogate.public([1]))
    rebuilt = rebuilt_model(surrogate, inputs, probe, seed.lam, seed.n_classes)
    truth = centre_classes(seed.theta.numpy()).ravel()
    guess = centre_classes(rebuilt.numpy()).ravel()
    same = (model.class_probabilities(rebuilt, seed.X_test).argmax(dim=1)
            == model.class_probabilities(seed.theta, seed.X_test).argmax(dim=1))
    return {"relative_error": relative_error(guess, truth),
            "cosine": float(guess @ truth / (np.linalg.norm(guess) * np.linalg.norm(truth))),
            "test_agreement": float(same.to(DTYPE).mean()),
            "bytes": surrogate.handed_bytes()}


def _crafted(seed: SeedModel, surrogate: Surrogate, j: int, c: int, step: float) -> dict:
    """A logistic surrogate whose logits are theta_hat's (plus ``step`` times feature j for
    class c; j = d is the bias) and whose influence weights pick G[j, c]."""
    d, C = seed.n_features, seed.theta.shape[1]
    k = surrogate.size
    W, b = seed.theta[:-1], seed.theta[-1]
    Q, R = torch.linalg.qr(W)  # W = Q R, Q (d, r) orthonormal, r = min(d, C)
    r = Q.shape[1]
    projection = torch.zeros(d + 1, k + 1, dtype=DTYPE)
    projection[:d, :r] = Q
    theta = torch.zeros(k + 1, C, dtype=DTYPE)
    theta[:r] = R
    theta[k] = b
    weights = torch.zeros(k + 1, C, dtype=DTYPE)
    if j < d:
        projection[j, r] = 1.0
        theta[r, c] += step
        weights[r, c] = 1.0
    else:
        theta[k, c] += step
        weights[k, c] = 1.0
    projection[d, k] = 1.0
    crafted = {"projection": projection, "theta": theta}
    if surrogate.score == "test-loss":
        crafted["weights"] = weights
    return crafted


def model_owner_surrogate_attack(seed: SeedModel, surrogate: Surrogate, X, y,
                                 queries: int | None = None) -> Trace:
    """Reconstruct G(D_a) (d + 1, C) of the data owner's candidate (X, y) from the values it
    reports on crafted logistic surrogates of the agreed kind, size and score (one value per
    coordinate under ``test-loss``, two under ``agreement``), at most ``queries`` values."""
    if surrogate.kind != "logistic":
        raise ExplorerError("the crafted-surrogate attack hands over logistic surrogates; a "
                            "tree's value depends on the candidate only through how many of "
                            "its rows of each label reach each leaf.")
    d, C = seed.n_features, seed.theta.shape[1]
    if surrogate.size < min(d, C) + 1:
        raise ExplorerError(f"the crafted-surrogate attack needs a surrogate size of at least "
                            f"{min(d, C) + 1} (theta_hat's span and one more direction).")
    candidate = [seed.check_candidate(X, y)]
    public = surrogate.public([len(candidate[0][1])])
    batch = candidate_batch(candidate, public.n_outputs)
    m = len(candidate[0][1])

    def value(crafted: dict) -> float:  # the data owner's honest computation
        return float(surrogate.compute(crafted, batch.A, batch.Y, public)[0])

    per = 1 if surrogate.score == "test-loss" else 2
    P = (d + 1) * C
    budget = P * per if queries is None else min(queries, P * per)
    estimate = np.zeros((d + 1, C))
    trace = Trace()
    trace.add(0, {"G": estimate})
    asked = 0
    for coordinate in range(P):
        if asked + per > budget:
            break
        j, c = divmod(coordinate, C)
        if per == 1:
            estimate[j, c] = value(_crafted(seed, surrogate, j, c, 0.0))
        else:
            up = value(_crafted(seed, surrogate, j, c, AGREEMENT_STEP))
            down = value(_crafted(seed, surrogate, j, c, -AGREEMENT_STEP))
            # value = -(1/m) sum CE, and d CE / d step = (p - y) x_j: G = -m (up - down) / 2eps
            estimate[j, c] = -m * (up - down) / (2 * AGREEMENT_STEP)
        asked += per
        trace.add(asked, {"G": estimate})
    return trace


def candidate_gradient(seed: SeedModel, X, y) -> np.ndarray:
    """G(D_a) (d + 1, C): the candidate's summed loss gradient at theta_hat (the attack's
    target, as explorer.leakage.attack scores it)."""
    batch = candidate_batch([seed.check_candidate(X, y)], seed.theta.shape[1])
    return gradient_sums(batch.A, batch.Y, seed.theta)[0].numpy()
