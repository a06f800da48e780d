"""The performance limit of private influence on this machine (DESIGN §4b).

The limit is what the ideal protocol costs on the measured link: its sequential rounds times
the loopback round-trip time, plus its bytes over the loopback bandwidth. The ideal protocol
for B candidates of m rows (d1 = d + 1 features with the bias, C logits) is the one of the
issue "each input opened once", with every triple dealt ahead:

1. one Beaver product of the data owner's features X (B, m, d1) with the model owner's
   [theta V] (d1, 2C): the data owner sends X - A (its own input, masked by a mask it knows,
   as SPDZ takes inputs), both parties open [theta V] - B', the dealer sends the model owner
   its share of the product (B, m, 2C);
2. the residuals R = probabilities(X theta) - Y (the project's own sigmoid or softmax, whose
   rounds and bytes per row are measured here between real parties);
3. one elementwise product of R with U = X V (B, m, C): both open two (B, m, C) tensors, the
   dealer sends a share of one;
4. the B sums are local; both open them.

Every element is 8 bytes (CrypTen's 64-bit ring); verified sessions compute ``copies`` = 2
copies side by side, which doubles the bytes of every step but the features' (sent once for
both copies), and not the rounds.

The ideal protocol for forward-mode influence through one hidden layer (``network_influence_limit``;
the mlp family, explorer.appraisers.network: layers W1 (d1, h) and W2 (h + 1, C) with the bias as
the last row, the model owner's directions V1, V2 of the same shapes), B candidates of m rows:

1. one Beaver product of the features X (B, m, d1) with [W1 V1] (d1, 2h), as step 1 above:
   the data owner sends X - A once, both open [W1 V1] - B', the dealer sends a share of the
   pre-activations Z and their tangents Z' (B, m, 2h);
2. the activation H = a(Z) and its slope a'(Z) per hidden element (the project's own: for SiLU
   one sigmoid and two products, whose rounds and bytes per element are measured here between
   real parties);
3. the tangent H' = a'(Z) Z': one elementwise product (B, m, h), both open two tensors, the
   dealer sends a share of one;
4. the second layer's products H W2, H' W2 and H V2 in one round: both open H - A1 and
   H' - A2 (B, m, h each) and the weight rows W2 - B1 and V2 - B2 (h, C each; the bias rows are
   added to the shares locally), the dealer sends a share of the logits and of their tangent
   H' W2 + H V2 (B, m, 2C);
5.-7. the residuals by the project's softmax (or sigmoid), their product with the tangent and
   the reveal, as steps 2-4 above.

Imported as ``limit`` by benchmarks/private_costs.py and benchmarks/network_seed.py (its
own directory) and tests/test_wire.py (pyproject.toml puts this directory on pytest's path).
The party processes import its party functions by name, so it puts this directory on the
PYTHONPATH they inherit.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from explorer.model import probabilities
from explorer.mpc import exchange
from explorer.mpc.crypten_compat import MPCConfig, load_crypten
from explorer.mpc.launcher import run_parties
from explorer.mpc.wire import wire_counter

RING_BYTES = 8  # bytes per element of CrypTen's ring
PINGS = 2000  # round trips timed for the median
BULK_BYTES = 64 * 2 ** 20  # one large send, for the bandwidth


@dataclass(frozen=True)
class Link:
    """The loopback link between two party processes, as their exchanges use it."""

    rtt_seconds: float  # median round trip of a one-element tensor
    bandwidth: float  # bytes per second of one large send
    transport: str = "gloo"  # the connection measured: the one the exchanges use


@dataclass(frozen=True)
class Nonlinearity:
    """What the residuals' probabilities cost per row of C logits between real parties."""

    rounds: int  # exchanges on the critical path (dealer requests excluded: dealt ahead)
    bytes_per_row: float  # sent on the wire by both parties and the dealer


@dataclass(frozen=True)
class Activation:
    """What a network's hidden activation and its slope cost per hidden element between real
    parties."""

    name: str  # explorer.constraints.ACTIVATIONS
    rounds: int  # exchanges on the critical path (dealer requests excluded: dealt ahead)
    bytes_per_element: float  # sent on the wire by both parties and the dealer


@dataclass(frozen=True)
class Limit:
    """The ideal protocol's rounds and bytes, and the seconds they take on ``link``."""

    rounds: int
    bytes: int
    seconds: float


def link_party(rank: int, world_size: int, payload: None) -> dict[str, Any]:
    """Party function: time ``PINGS`` ping-pongs of one int64 between ranks 0 and 1, then one
    send of BULK_BYTES acknowledged by one int64 (best of three), over the connection the
    parties' exchanges use (explorer.mpc.exchange: their own, when launched on one machine,
    else CrypTen's gloo group). Rank 0 returns {"rtt": median seconds, "bandwidth": bytes per
    second, "transport": which connection}."""
    import torch.distributed as dist

    own = exchange.channel()
    group = load_crypten().communicator.get().main_group
    peer = 1 - rank

    def send(t: torch.Tensor) -> None:
        if own is None:
            dist.send(t, peer, group=group)
        else:
            own.send(memoryview(t.view(torch.uint8).numpy()))

    def recv(t: torch.Tensor) -> None:
        if own is None:
            dist.recv(t, peer, group=group)
        else:
            own.receive(memoryview(t.view(torch.uint8).numpy()))

    def round_trip(out: torch.Tensor, back: torch.Tensor) -> float:
        """Seconds for rank 0 to send ``out`` and receive ``back`` (rank 1 the reverse)."""
        start = time.perf_counter()
        if rank == 0:
            send(out)
            recv(back)
        else:
            recv(out)
            send(back)
        return time.perf_counter() - start

    tiny = torch.zeros(1, dtype=torch.int64)
    bulk = torch.zeros(BULK_BYTES // RING_BYTES, dtype=torch.int64)
    # the first 100 round trips warm the connection up
    rtt = statistics.median([round_trip(tiny, tiny) for _ in range(PINGS + 100)][100:])
    best = min(round_trip(bulk, tiny) for _ in range(3))
    return {"rtt": rtt, "bandwidth": BULK_BYTES / max(best - rtt, 1e-9),
            "transport": "gloo" if own is None else "the parties' own TCP connection"}


def nonlinearity_party(rank: int, world_size: int, shape: tuple[int, int]) -> dict[str, int]:
    """Party function: the probabilities of encrypted logits of ``shape`` (rows, C) from the
    data owner; returns this party's wire count of just that."""
    crypten = load_crypten()
    Z = crypten.cryptensor(torch.zeros(shape, dtype=torch.float64), src=1)
    wire = wire_counter()
    wire.reset()
    probabilities(Z, shape[1])
    return wire.snapshot()


def activation_party(rank: int, world_size: int,
                     payload: tuple[tuple[int, int], str]) -> dict[str, int]:
    """Party function: a hidden activation and its slope (explorer.appraisers.network:
    ``activation_and_slope``) of encrypted pre-activations of ``shape`` (rows, h) from the
    data owner; returns this party's wire count of just that."""
    from explorer.appraisers.network import activation_and_slope

    shape, activation = payload
    crypten = load_crypten()
    Z = crypten.cryptensor(torch.zeros(shape, dtype=torch.float64), src=1)
    wire = wire_counter()
    wire.reset()
    activation_and_slope(Z, activation)
    return wire.snapshot()


@contextlib.contextmanager
def _importable_by_parties() -> Iterator[None]:
    """This module's directory on the PYTHONPATH of the party processes started in the block
    (they import its party functions by name); the variable as it was afterwards."""
    before = os.environ.get("PYTHONPATH")
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, before) if p)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def measure_link(timeout: float = 300.0) -> Link:
    """Round-trip time and bandwidth of the loopback link between two party processes."""
    with _importable_by_parties():
        run = run_parties(link_party, {0: None, 1: None}, config=MPCConfig(), timeout=timeout)
    rank0 = run.results[0]
    return Link(rtt_seconds=rank0["rtt"], bandwidth=rank0["bandwidth"],
                transport=rank0["transport"])


def measure_nonlinearity(rows: int, n_outputs: int, precision_bits: int = 16,
                         timeout: float = 600.0) -> Nonlinearity:
    """Rounds and bytes per row of the project's sigmoid (C = 1) or softmax, measured on
    ``rows`` rows between real parties and the dealer."""
    config = MPCConfig(precision_bits=precision_bits, provider="TTP")
    shape = (rows, n_outputs)
    with _importable_by_parties():
        run = run_parties(nonlinearity_party, {0: shape, 1: shape}, config=config,
                          timeout=timeout)
    owner, data = run.results
    sent = owner["bytes"] + data["bytes"] + (run.dealer or {}).get("bytes", 0)
    # the data owner never talks to the dealer: its rounds are the exchanges alone
    return Nonlinearity(rounds=data["rounds"], bytes_per_row=sent / rows)


def measure_activation(rows: int, width: int, activation: str = "silu",
                       precision_bits: int = 16, timeout: float = 600.0) -> Activation:
    """Rounds and bytes per element of a network's hidden ``activation`` and its slope,
    measured on ``rows`` x ``width`` pre-activations between real parties and the dealer."""
    config = MPCConfig(precision_bits=precision_bits, provider="TTP")
    payload = ((rows, width), activation)
    with _importable_by_parties():
        run = run_parties(activation_party, {0: payload, 1: payload}, config=config,
                          timeout=timeout)
    owner, data = run.results
    sent = owner["bytes"] + data["bytes"] + (run.dealer or {}).get("bytes", 0)
    return Activation(name=activation, rounds=data["rounds"],
                      bytes_per_element=sent / (rows * width))


def influence_limit(n_candidates: int, size: int, d1: int, n_outputs: int, copies: int,
                    link: Link, nonlinear: Nonlinearity) -> Limit:
    """The ideal protocol of the module docstring for B = ``n_candidates`` of m = ``size``
    rows: its rounds, bytes and seconds (rounds x RTT + bytes / bandwidth)."""
    B, m, C = n_candidates, size, n_outputs
    rows = B * m
    features = rows * d1  # the data owner sends them once, for every copy
    matmul = 2 * d1 * 2 * C + rows * 2 * C  # both open the right operand, the dealer deals
    product = 2 * 2 * rows * C + rows * C
    reveal = 2 * B
    per_copy = (matmul + product + reveal) * RING_BYTES + nonlinear.bytes_per_row * rows
    rounds = 1 + nonlinear.rounds + 1 + 1
    total = int(round(features * RING_BYTES + copies * per_copy))
    return Limit(rounds=rounds, bytes=total,
                 seconds=rounds * link.rtt_seconds + total / link.bandwidth)


def network_influence_limit(n_candidates: int, size: int, d1: int, hidden: int,
                            n_outputs: int, copies: int, link: Link, activation: Activation,
                            nonlinear: Nonlinearity) -> Limit:
    """The ideal protocol of the module docstring for forward-mode influence through one
    hidden layer of ``hidden`` units, B = ``n_candidates`` of m = ``size`` rows, d1 features
    with the bias and C = ``n_outputs`` logits: its rounds, bytes and seconds (rounds x RTT +
    bytes / bandwidth). ``activation`` is the hidden activation's measured cost per element,
    ``nonlinear`` the sigmoid's or softmax's per row of C."""
    B, m, h, C = n_candidates, size, hidden, n_outputs
    rows = B * m
    features = rows * d1  # the data owner sends them once, for every copy
    first = 2 * d1 * 2 * h + rows * 2 * h  # [W1 V1] - B' both ways, the dealer's share
    tangent = 2 * 2 * rows * h + rows * h  # a'(Z) * Z'
    second = 2 * 2 * rows * h + 2 * 2 * h * C + rows * 2 * C  # H, H', W2, V2; the dealer's
    residual = 2 * 2 * rows * C + rows * C
    reveal = 2 * B
    per_copy = ((first + tangent + second + residual + reveal) * RING_BYTES
                + activation.bytes_per_element * rows * h + nonlinear.bytes_per_row * rows)
    rounds = 1 + activation.rounds + 1 + 1 + nonlinear.rounds + 1 + 1
    total = int(round(features * RING_BYTES + copies * per_copy))
    return Limit(rounds=rounds, bytes=total,
                 seconds=rounds * link.rtt_seconds + total / link.bandwidth)
