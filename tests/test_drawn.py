"""A party's random draws made ahead (explorer.mpc.drawn): the same tensors as drawn when
used, between real parties the same values, and a session unlike its record fails loudly."""

import dataclasses

import numpy as np
import pytest
import torch
from appraising import plaintext_values, session_of

from explorer.market import make_market
from explorer.mpc import drawn
from explorer.mpc.crypten_compat import load_crypten
from explorer.mpc.launcher import run_parties
from explorer.mpc.protocol import DATA_OWNER, MODEL_OWNER, appraisal_party
from explorer.mpc.runs import LaunchError
from explorer.mpc.session import mpc_config, run_session

load_crypten()
from crypten.mpc.provider import ttp_provider  # noqa: E402

pytestmark = pytest.mark.usefixtures("party_functions_importable")


def some_draws() -> list[torch.Tensor]:
    """Ring elements and k-bit tensors of several shapes, as CrypTen's provider draws them."""
    return [ttp_provider.generate_random_ring_element(torch.Size([4, 3]), generator=GENERATOR),
            ttp_provider.generate_kbit_random_tensor(torch.Size([5]), bitlength=1,
                                                     generator=GENERATOR),
            ttp_provider.generate_random_ring_element(torch.Size([7]), generator=GENERATOR),
            ttp_provider.generate_kbit_random_tensor(torch.Size([2, 2]), generator=GENERATOR)]


GENERATOR = torch.Generator()


@pytest.mark.parametrize("budget, ahead", [(10 ** 6, 12 + 5 + 7 + 4), (12 + 5, 12 + 5), (0, 0)])
def test_draws_made_ahead_are_the_draws_made_when_used(budget, ahead):
    """All of them, a prefix (the budget), or none drawn ahead: the same tensors in order."""
    GENERATOR.manual_seed(11)
    direct = some_draws()
    GENERATOR.manual_seed(11)
    record = drawn.start({"dealer": GENERATOR})
    some_draws()
    log = record.log
    drawn.stop()
    assert [d[2] for d in log] == [(4, 3), (5,), (7,), (2, 2)]
    GENERATOR.manual_seed(11)
    draws = drawn.start({"dealer": GENERATOR})
    draws.ahead(log, budget=budget)
    try:
        assert draws.drawn_ahead == ahead
        served = some_draws()
        draws.check_used_up()
    finally:
        drawn.stop()
    assert all(torch.equal(a, b) for a, b in zip(direct, served, strict=True))


def test_a_draw_unlike_its_record_raises():
    GENERATOR.manual_seed(3)
    draws = drawn.start({"dealer": GENERATOR})
    try:
        draws.ahead([("dealer", "ring", (4, 3), (), ())])
        with pytest.raises(drawn.DrawMismatch, match="differs from the one drawn ahead"):
            ttp_provider.generate_random_ring_element(torch.Size([3, 4]), generator=GENERATOR)
        draws.ahead([("dealer", "ring", (2,), (), ())])
        with pytest.raises(drawn.DrawMismatch, match="left 1 of the tensors"):
            draws.check_used_up()
    finally:
        drawn.stop()


@pytest.fixture(scope="module")
def market(wdbc):
    return make_market(wdbc, "label-noise", 10, 30, max_level=0.6, random_state=5)


def test_a_later_session_of_a_spec_draws_ahead_and_gives_the_same_values(wdbc_seed, market):
    pairs = [(c.X, c.y) for c in market]
    spec, mo, do = session_of(wdbc_seed, "gradient-norm", pairs)
    expected = plaintext_values(wdbc_seed, "gradient-norm", pairs)
    first = run_session(spec, mo, do)
    second = run_session(spec, mo, do)
    assert [r.drawn_ahead for r in first.reports] == [0, 0]
    assert all(r.drawn_ahead > 0 for r in second.reports)
    assert second.reports[DATA_OWNER].draws == first.reports[DATA_OWNER].draws
    for result in (first, second):
        got = result.values[0]
        assert np.abs(got - expected).max() <= 0.01 * np.abs(expected).max()


def test_a_party_given_a_wrong_record_stops_the_session(wdbc_seed, market):
    pairs = [(c.X, c.y) for c in market[:3]]
    spec, mo, do = session_of(wdbc_seed, "influence", pairs)
    first = run_session(spec, mo, do)
    log = list(first.reports[DATA_OWNER].draws)
    name, function, shape, args, kwargs = log[0]
    log[0] = (name, function, (*shape[:-1], shape[-1] + 1), args, kwargs)
    payloads = {MODEL_OWNER: {"spec": spec, "input": mo},
                DATA_OWNER: {"spec": spec, "input": do, "draws": log}}
    with pytest.raises(LaunchError, match="differs from the one drawn ahead"):
        run_parties(appraisal_party, payloads, config=mpc_config(spec.precision_bits, "TTP"),
                    timeout=120, dealer_payload={"spec": dataclasses.replace(spec)})
