"""The plaintext appraisers against exact answers and against retraining."""

import warnings

import numpy as np
import pytest
import torch
from appraising import value

from explorer import model
from explorer.appraisers import APPRAISERS, FineTune, GradientNorm, Influence, appraise
from explorer.config import AppraiserConfig
from explorer.constraints import parse_appraiser_names
from explorer.errors import ExplorerError
from explorer.market import make_market
from explorer.utility import ground_truth, retrain


@pytest.mark.parametrize("seed_name", ["wdbc_seed", "digits_seed"])
def test_influence_matches_retraining_with_a_tiny_weight(request, seed_name):
    seed = request.getfixturevalue(seed_name)
    task = request.getfixturevalue(seed_name.replace("_seed", ""))
    candidates = make_market(task, "label-noise", 3, 40, max_level=0.5)
    influence = Influence().fit(seed)
    eps = 1e-4
    for c in candidates:
        X, y = seed.check_candidate(c.X, c.y)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            theta = retrain(seed, X, y, tol=1e-12, weight=eps).theta
        actual = seed.test_loss - model.mean_loss(theta, seed.X_test, seed.y_test)
        predicted = eps * value(influence, c.X, c.y)
        assert predicted == pytest.approx(actual, rel=0.05)


def test_influence_orders_clean_above_fully_flipped(wdbc, wdbc_seed):
    clean, noisy = make_market(wdbc, "label-noise", 2, 60, max_level=1.0)
    inf = Influence().fit(wdbc_seed)
    assert value(inf, clean.X, clean.y) > 0 > value(inf, noisy.X, noisy.y)
    assert ground_truth(wdbc_seed, clean.X, clean.y).utility > 0
    assert ground_truth(wdbc_seed, noisy.X, noisy.y).utility < 0


def test_influence_dense_and_cg_solvers_agree(digits, digits_seed):
    (c,) = make_market(digits, "none", 1, 50)
    dense = value(Influence(solver="dense").fit(digits_seed), c.X, c.y)
    cg = value(Influence(solver="cg").fit(digits_seed), c.X, c.y)
    assert dense == pytest.approx(cg, rel=1e-6)


def test_gradient_norm_is_the_norm_of_the_summed_gradient(wdbc, wdbc_seed):
    (c,) = make_market(wdbc, "none", 1, 25)
    X, y = model.as_features(c.X), model.as_labels(c.y)
    expected = model.per_sample_grads(wdbc_seed.theta, X, y).sum(0).norm()
    assert value(GradientNorm().fit(wdbc_seed), c.X, c.y) == pytest.approx(float(expected),
                                                                          rel=1e-12)


def test_one_full_batch_step_of_finetuning(wdbc, wdbc_seed):
    (c,) = make_market(wdbc, "none", 1, 25)
    s = wdbc_seed
    X = torch.cat([s.X_train, model.as_features(c.X)])
    y = torch.cat([s.y_train, model.as_labels(c.y)])
    t = s.theta.clone().requires_grad_(True)
    # the fine-tuning objective: mean CE over D_tr ∪ D_a + (lam n_seed / N) / 2 ||W||^2
    J = model.per_sample_loss(t, X, y).mean() + 0.5 * s.lam * s.n_seed / len(y) * (
        t[:-1] ** 2).sum()
    J.backward()
    theta1 = s.theta - 0.5 * t.grad
    expected = s.test_loss - model.mean_loss(theta1, s.X_test, s.y_test)
    got = value(FineTune(lr=0.5, steps=1).fit(s), c.X, c.y)
    assert got == pytest.approx(expected, rel=1e-10)


def test_minibatch_finetuning_is_seeded(wdbc, wdbc_seed):
    (c,) = make_market(wdbc, "none", 1, 25)
    a = value(FineTune(steps=10, batch_size=8, random_state=1).fit(wdbc_seed), c.X, c.y)
    b = value(FineTune(steps=10, batch_size=8, random_state=1).fit(wdbc_seed), c.X, c.y)
    other = value(FineTune(steps=10, batch_size=8, random_state=2).fit(wdbc_seed), c.X, c.y)
    assert a == b and a != other


def test_minibatches_cover_the_whole_union_each_epoch(wdbc, wdbc_seed):
    """One epoch of batches of 10 over 57 + 25 = 82 samples is 9 steps, the last of 2 samples;
    it equals the same steps taken by hand over that permutation."""
    (c,) = make_market(wdbc, "none", 1, 25)
    s = wdbc_seed
    X = torch.cat([s.X_train, model.as_features(c.X)])
    y = torch.cat([s.y_train, model.as_labels(c.y)])
    order = np.random.default_rng(3).permutation(len(y))
    theta = s.theta.clone()
    lam_union = s.lam * s.n_seed / len(y)
    batches = [order[i:i + 10] for i in range(0, len(y), 10)]
    assert len(batches) == 9 and len(batches[-1]) == 2
    for idx in batches:
        idx = torch.from_numpy(idx)
        grad = model.grad_sum(theta, X[idx], y[idx]) / len(idx)
        theta = theta - 0.1 * (grad + lam_union * model.penalty_mask(*theta.shape) * theta)
    expected = s.test_loss - model.mean_loss(theta, s.X_test, s.y_test)
    got = value(FineTune(lr=0.1, steps=9, batch_size=10, random_state=3).fit(s), c.X, c.y)
    assert got == pytest.approx(expected, rel=1e-10)


def test_minibatch_finetuning_of_many_candidates_is_each_ones_own(digits, digits_seed):
    """Candidates of one size step together; of another size, apart: each value is what the
    candidate gets when appraised alone (softmax model, two sizes)."""
    market = make_market(digits, "label-noise", 3, 40, max_level=0.5, random_state=2)
    pairs = [(c.X, c.y) for c in market] + [(c.X[:25], c.y[:25]) for c in market[:2]]
    appraiser = FineTune(steps=9, batch_size=16, random_state=3).fit(digits_seed)
    together = appraise(appraiser, pairs).values.tolist()
    alone = [value(appraiser, X, y) for X, y in pairs]
    assert together == pytest.approx(alone, rel=1e-12, abs=1e-15)
    assert len(set(together)) == len(pairs)


@pytest.mark.parametrize("name", list(APPRAISERS))
def test_appraisers_validate_candidates(wdbc_seed, name):
    appraiser = AppraiserConfig(names=(name,)).build(name)
    X = np.zeros((4, 30))
    with pytest.raises(ExplorerError, match="not fitted"):
        value(appraiser, X, [0, 1, 0, 1])
    appraiser.fit(wdbc_seed)
    with pytest.raises(ExplorerError, match=r"shape \(samples, 30\)"):
        value(appraiser, np.zeros((4, 29)), [0, 1, 0, 1])
    with pytest.raises(ExplorerError, match="NaN or infinite"):
        value(appraiser, np.full((4, 30), np.nan), [0, 1, 0, 1])
    with pytest.raises(ExplorerError, match="does not know"):
        value(appraiser, X, [0, 1, 2, 1])
    with pytest.raises(ExplorerError, match="empty"):
        value(appraiser, np.zeros((0, 30)), [])
    with pytest.raises(ExplorerError, match="needs 4 labels"):
        value(appraiser, X, [0, 1])


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, "learning rate .* must be a number above 0"),
    ({"lr": float("nan")}, "learning rate"), ({"steps": 0}, "steps .* must be a whole number"),
    ({"batch_size": 0}, "batch size .* must"),
])
def test_finetune_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ExplorerError, match=message):
        FineTune(**kwargs)


def test_appraiser_names():
    assert parse_appraiser_names("influence, finetune,influence") == ("influence", "finetune")
    with pytest.raises(ExplorerError, match="unknown appraiser 'shapley'"):
        parse_appraiser_names("influence,shapley")
    with pytest.raises(ExplorerError, match="at least one"):
        parse_appraiser_names(" , ")
