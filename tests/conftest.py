import warnings

import numpy as np
import pytest

from explorer.seed import fit_seed_model
from explorer.tasks import load_task


@pytest.fixture(scope="session")
def wdbc():
    return load_task("wdbc", seed=0)


@pytest.fixture(scope="session")
def digits():
    return load_task("digits", seed=0)


@pytest.fixture(scope="session")
def wdbc_seed(wdbc):
    return fit_seed_model(wdbc)


@pytest.fixture(scope="session")
def digits_seed(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fit_seed_model(digits)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
