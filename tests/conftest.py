import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from explorer.seed import fit_seed_model
from explorer.tasks import load_task


@pytest.fixture(scope="session", autouse=True)
def private_ledger(tmp_path_factory):
    """Private runs between real parties count what they reveal in the user's cache: keep the
    tests' counts out of the real one."""
    before = os.environ.get("APPRAISAL_EXPLORER_CACHE")
    os.environ["APPRAISAL_EXPLORER_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("APPRAISAL_EXPLORER_CACHE")
    else:
        os.environ["APPRAISAL_EXPLORER_CACHE"] = before


@pytest.fixture(scope="module")
def party_functions_importable():
    """Party processes start with `python -m`; they find mpc_parties through PYTHONPATH."""
    tests = str(Path(__file__).parent)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests, before) if p)
    yield
    if before is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = before


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
