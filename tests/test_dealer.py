"""Triples dealt ahead (explorer.mpc.dealer, explorer.mpc.dealt) and features opened once
(explorer.mpc.masked), between real parties and a real dealer."""

import math

import mpc_parties
import numpy as np
import pytest
import torch
from appraising import plaintext_values, session_of
from scipy import stats

from explorer.market import make_market
from explorer.mpc.dealt import _product_size, copies_product
from explorer.mpc.launcher import run_parties
from explorer.mpc.runs import LaunchError
from explorer.mpc.session import mpc_config

MAX_RELATIVE_ERROR = {"influence": 0.01, "gradient-norm": 0.01, "newton": 0.05}


pytestmark = pytest.mark.usefixtures("party_functions_importable")


@pytest.fixture(scope="module")
def market(wdbc):
    return make_market(wdbc, "label-noise", 12, 30, max_level=0.6, random_state=4)


def counted_session(seed, market, name: str, deal: bool) -> tuple[dict, dict, np.ndarray]:
    params = {"newton": {"newton_steps": 2}}.get(name, {})
    pairs = [(c.X, c.y) for c in market]
    spec, mo, do = session_of(seed, name, pairs, **params)
    launched = run_parties(mpc_parties.counted_appraisal_party,
                           {0: {"spec": spec, "input": mo}, 1: {"spec": spec, "input": do}},
                           config=mpc_config(spec.precision_bits, "TTP"), timeout=300,
                           dealer_payload={"spec": spec} if deal else None)
    expected = plaintext_values(seed, name, pairs, **params)
    return launched.results[0], launched.results[1], expected, (spec.copies, *do.A.shape)


def opened(party: dict, features: tuple[int, ...]) -> int:
    """How often the party opened a tensor the size of the candidates' features (in any
    layout: A or its transpose), once or for all the copies of a verified session."""
    copies, *shape = features
    sizes = {math.prod(shape), copies * math.prod(shape)}
    return sum(math.prod(s) in sizes for s in party["opened"])


@pytest.mark.parametrize("name", ["influence", "gradient-norm", "newton"])
def test_no_product_waits_on_a_request_and_the_features_open_once(wdbc_seed, market, name):
    """Every copy of every product uses the one opening of the features."""
    owner, data, expected, features = counted_session(wdbc_seed, market, name, deal=True)
    got = owner["report"].values[0].numpy()
    assert stats.spearmanr(got, expected).statistic >= 0.99
    assert np.abs(got - expected).max() <= MAX_RELATIVE_ERROR[name] * np.abs(expected).max()
    assert owner["forwarded"] == 0 and owner["dealt"] > 10
    for party in (owner, data):
        assert opened(party, features) == 1


def test_without_the_spec_the_dealer_answers_each_request(wdbc_seed, market):
    """CrypTen's way, kept for a dealer started without the session's spec: the same values,
    one round trip per request."""
    owner, _, expected, features = counted_session(wdbc_seed, market, "gradient-norm",
                                                   deal=False)
    got = owner["report"].values[0].numpy()
    assert np.abs(got - expected).max() <= 0.01 * np.abs(expected).max()
    assert owner["dealt"] == 0 and owner["forwarded"] > 10
    assert opened(owner, features) == 1


def test_a_spec_rehearsed_before_is_replayed_from_its_requests(wdbc_seed, market):
    """The dealer hands back the requests it rehearsed; a later session of the same spec lets
    it replay them without the computation. A replayed sequence that is not the session's own
    stops the session."""
    pairs = [(c.X, c.y) for c in market]
    spec, mo, do = session_of(wdbc_seed, "influence", pairs)
    payloads = {0: {"spec": spec, "input": mo}, 1: {"spec": spec, "input": do}}
    config = mpc_config(spec.precision_bits, "TTP")
    first = run_parties(mpc_parties.counted_appraisal_party, payloads, config=config,
                        timeout=300, dealer_payload={"spec": spec})
    sequence = first.dealer["sequence"]
    assert len(sequence) == first.results[0]["dealt"] > 10
    again = run_parties(mpc_parties.counted_appraisal_party, payloads, config=config,
                        timeout=300, dealer_payload={"spec": spec, "sequence": sequence})
    assert again.dealer["sequence"] == sequence and again.results[0]["forwarded"] == 0
    expected = plaintext_values(wdbc_seed, "influence", pairs)
    got = again.results[0]["report"].values[0].numpy()
    assert np.abs(got - expected).max() <= 0.01 * np.abs(expected).max()
    with pytest.raises(LaunchError, match="more than it dealt ahead"):
        run_parties(mpc_parties.counted_appraisal_party, payloads, config=config, timeout=300,
                    dealer_payload={"spec": spec, "sequence": sequence[:-1]})


@pytest.mark.parametrize("rehearsed, run, message", [
    ([3, 5], [3, 5], None),
    ([3, 5], [3, 4], "differs from what the dealer rehearsed"),
    ([3], [3, 3], "more than it dealt ahead"),
    ([3, 3], [3], "used 1 of the 2 requests"),
])
def test_a_session_unlike_its_rehearsal_fails_loudly(rehearsed, run, message):
    payload = {"dealer": rehearsed, "parties": run}
    config = mpc_config(16, "TTP")
    if message is None:
        launched = run_parties(mpc_parties.dealt_party, {0: payload, 1: payload},
                               config=config, timeout=120, dealer_payload=payload)
        assert launched.results == [float(sum(run))] * 2
        return
    with pytest.raises(LaunchError, match=message):
        run_parties(mpc_parties.dealt_party, {0: payload, 1: payload}, config=config,
                    timeout=120, dealer_payload=payload)


@pytest.mark.parametrize("size0, size1", [((3,), (3,)), ((3,), (3, 4)), ((2, 5, 3), (3,)),
                                          ((7, 1, 5, 3), (2, 3, 4)), ((3,), (6, 3, 4))])
def test_product_shapes_from_shapes_alone(size0, size1):
    product = torch.matmul(torch.zeros(size0), torch.zeros(size1))
    assert _product_size(size0, size1, "matmul") == tuple(product.shape)
    assert _product_size((2, 5, 3), (2, 5, 4), "matmul", transpose=True) == (2, 3, 4)
    assert _product_size((2, 1, 3), (4, 1), "mul") == (2, 4, 3)


@pytest.mark.parametrize("right_shape, transpose", [((3, 4), False), ((6, 3, 4), False),
                                                     ((5, 2), True), ((6, 5, 2), True)])
def test_a_product_of_copies_equals_the_product_of_the_repeated_operand(right_shape, transpose):
    """The copies of a verified session share one opening of the features: their products
    (ring elements, exact) are those of the features repeated."""
    generator = torch.Generator().manual_seed(3)
    left = torch.randint(-2 ** 40, 2 ** 40, (3, 5, 3), generator=generator)
    right = torch.randint(-2 ** 40, 2 ** 40, right_shape, generator=generator)
    repeated = left.repeat(2, 1, 1)
    expected = torch.matmul(repeated.transpose(-2, -1) if transpose else repeated, right)
    assert torch.equal(copies_product(left, right, 2, transpose), expected)


def test_a_spec_reaches_a_dealer_through_cryptens_restricted_unpickler(wdbc_seed, market):
    """A dealer started on its own receives the spec from the model owner as plain data:
    CrypTen's unpickler refuses the project's classes, and the plain spec is the same spec."""
    import dataclasses
    import pickle

    from explorer.appraisers.reveal import Defences
    from explorer.mpc.crypten_compat import load_crypten
    from explorer.mpc.protocol import SessionSpec

    load_crypten()
    from crypten.common.serial import restricted_loads

    spec, _, _ = session_of(wdbc_seed, "newton", [(c.X, c.y) for c in market],
                            newton_steps=2)
    spec = SessionSpec(dataclasses.replace(spec.public, lam=np.float64(spec.public.lam)),
                       reveal="bit", verify=False, defences=Defences(grid=np.float64(0.01)))
    with pytest.raises(Exception, match="restricted"):
        restricted_loads(pickle.dumps(spec))
    assert SessionSpec.from_plain(restricted_loads(pickle.dumps(spec.to_plain()))) == spec
