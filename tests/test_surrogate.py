"""The blog's surrogate appraiser: its values against scikit-learn and autograd, its prices for
duplicates, what it reveals of the model, the crafted-surrogate attack, and its refusals."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeRegressor

from explorer import model
from explorer.appraisers import APPRAISERS, Surrogate, appraise
from explorer.appraisers.surrogate import (
    DISTILL_LAM,
    DISTILL_SAMPLES,
    LEAF_FLOOR,
    MIN_LEAF,
    distillation_set,
    principal_directions,
)
from explorer.cli import main
from explorer.config import AppraiserConfig
from explorer.errors import ExplorerError
from explorer.leakage.surrogate import (
    candidate_gradient,
    model_owner_surrogate_attack,
    surrogate_reveal,
)
from explorer.market import make_market
from explorer.market_prices import own_data_thresholds
from explorer.mpc.options import MPCOptions
from explorer.mpc.runner import PrivateRunner
from explorer.pricing import PricingRule


def pairs_of(market):
    return [(c.X, c.y) for c in market]


@pytest.fixture(scope="module")
def wdbc_market(wdbc):
    return make_market(wdbc, "label-noise", 8, 30, 0.5, random_state=3)


def sklearn_tree(seed, depth):
    """The tree as scikit-learn fits it on the same distillation rows, its leaves' class
    probabilities (floored and renormalised as handed over), the leaves' share of the rows."""
    rows, probs = distillation_set(seed, DISTILL_SAMPLES, 0)
    K = probs.shape[1]
    tree = DecisionTreeRegressor(max_depth=depth, min_samples_leaf=MIN_LEAF, random_state=0)
    tree.fit(rows, probs[:, 1:] if K == 2 else probs)

    def leaf_probabilities(X):
        p = tree.predict(np.asarray(X)).reshape(len(X), -1)
        q = np.clip(np.hstack([1 - p, p]) if K == 2 else p, LEAF_FLOOR, None)
        return q / q.sum(axis=1, keepdims=True)

    return tree, rows, leaf_probabilities


@pytest.mark.parametrize("task", ["wdbc", "digits"])
def test_tree_test_loss_is_the_refitted_leaves_exact_test_loss(request, task):
    """Against scikit-learn's own leaves (apply, predict) and numpy: each leaf refits to
    (N q + k) / (N + m) and the value is the surrogate's mean test loss before minus after."""
    seed = request.getfixturevalue(f"{task}_seed")
    data = request.getfixturevalue(task)
    market = make_market(data, "label-noise", 5, 40, 0.6, random_state=1)
    got = appraise(Surrogate("tree", 3).fit(seed), pairs_of(market)).values
    tree, rows, leaf_probabilities = sklearn_tree(seed, 3)
    leaves = np.unique(tree.apply(rows))
    q = leaf_probabilities(rows[[np.flatnonzero(tree.apply(rows) == leaf)[0] for leaf in leaves]])
    N = seed.n_seed * np.array([np.mean(tree.apply(rows) == leaf) for leaf in leaves])
    K = q.shape[1]
    T = np.array([[np.sum((tree.apply(seed.X_test.numpy()) == leaf)
                          & (seed.y_test.numpy() == c)) for c in range(K)] for leaf in leaves])
    expected = []
    for c in market:
        k = np.array([[np.sum((tree.apply(c.X) == leaf) & (c.y == cls)) for cls in range(K)]
                      for leaf in leaves])
        refit = (N[:, None] * q + k) / (N[:, None] + k.sum(axis=1, keepdims=True))
        expected.append((T * (np.log(refit) - np.log(q))).sum() / len(seed.y_test))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-14)
    assert len(set(np.round(got, 12))) == len(market)


def test_tree_agreement_is_the_mean_log_likelihood_of_scikit_learns_predictions(wdbc_seed,
                                                                                 wdbc_market):
    got = appraise(Surrogate("tree", 4, score="agreement").fit(wdbc_seed),
                   pairs_of(wdbc_market)).values
    _, _, leaf_probabilities = sklearn_tree(wdbc_seed, 4)
    expected = [np.log(leaf_probabilities(c.X)[np.arange(len(c.y)), c.y]).mean()
                for c in wdbc_market]
    assert got == pytest.approx(expected, rel=1e-10)


def test_candidates_of_different_sizes_are_each_their_own(wdbc_seed, wdbc_market):
    """Padding rows reach no leaf and add no gradient: a batch of mixed sizes gives each
    candidate the value it gets alone."""
    pairs = [(c.X[:n], c.y[:n]) for c, n in zip(wdbc_market[:4], (30, 7, 19, 1), strict=True)]
    for appraiser in (Surrogate("tree", 4), Surrogate("logistic", 4),
                      Surrogate("tree", 4, score="agreement"),
                      Surrogate("logistic", 4, score="agreement")):
        appraiser.fit(wdbc_seed)
        together = appraise(appraiser, pairs).values
        alone = [appraise(appraiser, [p]).values[0] for p in pairs]
        assert together == pytest.approx(alone, rel=1e-12, abs=1e-15)


def test_logistic_projection_is_pca_and_its_distillation_is_stationary(wdbc_seed):
    P = principal_directions(wdbc_seed.X_train.numpy(), 5)
    pca = PCA(n_components=5).fit(wdbc_seed.X_train.numpy())  # seed features are centred
    assert np.abs(P @ pca.components_.T) == pytest.approx(np.eye(5), abs=1e-8)
    appraiser = Surrogate("logistic", 5).fit(wdbc_seed)
    handed = appraiser.model_owner_inputs(appraiser.public([1]))
    theta = handed["theta"].clone().requires_grad_(True)
    rows, probs = distillation_set(wdbc_seed, DISTILL_SAMPLES, 0)
    Z = torch.from_numpy(rows @ P.T)
    logit = (Z @ theta[:-1] + theta[-1])[:, 0]
    p1 = torch.from_numpy(probs[:, 1])
    soft = (torch.nn.functional.softplus(logit) - p1 * logit).mean()
    objective = soft + DISTILL_LAM / 2 * (theta[:-1] ** 2).sum()
    (grad,) = torch.autograd.grad(objective, theta)
    assert float(grad.norm()) < 1e-8


def test_logistic_test_loss_is_influence_on_the_surrogate_by_autograd(wdbc_seed, wdbc_market):
    """value = v_s . G_s / n_seed, with G_s and H_s from autograd on the projected data."""
    appraiser = Surrogate("logistic", 4).fit(wdbc_seed)
    got = appraise(appraiser, pairs_of(wdbc_market)).values
    handed = appraiser.model_owner_inputs(appraiser.public([1]))
    P = handed["projection"][:-1, :-1]  # (d, k)
    theta = handed["theta"].reshape(-1)
    lam, n = wdbc_seed.lam, wdbc_seed.n_seed

    def mean_loss(flat, X, y):
        t = flat.reshape(-1, 1)
        z = (X @ P @ t[:-1] + t[-1])[:, 0]
        return (torch.nn.functional.softplus(z) - y.double() * z).mean()

    def objective(flat):
        return mean_loss(flat, wdbc_seed.X_train, wdbc_seed.y_train) \
            + lam / 2 * (flat[:-1] ** 2).sum()

    H = torch.autograd.functional.hessian(objective, theta)
    g_te = torch.autograd.functional.jacobian(
        lambda f: mean_loss(f, wdbc_seed.X_test, wdbc_seed.y_test), theta)
    v = torch.linalg.solve(H, g_te)
    expected = []
    for c in wdbc_market:
        X, y = torch.from_numpy(c.X), torch.from_numpy(c.y)
        G = torch.autograd.functional.jacobian(
            lambda f, X=X, y=y: len(y) * mean_loss(f, X, y), theta)
        expected.append(float(v @ G) / n)
    assert got == pytest.approx(expected, rel=1e-8)


def test_logistic_agreement_is_minus_the_mean_cross_entropy(digits_seed, digits):
    market = make_market(digits, "label-noise", 3, 25, 0.5, random_state=2)
    appraiser = Surrogate("logistic", 6, score="agreement").fit(digits_seed)
    handed = appraiser.model_owner_inputs(appraiser.public([1]))
    theta = handed["projection"] @ handed["theta"]  # the surrogate as a full-space model
    expected = [-model.mean_loss(theta, torch.from_numpy(c.X), torch.from_numpy(c.y))
                for c in market]
    assert appraise(appraiser, pairs_of(market)).values == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("kind", ["tree", "logistic"])
def test_duplicates_of_the_seed_set_are_priced_at_the_floor(wdbc, wdbc_seed, kind):
    """The blog's calibration: a threshold from the model owner's own data (mean + 3 sd of the
    surrogate's values on subsets of its training set) prices its duplicates at 0, while
    the threshold is not so high that no candidate could be paid."""
    config = AppraiserConfig(names=("surrogate",), surrogate=kind)
    threshold = own_data_thresholds(wdbc_seed, config, 30, samples=50)["surrogate"]
    rule = PricingRule(rate=1000.0, threshold=threshold)
    duplicates = make_market(wdbc, "duplicates", 10, 30, 1.0, 1.0, random_state=5)
    values = config.appraise("surrogate", wdbc_seed, pairs_of(duplicates)).values
    assert (rule.prices(values) == 0).all()
    assert values.max() > np.mean(values)  # a spread, not a constant the test would not see


def test_reveal_of_a_logistic_surrogate_is_its_full_space_model(wdbc, wdbc_seed):
    probe = np.vstack([c.X for c in make_market(wdbc, "none", 3, 30, random_state=1)])
    appraiser = Surrogate("logistic", 3).fit(wdbc_seed)
    handed = appraiser.model_owner_inputs(appraiser.public([1]))
    rebuilt = np.vstack([handed["projection"][:-1, :-1].numpy() @ handed["theta"][:-1].numpy(),
                         handed["theta"][-1:].numpy()]).ravel()
    truth = wdbc_seed.theta.numpy().ravel()
    got = surrogate_reveal(wdbc_seed, appraiser, probe)
    assert got["relative_error"] == pytest.approx(np.linalg.norm(rebuilt - truth)
                                                  / np.linalg.norm(truth), rel=1e-12)
    assert got["cosine"] == pytest.approx(rebuilt @ truth / np.linalg.norm(rebuilt)
                                          / np.linalg.norm(truth), rel=1e-12)
    X = wdbc_seed.X_test.numpy()
    same = ((X @ rebuilt[:-1] + rebuilt[-1]) > 0) == ((X @ truth[:-1] + truth[-1]) > 0)
    assert got["test_agreement"] == pytest.approx(same.mean())
    assert got["bytes"] == 8 * (31 * 4 + 4 + 4)  # projection, theta_s, influence weights
    # with every direction kept the surrogate is theta_hat, up to the distillation's penalty
    whole = surrogate_reveal(wdbc_seed, Surrogate("logistic", 30).fit(wdbc_seed), probe)
    assert whole["relative_error"] < 1e-3 and whole["test_agreement"] == 1.0


def test_reveal_of_a_tree_is_scikit_learns_extraction_of_it(wdbc, wdbc_seed):
    """The data owner's rebuilt model: a logistic regression (the public lam) fitted to the
    tree's probabilities on its own rows, as scikit-learn fits it with sample weights."""
    probe = np.vstack([c.X for c in make_market(wdbc, "none", 4, 30, random_state=1)])
    appraiser = Surrogate("tree", 3).fit(wdbc_seed)
    got = surrogate_reveal(wdbc_seed, appraiser, probe)
    _, _, leaf_probabilities = sklearn_tree(wdbc_seed, 3)
    p = leaf_probabilities(probe)[:, 1]
    n = len(probe)
    fit = LogisticRegression(C=1 / (wdbc_seed.lam * n), tol=1e-12, max_iter=10_000)
    fit.fit(np.vstack([probe, probe]), np.repeat([0, 1], n), sample_weight=np.r_[1 - p, p])
    rebuilt = np.r_[fit.coef_[0], fit.intercept_]
    truth = wdbc_seed.theta.numpy().ravel()
    assert got["relative_error"] == pytest.approx(np.linalg.norm(rebuilt - truth)
                                                  / np.linalg.norm(truth), rel=1e-4)
    assert got["cosine"] == pytest.approx(rebuilt @ truth / np.linalg.norm(rebuilt)
                                          / np.linalg.norm(truth), rel=1e-6)


@pytest.mark.parametrize("score, tolerance", [("test-loss", 1e-10), ("agreement", 1e-6)])
def test_crafted_logistic_surrogates_recover_the_candidates_gradient(wdbc, wdbc_seed, score,
                                                                     tolerance):
    (target,) = make_market(wdbc, "none", 1, 5, random_state=4)
    appraiser = Surrogate("logistic", 2, score=score).fit(wdbc_seed)
    trace = model_owner_surrogate_attack(wdbc_seed, appraiser, target.X, target.y)
    asked, estimate = trace.points[-1]
    truth = model.grad_sum(wdbc_seed.theta, torch.from_numpy(target.X),
                           torch.from_numpy(target.y)).numpy()
    assert asked == 31 * (1 if score == "test-loss" else 2)
    assert np.linalg.norm(estimate["G"] - truth) / np.linalg.norm(truth) < tolerance
    assert candidate_gradient(wdbc_seed, target.X, target.y) == pytest.approx(truth, rel=1e-12)
    few = model_owner_surrogate_attack(wdbc_seed, appraiser, target.X, target.y, queries=10)
    assert few.points[-1][0] <= 10


def test_crafted_surrogates_recover_a_softmax_candidates_gradient(digits, digits_seed):
    (target,) = make_market(digits, "none", 1, 4, random_state=4)
    appraiser = Surrogate("logistic", 11).fit(digits_seed)
    _, estimate = model_owner_surrogate_attack(digits_seed, appraiser, target.X,
                                               target.y).points[-1]
    truth = candidate_gradient(digits_seed, target.X, target.y)
    assert np.linalg.norm(estimate["G"] - truth) / np.linalg.norm(truth) < 1e-10


def test_the_crafted_surrogate_attack_refuses_trees_and_too_small_sizes(wdbc, wdbc_seed):
    (target,) = make_market(wdbc, "none", 1, 5, random_state=4)
    with pytest.raises(ExplorerError, match="each label reach each leaf"):
        model_owner_surrogate_attack(wdbc_seed, Surrogate("tree", 2).fit(wdbc_seed),
                                     target.X, target.y)
    with pytest.raises(ExplorerError, match="size of at least 2"):
        model_owner_surrogate_attack(wdbc_seed, Surrogate("logistic", 1).fit(wdbc_seed),
                                     target.X, target.y)


def test_private_runs_refuse_the_surrogate_with_one_sentence(wdbc_seed, wdbc_market):
    with pytest.raises(ExplorerError, match="no private form"):
        AppraiserConfig.from_options(names=("influence", "surrogate"), backend="crypten",
                                     mode="simulated", provider="TFP")
    runner = PrivateRunner(MPCOptions.for_mode("simulated"))
    with pytest.raises(ExplorerError, match="no private form"):
        runner.run(Surrogate().fit(wdbc_seed), pairs_of(wdbc_market))


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "forest"}, "unknown surrogate kind"), ({"size": 0}, "surrogate size"),
    ({"kind": "tree", "size": 13}, "at most 12"), ({"score": "surprise"}, "surrogate score"),
])
def test_bad_surrogate_settings_are_refused(kwargs, message):
    with pytest.raises(ExplorerError, match=message):
        Surrogate(**kwargs)


def test_a_logistic_surrogate_larger_than_the_features_is_refused(wdbc_seed):
    with pytest.raises(ExplorerError, match="at most 30"):
        Surrogate("logistic", 31).fit(wdbc_seed)


def test_the_surrogate_is_registered_for_the_configuration():
    assert APPRAISERS["surrogate"] is Surrogate
    built = AppraiserConfig(names=("surrogate",), surrogate="logistic", surrogate_size=7,
                            surrogate_score="agreement", random_state=3).build("surrogate")
    assert built.params() == {"kind": "logistic", "size": 7, "score": "agreement",
                              "random_state": 3}


def test_appraise_runs_the_surrogate_from_the_command_line(capsys):
    code = main(["appraise", "--task", "wdbc", "--corruption", "label-noise", "--candidates",
                 "6", "--size", "30", "--max-level", "0.5", "--appraisers", "surrogate,influence",
                 "--surrogate", "logistic", "--surrogate-size", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "spearman surrogate " in out and "spearman influence " in out


@pytest.mark.parametrize("argv, message", [
    (["--appraisers", "surrogate", "--backend", "crypten"], "no private form"),
    (["--appraisers", "influence", "--surrogate", "tree"], "--surrogate applies only to the "
                                                           "surrogate appraiser"),
    (["--appraisers", "surrogate", "--surrogate-size", "0"], "surrogate size"),
    (["--appraisers", "surrogate", "--surrogate", "forest"], "invalid choice: 'forest'"),
    (["--appraisers", "surrogate", "--surrogate", "logistic", "--surrogate-size", "40"],
     "at most 30"),
])
def test_bad_surrogate_options_end_with_one_sentence_and_status_2(capsys, argv, message):
    code = main(["appraise", "--task", "wdbc", "--candidates", "3", "--size", "10", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
