import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from explorer.seed import fit_seed_model
from explorer.tasks import load_task


@contextlib.contextmanager
def environment_variable(name: str, value: str):
    """``name`` set to ``value`` within the block, as it was afterwards."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@pytest.fixture(scope="session", autouse=True)
def private_ledger(tmp_path_factory):
    """Private runs between real parties count what they reveal in the user's cache: keep the
    tests' counts out of the real one."""
    with environment_variable("APPRAISAL_EXPLORER_CACHE", str(tmp_path_factory.mktemp("cache"))):
        yield


@pytest.fixture(scope="module")
def party_functions_importable():
    """Party processes start with `python -m`; they find mpc_parties through PYTHONPATH."""
    tests = str(Path(__file__).parent)
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    with environment_variable("PYTHONPATH", path):
        yield


@pytest.fixture(scope="session")
def wdbc():
    return load_task("wdbc", random_state=0)


@pytest.fixture(scope="session")
def digits():
    return load_task("digits", random_state=0)


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
