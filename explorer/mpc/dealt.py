"""The parties' side of triples dealt ahead (the scheme: explorer.mpc.dealer).

``DealtAheadProvider`` is CrypTen's TTP provider as the parties use it: rank 0's requests are
popped from the deal the dealer pushes ahead and checked against it (``DealtClient``, started by
``expect_deal``; a difference raises ``DealMismatch``), rank 1 draws its shares from its PRG as
in CrypTen, and masks reused across products (``owned_mask`` / ``correlated_triple``) let
explorer.mpc.masked open the data owner's features once per session.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from explorer.mpc.crypten_compat import load_crypten

_crypten = load_crypten()
from crypten.common.rng import generate_random_ring_element  # noqa: E402
from crypten.mpc.primitives import ArithmeticSharedTensor  # noqa: E402
from crypten.mpc.provider.ttp_provider import TrustedThirdParty, TTPClient  # noqa: E402

Request = tuple[str, tuple, tuple]  # (kind, args, sorted kwargs), sizes as tuples


class DealMismatch(RuntimeError):
    """The session asked the dealer for something other than what was dealt ahead."""


def plain_request(kind: str, args: tuple, kwargs: dict) -> Request:
    """A provider request as plain data, compared between the deal and the session."""

    def plain(x: Any) -> Any:
        return tuple(x) if isinstance(x, torch.Size) else x

    return kind, tuple(plain(a) for a in args), tuple(sorted(kwargs.items()))


def _broadcast(a: list[int], b: list[int]) -> tuple:
    """torch's broadcast of two shapes (torch.broadcast_shapes imports sympy on first use)."""
    n = max(len(a), len(b))
    a, b = [1] * (n - len(a)) + list(a), [1] * (n - len(b)) + list(b)
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b, strict=True)):
        raise ValueError(f"shapes {a} and {b} do not broadcast")
    return tuple(y if x == 1 else x for x, y in zip(a, b, strict=True))


def _product_size(size0, size1, op: str, transpose: bool = False, *args, **kwargs) -> tuple:
    """Shape of op(a, b), a transposed over its last two axes first, from the shapes alone
    (broadcasting rules of torch.mul and torch.matmul; other ops are computed on zeros)."""
    a, b = list(size0), list(size1)
    if transpose:
        a[-2], a[-1] = a[-1], a[-2]
    if op == "mul":
        return _broadcast(a, b)
    if op != "matmul":
        return tuple(getattr(torch, op)(torch.zeros(a, dtype=torch.long),
                                        torch.zeros(b, dtype=torch.long), *args, **kwargs).size())
    if len(a) == 1 and len(b) == 1:
        return ()
    vector_a, vector_b = len(a) == 1, len(b) == 1
    a, b = [1] * vector_a + a, b + [1] * vector_b  # torch.matmul's promotion of vectors
    out = [*_broadcast(a[:-2], b[:-2]), a[-2], b[-1]]
    return tuple(out[:-2] + out[-2:][vector_a:len(out[-2:]) - vector_b])


class DealtAheadProvider(TrustedThirdParty):
    """CrypTen's TTP provider with two changes, and two additions.

    Changes: rank 0's requests go through ``DealtClient`` (popped from the deal); the other
    party sizes a product's share from the shapes instead of multiplying random tensors (CrypTen
    computes op(a, b) only for its size). Additions: ``owned_mask`` draws a random mask a,
    known whole to one party, of a tensor that will be opened once; ``correlated_triple`` a
    product share a·b (or a^T·b) for such a mask, with a fresh b.
    """

    NAME = "TTP"

    def __init__(self) -> None:
        super().__init__()
        self.masks = 0  # masks drawn this session; their index names them to the dealer

    def generate_additive_triple(self, size0, size1, op, device=None, *args, **kwargs):
        client = TTPClient.get()
        generator = client.get_generator(device=device)
        a = generate_random_ring_element(size0, generator=generator, device=device)
        b = generate_random_ring_element(size1, generator=generator, device=device)
        if _rank() == 0:
            c = client.ttp_request("additive", device, size0, size1, op, *args, **kwargs)
        else:
            c = generate_random_ring_element(_product_size(size0, size1, op, False, *args,
                                                           **kwargs),
                                             generator=generator, device=device)
        return tuple(ArithmeticSharedTensor.from_shares(t, precision=0) for t in (a, b, c))

    def owned_mask(self, size, owner: int | tuple[tuple[int, int], ...], device=None
                   ) -> tuple[int, torch.Tensor | None]:
        """A fresh random mask (int64, ``size``) known whole to party ``owner`` (it draws it
        from the PRG it shares with the dealer), and the mask's index: the owner gets the mask,
        the other parties None (their share is zero). With several owners ((rank, rows), in
        order: consecutive row blocks along the first axis) each draws its own block, and its
        share is the mask with every other block zero. The dealer learns the draws from the
        request (nothing travels but the request)."""
        client = TTPClient.get()
        a = None
        if isinstance(owner, int):
            if _rank() == owner:
                a = generate_random_ring_element(size, generator=client.get_generator(
                    device=device), device=device)
        else:
            offset = 0
            for rank, rows in owner:
                if _rank() == rank:
                    a = torch.zeros(size, dtype=torch.long, device=device)
                    a[offset:offset + rows] = generate_random_ring_element(
                        (rows, *size[1:]), generator=client.get_generator(device=device),
                        device=device)
                offset += rows
        index = self.masks
        self.masks += 1
        if _rank() == 0:
            client.ttp_request("mask", device, index, tuple(size), owner)
        return index, a

    def correlated_triple(self, index: int, size0, size1, transpose: bool, copies: int = 1,
                          device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Shares of a fresh b (``size1``) and of c = a·b, or a^T·b with ``transpose`` (over
        the last two axes), for mask ``index`` repeated ``copies`` times along its first axis
        (shape ``size0`` once repeated)."""
        client = TTPClient.get()
        generator = client.get_generator(device=device)
        b = generate_random_ring_element(size1, generator=generator, device=device)
        if _rank() == 0:
            c = client.ttp_request("correlated", device, index, tuple(size1), transpose,
                                   copies)
        else:
            c = generate_random_ring_element(
                _product_size(size0, size1, "matmul", transpose), generator=generator,
                device=device)
        return b, c


def copies_product(left: torch.Tensor, right: torch.Tensor, copies: int,
                   transpose: bool = False) -> torch.Tensor:
    """torch.matmul of ``left`` (B, n, k) repeated ``copies`` times along its first axis (or,
    with ``transpose``, of its transpose over the last two axes) with ``right``, without
    repeating ``left``: a right operand without batch axes multiplies it once and the product is
    repeated; one with a first axis of copies x B multiplies each copy in turn."""
    left = left.transpose(-2, -1) if transpose else left
    if copies == 1:
        return torch.matmul(left, right)
    if right.dim() <= 2:
        product = torch.matmul(left, right)
        return product.repeat(copies, *[1] * (product.dim() - 1))
    parts = right.reshape(copies, -1, *right.shape[1:])
    return torch.cat([torch.matmul(left, part) for part in parts])


def _rank() -> int:
    return _crypten.communicator.get().get_rank()


def install() -> None:
    """Make DealtAheadProvider the provider behind CrypTen's "TTP" setting in this process."""
    providers = vars(_crypten.mpc)["__SUPPORTED_PROVIDERS"]
    if not isinstance(providers["TTP"], DealtAheadProvider):
        providers["TTP"] = DealtAheadProvider()


def forget_session() -> None:
    """A process that serves another session: its masks are counted from 0 again (their
    index names them to that session's dealer)."""
    provider = vars(_crypten.mpc)["__SUPPORTED_PROVIDERS"]["TTP"]
    if isinstance(provider, DealtAheadProvider):
        provider.masks = 0


class DealtClient:
    """Rank 0's requests, popped from what the dealer deals ahead and checked against it.

    At the session's start it asks the dealer once for the deal; a receiving thread then takes
    the dealer's shares as it pushes them (each batch as soon as rehearsed), so a product waits
    only if the dealer's rehearsal is behind the session, never on a round trip.
    """

    def __init__(self, forward: Callable[..., torch.Tensor], spec: Any = None):
        self.forward = forward  # CrypTen's request: one round trip to the dealer
        self.pending: deque[tuple[Request, torch.Tensor]] = deque()
        self.done = False  # the dealer has pushed everything it rehearsed
        self.dealt = 0  # entries received
        self.used = 0
        self.waits = 0  # products that found nothing dealt yet and waited for the dealer
        self.waited = 0.0  # seconds they waited
        self.forwarded = 0  # requests sent to the dealer one by one (no rehearsal)
        self.failure: BaseException | None = None
        self.arrived = threading.Condition()
        comm = _crypten.communicator.get()
        # the public spec goes along, for a dealer that did not receive it at its start
        comm.send_obj({"function": "deal", "device": None, "args": (), "kwargs": {},
                       "spec": spec}, comm.get_ttp_rank(), comm.ttp_group)
        self.receiver = threading.Thread(target=self._receive, args=(comm,), name="deal",
                                         daemon=True)
        self.receiver.start()

    def _receive(self, comm) -> None:
        ttp = comm.get_ttp_rank()
        try:
            done = False
            while not done:
                requests, shapes, done = comm.recv_obj(ttp, comm.ttp_group)
                flat = torch.empty(comm.recv_obj(ttp, comm.ttp_group), dtype=torch.long)
                comm.broadcast(flat, ttp, comm.ttp_comm_group)
                parts = flat.split([math.prod(s) for s in shapes])
                with self.arrived:
                    self.pending.extend(zip(requests, (p.view(s) for p, s in
                                                       zip(parts, shapes, strict=True)),
                                            strict=True))
                    self.dealt += len(requests)
                    self.done = done
                    self.arrived.notify()
        except BaseException as exc:  # the session's thread raises it at its next request
            with self.arrived:
                self.failure, self.done = exc, True
                self.arrived.notify()

    def request(self, kind: str, device, *args, **kwargs) -> torch.Tensor:
        with self.arrived:
            if not self.pending and not self.done:
                self.waits += 1
                start = time.perf_counter()
                self.arrived.wait_for(lambda: self.pending or self.done)
                self.waited += time.perf_counter() - start
            if self.failure is not None:
                raise DealMismatch(f"the deal from the dealer broke off: "
                                   f"{self.failure}") from self.failure
            if self.done and self.dealt == 0:  # the dealer had no spec: CrypTen's way
                self.forwarded += 1
                return self.forward(kind, device, *args, **kwargs)
            asked = plain_request(kind, args, kwargs)
            if not self.pending:
                raise DealMismatch(f"the session asked the dealer for more than it dealt "
                                   f"ahead ({self.dealt} requests; then {asked[:2]}).")
            dealt, share = self.pending.popleft()
        if asked != dealt:
            raise DealMismatch(f"request {self.used} of the session differs from what the "
                               f"dealer rehearsed: {asked} against {dealt}.")
        self.used += 1
        return share

    def wait_for_deal(self) -> None:
        """Return once the dealer has pushed all it rehearsed (the session's offline phase);
        a broken deal raises here."""
        self.receiver.join()
        if self.failure is not None:
            raise DealMismatch(f"the deal from the dealer broke off: {self.failure}") \
                from self.failure

    def check_used_up(self) -> None:
        """The session used everything dealt: the rehearsal predicted this very run."""
        self.receiver.join()
        if self.pending or self.failure is not None:
            raise DealMismatch(f"the session used {self.used} of the {self.dealt} requests "
                               f"the dealer rehearsed.")


def expect_deal(spec: Any = None) -> DealtClient:
    """On rank 0 with a dealer: ask for the deal of the session with public ``spec`` (plain
    data: CrypTen's restricted unpickler reads it) now, and route this session's provider
    requests through it."""
    client = TTPClient.get()
    dealt = DealtClient(forward=client.ttp_request, spec=spec)
    client.ttp_request = dealt.request  # the instance's method, for this process's session
    return dealt
