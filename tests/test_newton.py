"""The `newton` appraiser against exact answers, and the diagnostics a model owner acts on."""

import warnings

import numpy as np
import pytest
import torch
from appraising import configured, value

from explorer import model
from explorer.appraisers import Influence, Newton, appraise
from explorer.appraisers.newton import dense_eigenbasis, kfac_eigenbasis
from explorer.config import AppraiserConfig
from explorer.errors import AppraisalWarning, ExplorerError
from explorer.experiments import appraise_market
from explorer.market import make_market
from explorer.seed import fit_seed_model
from explorer.tasks import load_task
from explorer.utility import ground_truth


@pytest.mark.parametrize("lam", [0.3, 1.0])
def test_many_steps_converge_to_the_retrained_utility(wdbc, lam):
    seed = fit_seed_model(wdbc, lam=lam)
    market = make_market(wdbc, "label-noise", 4, 40, max_level=0.8, random_state=2)
    newton = Newton(steps=64).fit(seed)
    for c in market:
        exact = ground_truth(seed, c.X, c.y).utility
        assert value(newton, c.X, c.y) == pytest.approx(exact, rel=1e-5, abs=1e-8)


def test_one_step_on_one_row_is_alpha_times_first_order_influence(wdbc, wdbc_seed):
    """The step is exactly -alpha H^-1 G / n_seed, influence's parameter change; the values then
    agree to first order (the exact test loss adds the curvature term, a few per cent here)."""
    (c,) = make_market(wdbc, "none", 1, 1, random_state=5)
    s = wdbc_seed
    alpha = s.n_seed / (s.n_seed + 1)
    G = model.grad_sum(s.theta, model.as_features(c.X), model.as_labels(c.y))
    expected = s.theta - alpha * model.solve_hessian(s.theta, s.X_train, s.lam, s.n_seed,
                                                     G) / s.n_seed
    newton = Newton(steps=1, trials=((1.0, 0.0),)).fit(s)
    theta_1 = _final_theta(newton, newton.public([1]), c)
    assert torch.allclose(theta_1, expected, rtol=1e-9, atol=1e-12)
    linear = float((model.grad_sum(s.theta, s.X_test, s.y_test) / len(s.y_test)
                    * (s.theta - theta_1)).sum())
    first_order = value(Influence().fit(s), c.X, c.y)
    assert linear == pytest.approx(alpha * first_order, rel=1e-9)
    assert value(newton, c.X, c.y) == pytest.approx(alpha * first_order, rel=0.05)


def test_the_safeguard_never_increases_the_union_objective(wdbc, wdbc_seed):
    """Each step keeps J_union at most where it was: the value sequence is that of descent."""
    market = make_market(wdbc, "label-noise", 4, 30, max_level=1.0, random_state=9)
    seed = fit_seed_model(wdbc, lam=1e-3)
    for c in market:
        X = torch.cat([seed.X_train, model.as_features(c.X)])
        y = torch.cat([seed.y_train, model.as_labels(c.y)])
        objectives = []
        for k in range(1, 6):
            a = Newton(steps=k).fit(seed)
            public = a.public([len(c.y)])
            theta = _final_theta(a, public, c)
            objectives.append(model.objective(theta, X, y, seed.lam, seed.n_seed))
        start = model.objective(seed.theta, X, y, seed.lam, seed.n_seed)
        assert all(b <= a + 1e-12 for a, b in zip([start, *objectives], objectives, strict=False))


def _final_theta(appraiser, public, c):
    """theta_K of one candidate: what the definition hands to the test loss."""
    from explorer.appraisers import newton as newton_module
    from explorer.appraisers.batch import candidate_batch

    captured = {}
    original = newton_module.test_loss_reductions

    def capture(A_test, Y_test, theta, thetas):
        captured["theta"] = thetas[0]
        return original(A_test, Y_test, theta, thetas)

    newton_module.test_loss_reductions = capture
    try:
        batch = candidate_batch([(torch.tensor(c.X), torch.tensor(c.y))], public.n_outputs)
        appraiser.compute(appraiser.model_owner_inputs(public), batch.A, batch.Y, public)
    finally:
        newton_module.test_loss_reductions = original
    return captured["theta"]


def test_kfac_diagonal_is_the_exact_hessian_in_its_basis(digits_seed):
    U_A, U_S, s = kfac_eigenbasis(digits_seed)
    H = model.hessian(digits_seed.theta, digits_seed.X_train, digits_seed.lam,
                      digits_seed.n_seed)
    Q = torch.kron(U_A, U_S)  # flattened theta order is row-major (d1, C)
    exact = torch.diagonal(Q.T @ H @ Q).reshape(s.shape)
    null = s == 0
    assert null.sum() == s.shape[0]  # one column: the softmax's common bias shift
    assert torch.allclose(s[~null], exact[~null], rtol=1e-10, atol=1e-12)


def test_dense_eigenbasis_reproduces_the_hessian_off_the_null_direction(digits_seed):
    Q, s = dense_eigenbasis(digits_seed)
    H = model.hessian(digits_seed.theta, digits_seed.X_train, digits_seed.lam,
                      digits_seed.n_seed)
    assert torch.allclose(Q @ torch.diag(s) @ Q.T, H, atol=1e-10)


def test_kfac_and_dense_both_approach_the_utility(digits, digits_seed):
    market = make_market(digits, "imbalance", 6, 60, max_level=1.0, random_state=1)
    utility = np.array([ground_truth(digits_seed, c.X, c.y).utility for c in market])
    for kind in ("dense", "kfac"):
        a = Newton(steps=30, preconditioner=kind).fit(digits_seed)
        values = np.array([value(a, c.X, c.y) for c in market])
        assert np.abs(values - utility).max() <= 0.02 * np.abs(utility).max(), kind


def test_batched_values_equal_one_at_a_time(wdbc, wdbc_seed):
    market = make_market(wdbc, "label-noise", 5, 20, max_level=0.5, random_state=3)
    for name in ("influence", "gradient-norm", "finetune", "newton"):
        a = configured(name)[0].fit(wdbc_seed)
        batched = appraise(a, [(c.X, c.y) for c in market]).values
        single = [value(a, c.X, c.y) for c in market]
        assert np.allclose(batched, single, rtol=1e-12, atol=1e-15), name


# -- diagnostics --------------------------------------------------------------------------


def test_influence_beyond_its_linear_range_is_flagged(wdbc):
    seed = fit_seed_model(wdbc, lam=1e-3)
    market = make_market(wdbc, "label-noise", 10, 30, max_level=0.5, random_state=0)
    with pytest.warns(AppraisalWarning, match="linearisation broken"):
        frame = appraise_market(seed, market, AppraiserConfig(names=("influence",)))
    broken = frame.diagnostic != ""
    assert broken.any()
    assert (frame.value[broken] > seed.test_loss).all()
    assert (frame.value[~broken] <= seed.test_loss).all()


def test_diagnostics_stay_silent_on_the_defaults(wdbc, wdbc_seed):
    market = make_market(wdbc, "label-noise", 10, 30, max_level=0.5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = appraise_market(wdbc_seed, market, AppraiserConfig(
            names=("influence", "gradient-norm", "finetune", "newton")))
    assert (frame.diagnostic == "").all()
    assert (frame.truth_grad_norm < 1e-7).all()


def test_finetuning_that_would_diverge_is_refused(wdbc):
    seed = fit_seed_model(wdbc, lam=1e4)
    (c,) = make_market(wdbc, "none", 1, 30)
    with pytest.raises(ExplorerError, match="diverges"), \
            pytest.warns(AppraisalWarning, match="stability bound"):
        value(configured("finetune", lr=0.1)[0].fit(seed), c.X, c.y)


def test_a_learning_rate_past_the_stability_bound_warns(wdbc_seed):
    with pytest.warns(AppraisalWarning, match="stability bound"):
        configured("finetune", lr=5.0)[0].fit(wdbc_seed)


def test_minibatches_too_few_to_cover_the_seed_set_warn(wdbc_seed):
    with pytest.warns(AppraisalWarning, match="do not cover"):
        configured("finetune", steps=2, batch_size=8)[0].fit(wdbc_seed)


def test_ground_truth_tolerance_is_relative_to_the_problem(wdbc):
    seed = fit_seed_model(wdbc)
    X, y = model.as_features(wdbc.X_train), model.as_labels(wdbc.y_train)
    at_zero = float(model.objective_grad(torch.zeros_like(seed.theta), X, y, seed.lam,
                                         seed.n_seed).norm())
    assert seed.grad_norm <= 1e-8 * max(1.0, at_zero)
    big = fit_seed_model(load_task("wdbc", random_state=0), lam=0.3)
    assert big.converged


def test_newton_rejects_bad_trials():
    with pytest.raises(ExplorerError, match="trial step lengths"):
        Newton(trials=((3.0, 0.0),))
    with pytest.raises(ExplorerError, match="pairs"):
        Newton(trials=(1.0,))
    with pytest.raises(ExplorerError, match=r"newton steps .* must be a whole number"):
        Newton(steps=0)
