"""Ground truth and sequential acquisition."""

import pytest
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
