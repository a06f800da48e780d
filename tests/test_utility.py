"""Ground truth and sequential acquisition."""

import numpy as np
import pytest
import scipy.optimize
import torch

from explorer import model
from explorer.market import make_market
from explorer.utility import absorb, ground_truth


def test_absorbed_model_is_the_retrained_optimum(wdbc, wdbc_seed):
    a, b = make_market(wdbc, "none", 2, 30)
    after = absorb(wdbc_seed, a.X, a.y)
    assert after.n_seed == wdbc_seed.n_seed + 30
    # its own objective is stationary at its theta
    g = model.objective_grad(after.theta, after.X_train, after.y_train, after.lam, after.n_seed)
    assert float(g.norm()) < 1e-7
    assert wdbc_seed.test_loss - after.test_loss == pytest.approx(
        ground_truth(wdbc_seed, a.X, a.y).utility, abs=1e-9)
    # acquiring a second candidate equals retraining on all three sets at once
    both = absorb(after, b.X, b.y)
    X = torch.cat([wdbc_seed.X_train, torch.as_tensor(a.X), torch.as_tensor(b.X)])
    y = torch.cat([wdbc_seed.y_train, torch.as_tensor(a.y), torch.as_tensor(b.y)])
    direct = model.fit(X, y, 2, wdbc_seed.lam, n_seed=wdbc_seed.n_seed)
    assert torch.allclose(both.theta, direct.theta, atol=1e-6)


def reference_utility(seed, X_a, y_a) -> tuple[float, float]:
    """Utility and accuracy change by an independent solver: scipy's L-BFGS-B on the same J,
    warm-started at theta_hat, to a gradient norm far below the fit's tolerance."""
    X = torch.cat([seed.X_train, X_a])
    y = torch.cat([seed.y_train, y_a])
    shape = tuple(seed.theta.shape)

    def fun(flat):
        theta = torch.from_numpy(flat).reshape(shape)
        return (model.objective(theta, X, y, seed.lam, seed.n_seed),
                model.objective_grad(theta, X, y, seed.lam, seed.n_seed).reshape(-1).numpy())

    res = scipy.optimize.minimize(fun, seed.theta.reshape(-1).numpy().copy(), jac=True,
                                  method="L-BFGS-B",
                                  options={"gtol": 1e-10, "ftol": 0.0, "maxiter": 100000})
    theta = torch.from_numpy(res.x).reshape(shape)
    assert float(model.objective_grad(theta, X, y, seed.lam, seed.n_seed).norm()) < 1e-7
    return (seed.test_loss - model.mean_loss(theta, seed.X_test, seed.y_test),
            model.accuracy(theta, seed.X_test, seed.y_test) - seed.test_accuracy)


@pytest.mark.parametrize("task, n, size", [("wdbc", 20, 30), ("digits", 2, 60)])
def test_ground_truth_matches_an_independent_solver(task, n, size, request):
    """Newton with Cholesky solves (WDBC's 31 parameters) and Newton-CG (digits' 650, softmax)
    reach the optimum an independent solver reaches, to well within the values' spread."""
    data, seed = request.getfixturevalue(task), request.getfixturevalue(f"{task}_seed")
    market = make_market(data, "label-noise", n, size, max_level=0.5, random_state=0)
    got, want = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: more threads only wait on each other when loaded
    try:
        for c in market:
            X_a, y_a = seed.check_candidate(c.X, c.y)
            u = ground_truth(seed, X_a, y_a)
            got.append((u.utility, u.accuracy_change))
            want.append(reference_utility(seed, X_a, y_a))
    finally:
        torch.set_num_threads(threads)
    got, want = np.array(got), np.array(want)
    assert np.abs(got[:, 0] - want[:, 0]).max() <= 1e-6 * np.abs(want[:, 0]).max()
    assert np.array_equal(got[:, 1], want[:, 1])
