"""Bytes on the wire and rounds of the critical path (explorer.mpc.wire), against the kernel's
own TCP counters and against counts known by hand."""

import dataclasses
import threading

import mpc_parties as mp
import pytest
import torch
from appraising import session_of
from limit import (
    RING_BYTES,
    Activation,
    Link,
    Nonlinearity,
    influence_limit,
    measure_activation,
    measure_link,
    measure_nonlinearity,
    network_influence_limit,
)

from explorer.market import make_market
from explorer.mpc.crypten_compat import MPCConfig
from explorer.mpc.launcher import run_parties
from explorer.mpc.protocol import DATA_OWNER, MODEL_OWNER
from explorer.mpc.session import SessionResult, mpc_config
from explorer.mpc.wire import WireCounter

TOLERANCE = 0.10  # gloo's message headers are in the kernel's count, not in ours

pytestmark = pytest.mark.usefixtures("party_functions_importable")


def test_one_product_and_its_reveal_by_hand():
    """x * y between two parties and the dealer: the model owner asks the dealer for a triple
    (one round trip), both open x - a and y - b together (one round), both open the product
    (one round). Every tensor is n 8-byte ring elements; truncation is local at two parties."""
    n = 1000
    run = run_parties(mp.product_party, {0: n, 1: n}, config=MPCConfig(provider="TTP"),
                      timeout=120)
    owner, data = (r["wire"] for r in run.results)
    x = torch.arange(n, dtype=torch.float64) / n
    assert torch.allclose(run.results[0]["product"].double(), x * (x + 1), atol=1e-3)
    assert (owner["rounds"], data["rounds"]) == (3, 2)
    assert data["bytes"] == 3 * n * 8  # x - a, y - b and its share of the product
    # the model owner also sends its request for the triple: a small pickled dict
    assert 0 < owner["bytes"] - 3 * n * 8 < 1000
    # the dealer sends the triple's product share and, first, its size as a pickled object
    assert 0 < run.dealer["bytes"] - n * 8 < 300


@pytest.fixture(scope="module")
def counted(wdbc_seed, wdbc):
    """A verified influence session for 20 WDBC candidates between real parties and the
    dealer, with CrypTen's own counters on and the kernel's read around it."""
    market = make_market(wdbc, "label-noise", 20, 30, max_level=0.5, random_state=0)
    spec, mo, do = session_of(wdbc_seed, "influence", [(c.X, c.y) for c in market])
    config = dataclasses.replace(mpc_config(spec.precision_bits, "TTP"), verbose=True)
    run = run_parties(mp.wire_checked_party, {MODEL_OWNER: {"spec": spec, "input": mo},
                                              DATA_OWNER: {"spec": spec, "input": do}},
                      config=config, timeout=300, dealer_payload={"spec": spec})
    session = SessionResult.of([r["report"] for r in run.results], run.dealer, run.wall_s)
    return run, session


def test_bytes_sent_match_the_kernel(counted):
    run, session = counted
    kernel = run.results[0]["kernel"]
    ours = {run.pids["model owner"]: session.reports[0].bytes,
            run.pids["data owner"]: session.reports[1].bytes,
            run.pids["dealer"]: session.dealer_bytes}
    assert set(kernel) == set(ours)
    for pid, sent in ours.items():
        assert sent == pytest.approx(kernel[pid], rel=TOLERANCE), (pid, sent, kernel[pid])
    assert session.bytes == sum(ours.values())
    assert session.bytes == pytest.approx(sum(kernel.values()), rel=TOLERANCE)
    # CrypTen's count (sent and received, both parties, dealer left out) does not pass
    crypten = sum(r["crypten"]["bytes"] for r in run.results)
    assert crypten > (1 + TOLERANCE) * sum(kernel.values())


def test_rounds_are_the_model_owners_path(counted):
    """Triples are dealt ahead: the dealer waits twice (for the request of the deal and for the
    closing message) and the model owner's computing thread never waits on it, so both parties
    wait through the same exchanges, and those are the critical path."""
    run, session = counted
    owner, data = session.reports
    assert run.dealer["rounds"] == 2, run.dealer
    assert owner.rounds == data.rounds > 0
    assert session.rounds == owner.rounds
    # CrypTen counted every call, the dealer's requests and their parts apart
    assert run.results[0]["crypten"]["rounds"] > owner.rounds


def test_the_sigmoid_takes_23_rounds():
    """DESIGN §4b: CrypTen's sigmoid is 23 exchanges (comparison 8, sign 1, exp 9, reciprocal
    3, select 2); the data owner, who never talks to the dealer, waits through exactly those."""
    sigmoid = measure_nonlinearity(100, 1, timeout=300)
    assert sigmoid.rounds == 23
    assert sigmoid.bytes_per_row > 23 * 2 * RING_BYTES  # at least one element each way a round


def test_the_limit_adds_the_ideal_protocols_parts():
    """100 WDBC candidates of 30 rows, 31 features with the bias, one logit, one copy."""
    link = Link(rtt_seconds=1e-4, bandwidth=1e9)
    sigmoid = Nonlinearity(rounds=23, bytes_per_row=1000.0)
    one = influence_limit(100, 30, 31, 1, 1, link, sigmoid)
    features = 3000 * 31  # X - A, sent by the data owner alone, once for every copy
    matmul = 2 * 31 * 2 + 3000 * 2  # [theta V] - B' both ways, the dealer's share of C
    product = 2 * 2 * 3000 + 3000
    per_copy = (matmul + product + 2 * 100) * 8 + 3000 * 1000
    assert one.rounds == 26
    assert one.bytes == features * 8 + per_copy
    assert one.seconds == pytest.approx(26e-4 + one.bytes / 1e9)
    two = influence_limit(100, 30, 31, 1, 2, link, sigmoid)
    assert (two.rounds, two.bytes) == (26, features * 8 + 2 * per_copy)


def test_the_silu_and_its_slope_take_the_sigmoids_rounds_and_two_products():
    """SiLU z s(z) and its slope s + H - H s (explorer.appraisers.network): CrypTen's sigmoid's
    23 exchanges, then z * s and H * s, one exchange each (truncation is local with a dealer)."""
    silu = measure_activation(50, 4, "silu", timeout=300)
    assert (silu.name, silu.rounds) == ("silu", 25)
    assert silu.bytes_per_element > 25 * 2 * RING_BYTES


def test_the_network_limit_adds_the_ideal_protocols_parts():
    """20 candidates of 50 rows through 785 features with the bias, 64 hidden units and 10
    logits: every part of the module docstring's protocol by hand, one copy and two."""
    link = Link(rtt_seconds=1e-4, bandwidth=1e9)
    silu = Activation("silu", rounds=25, bytes_per_element=700.0)
    softmax = Nonlinearity(rounds=40, bytes_per_row=5000.0)
    one = network_influence_limit(20, 50, 785, 64, 10, 1, link, silu, softmax)
    rows = 1000
    features = rows * 785  # X - A, sent by the data owner alone, once for every copy
    first = 2 * 785 * 128 + rows * 128  # [W1 V1] - B' both ways, the dealer's share
    tangent = 2 * 2 * rows * 64 + rows * 64  # slope * Z'
    second = 2 * 2 * rows * 64 + 2 * 2 * 64 * 10 + rows * 20  # H, H', W2, V2; the dealer's
    residual = 2 * 2 * rows * 10 + rows * 10
    per_copy = ((first + tangent + second + residual + 2 * 20) * 8 + rows * 64 * 700
                + rows * 5000)
    assert one.rounds == 1 + 25 + 1 + 1 + 40 + 1 + 1
    assert one.bytes == features * 8 + per_copy
    assert one.seconds == pytest.approx(70e-4 + one.bytes / 1e9)
    two = network_influence_limit(20, 50, 785, 64, 10, 2, link, silu, softmax)
    assert (two.rounds, two.bytes) == (70, features * 8 + 2 * per_copy)


def test_a_background_receiver_is_not_on_the_critical_path():
    """Rounds are counted per thread: a thread that only receives (e.g. the dealer's pushes)
    waits once in all, while the computing thread's exchanges and requests count each."""
    counter = WireCounter()
    for _ in range(3):  # exchanges: send, then wait for the peer
        counter.posted(80, sends=True)
        counter.waited()
    counter.waited()  # a second receive from the same burst: the same round

    def receive() -> None:
        for _ in range(5):
            counter.waited()

    thread = threading.Thread(target=receive)
    thread.start()
    thread.join()
    assert counter.snapshot() == {"bytes": 240, "rounds": 3}
    counter.reset()
    assert counter.snapshot() == {"bytes": 0, "rounds": 0}


def test_the_link_is_measured_on_the_connection_the_exchanges_use():
    link = measure_link(timeout=120)
    assert link.transport == "the parties' own TCP connection"
    assert 0 < link.rtt_seconds < 0.05 and link.bandwidth > 1e7
