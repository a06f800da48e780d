"""The mlp and last-layer seed-model families: the network's mathematics against autograd and
dense solves, forward-mode influence against v · grad, private against plaintext between real
parties, the ground truth against retraining, and each refusal."""

import numpy as np
import pytest
import torch

from explorer import network
from explorer.app.party_view import party_lanes
from explorer.appraisers import FAMILIES, LastLayer, NetworkInfluence, definition
from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.gradient_norm import SQRT_RANGE
from explorer.config import AppraiserConfig
from explorer.errors import ExplorerError
from explorer.market import make_market
from explorer.seed import LastLayerSeed, NetworkSeed, fit_seed_model
from explorer.utility import ground_truth, retrain_network


@pytest.fixture(scope="module")
def mlp_seed(wdbc):
    return fit_seed_model(wdbc, model="mlp", hidden=(8,), random_state=0)


@pytest.fixture(scope="module")
def last_layer_seed(wdbc):
    return fit_seed_model(wdbc, model="last-layer", hidden=(8,), random_state=0)


@pytest.fixture(scope="module")
def market(wdbc):
    return [(c.X, c.y) for c in make_market(wdbc, "label-noise", 4, 20, max_level=0.5,
                                           random_state=1)]


def test_seed_network_reaches_its_stated_tolerance(mlp_seed):
    assert isinstance(mlp_seed, NetworkSeed) and mlp_seed.converged
    arch = mlp_seed.architecture
    g = network.objective_grad(arch, mlp_seed.theta, mlp_seed.X_train, mlp_seed.y_train,
                               mlp_seed.lam, mlp_seed.n_seed)
    assert float(g.norm()) == pytest.approx(mlp_seed.grad_norm) and mlp_seed.grad_norm <= \
        mlp_seed.tol
    assert arch.describe() == "30-8-2" and arch.n_params == 31 * 8 + 9 * 1


@pytest.mark.parametrize("activation,hidden,n_classes", [("relu", (5,), 2), ("relu", (6, 4), 3),
                                                         ("silu", (6, 4), 3)])
def test_forward_mode_and_backward_pass_match_autograd(activation, hidden, n_classes):
    """Forward-mode influence's v · grad and the batched gradient sums, against autograd on
    each candidate alone; padding rows add nothing."""
    from explorer.appraisers.batch import candidate_batch, row_mask
    from explorer.appraisers.network import forward_tangent, gradient_sums
    from explorer.model import probabilities

    gen = torch.Generator().manual_seed(3)
    arch = network.architecture(7, n_classes, hidden, activation)
    theta = torch.randn(arch.n_params, generator=gen, dtype=torch.float64) * 0.5
    v = torch.randn(arch.n_params, generator=gen, dtype=torch.float64)
    pairs = [(torch.randn(m, 7, generator=gen, dtype=torch.float64),
              torch.randint(0, n_classes, (m,), generator=gen)) for m in (4, 6, 3)]
    batch = candidate_batch(pairs, arch.n_outputs)
    mask = row_mask(batch.sizes)
    layers, tangents = arch.unflatten(theta), arch.unflatten(v)
    Z, Zt = forward_tangent(layers, tangents, batch.A, activation)
    values = ((probabilities(Z, arch.n_outputs) - batch.Y) * mask * Zt).sum(-1).sum(-1)
    grads = gradient_sums(layers, batch.A, batch.Y, mask, activation)
    for b, (X, y) in enumerate(pairs):
        exact = network.grad_sum(arch, theta, X, y)
        assert float(values[b]) == pytest.approx(float(exact @ v), abs=1e-10)
        got = torch.cat([G[b].reshape(-1) for G in grads])
        assert torch.allclose(got, exact, atol=1e-10, rtol=0)


def test_influence_value_is_v_dot_gradient(mlp_seed, market):
    appraiser = AppraiserConfig().build("influence", "mlp").fit(mlp_seed)
    values = AppraiserConfig().appraise("influence", mlp_seed, market).values
    arch = mlp_seed.architecture
    for value, (X, y) in zip(values, market, strict=True):
        X, y = mlp_seed.check_candidate(X, y)
        exact = float(network.grad_sum(arch, mlp_seed.theta, X, y) @ appraiser.weights_)
        assert value == pytest.approx(exact, abs=1e-10)


def test_damped_solve_matches_a_dense_solve():
    gen = torch.Generator().manual_seed(0)
    arch = network.architecture(4, 3, (3,), "silu")
    X = torch.randn(40, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    fit = network.fit(X, y, arch, 0.1)
    assert fit.converged
    rhs = torch.randn(arch.n_params, generator=gen, dtype=torch.float64)
    delta = 0.01
    H = network.hessian(arch, fit.theta, X, y, 0.1, 40)
    dense = torch.linalg.solve(H + delta * torch.eye(arch.n_params, dtype=torch.float64), rhs)
    solve = network.solve_damped(arch, fit.theta, X, y, 0.1, 40, rhs, delta, rtol=1e-12)
    assert torch.allclose(solve.v, dense, rtol=1e-7, atol=1e-9)
    assert solve.delta == delta and solve.residual < 1e-9


def test_damped_solve_refuses_negative_curvature():
    """Away from a minimum H + delta I is indefinite: conjugate gradient meets a direction of
    negative curvature, and says so rather than returning a value."""
    gen = torch.Generator().manual_seed(1)
    arch = network.architecture(4, 3, (6,), "silu")
    X = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=gen)
    theta = torch.randn(arch.n_params, generator=gen, dtype=torch.float64) * 3
    H = network.hessian(arch, theta, X, y, 1e-3, 30)
    assert float(torch.linalg.eigvalsh(H)[0]) < 0
    with pytest.raises(ExplorerError, match="raise the damping"):
        network.solve_damped(arch, theta, X, y, 1e-3, 30,
                             torch.randn(arch.n_params, generator=gen, dtype=torch.float64), 0.0)


def test_ground_truth_matches_retraining_from_scratch(wdbc, market):
    """With a strong penalty the network's loss has one minimum (up to permuting hidden units)
    that a warm start and a fresh start both reach: the warm-started ground truth is the
    retrained model's utility."""
    seed = fit_seed_model(wdbc, model="mlp", hidden=(3,), activation="silu", lam=1.0,
                          random_state=0)
    X, y = seed.check_candidate(*market[1])
    warm = retrain_network(seed, X, y)
    fresh = network.fit(torch.cat([seed.X_train, X]), torch.cat([seed.y_train, y]),
                        seed.architecture, seed.lam, n_seed=seed.n_seed, random_state=5)
    assert warm.converged and fresh.converged
    arch = seed.architecture
    assert torch.allclose(network.class_probabilities(arch, warm.theta, seed.X_test),
                          network.class_probabilities(arch, fresh.theta, seed.X_test),
                          atol=1e-6)
    truth = ground_truth(seed, *market[1])
    loss = network.mean_loss(seed.architecture, fresh.theta, seed.X_test, seed.y_test)
    assert truth.utility == pytest.approx(seed.test_loss - loss, abs=1e-7)
    assert truth.grad_norm <= warm.tol


def test_last_layer_head_is_the_networks_output_layer(last_layer_seed):
    """At the network's minimum the head's gradient is zero: refitting it as a logistic model
    on the frozen features stays where it was."""
    assert isinstance(last_layer_seed, LastLayerSeed)
    s = last_layer_seed.network
    last = s.architecture.unflatten(s.theta)[-1]
    assert torch.allclose(last_layer_seed.head.theta, last, atol=1e-5)
    assert last_layer_seed.test_loss == pytest.approx(s.test_loss, abs=1e-6)


def test_last_layer_values_are_the_logistic_appraisers_on_the_features(last_layer_seed,
                                                                       market):
    for name in ("influence", "gradient-norm", "finetune", "newton"):
        got = AppraiserConfig().appraise(name, last_layer_seed, market).values
        features = [(last_layer_seed.features(last_layer_seed.check_candidate(X, y)[0]), y)
                     for X, y in market]
        inner = definition("logistic", name).fit(last_layer_seed.head)
        # phi(x) is not standardised, so the inner appraiser is run on the batch directly
        batch = candidate_batch([(torch.as_tensor(F), torch.as_tensor(y))
                                 for F, y in features], 1)
        public = inner.public(batch.sizes)
        expected = inner.compute(inner.model_owner_inputs(public), batch.A, batch.Y, public)
        assert np.allclose(got, expected.numpy(), atol=1e-10), name


@pytest.mark.parametrize("family,names", [("mlp", ("influence", "gradient-norm")),
                                          ("last-layer", ("influence", "gradient-norm"))])
def test_private_matches_plaintext_between_real_parties(family, names, mlp_seed,
                                                        last_layer_seed, market):
    seed = mlp_seed if family == "mlp" else last_layer_seed
    for name in names:
        plain = AppraiserConfig().appraise(name, seed, market).values
        private = AppraiserConfig.from_options(backend="crypten", mode="parties").appraise(
            name, seed, market)
        assert np.abs(private.values - plain).max() <= 0.01 * np.abs(plain).max(), name
        assert private.last_session.bytes > 0
        # the dashboard's party view names what the model owner holds: the network's layers
        layers = ", ".join(f"{a} × {b}" for a, b in seed.architecture.shapes)
        assert f"a {family} network ({seed.architecture.activation}): layers {layers}" in \
            party_lanes({name: private.account}, {"task": "wdbc"}), name


def test_gradient_norm_beyond_the_square_roots_range_is_refused(mlp_seed):
    appraiser = definition("mlp", "gradient-norm").fit(mlp_seed)
    appraiser.model_owner_inputs(appraiser.public([20, 20]))
    limit = appraiser.scale_ * np.sqrt(SQRT_RANGE)
    ok = appraiser.verified(np.array([[limit * 0.9, limit * 1.1]] * 2), False, 0.0, 16)
    assert ok.tolist() == [True, False]


def test_family_mismatch_and_missing_appraisers_are_refused(mlp_seed, wdbc_seed):
    with pytest.raises(ExplorerError, match=r"takes a mlp seed model.*got a logistic"):
        NetworkInfluence().fit(wdbc_seed)
    with pytest.raises(ExplorerError, match=r"takes a logistic seed model.*got a mlp"):
        definition("logistic", "influence").fit(mlp_seed)
    missing = [n for n in ("influence", "gradient-norm", "finetune", "newton")
               if n not in FAMILIES["mlp"]]
    for name in missing:
        with pytest.raises(ExplorerError, match="not defined for the mlp seed model"):
            definition("mlp", name)
    assert isinstance(definition("last-layer", "influence"), LastLayer)


def test_bad_network_settings_are_refused(wdbc):
    with pytest.raises(ExplorerError, match="one or two hidden layers"):
        fit_seed_model(wdbc, model="mlp", hidden=(4, 4, 4))
    with pytest.raises(ExplorerError, match="hidden width"):
        fit_seed_model(wdbc, model="mlp", hidden=(0,))
    with pytest.raises(ExplorerError, match="cross-validated lam"):
        fit_seed_model(wdbc, model="mlp", lam="cv")
    with pytest.raises(ExplorerError, match="activation"):
        fit_seed_model(wdbc, model="mlp", activation="tanh")
