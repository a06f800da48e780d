"""Triples dealt ahead: the dealer streams a session's correlated randomness before it is used.

With CrypTen's TTP provider, every product waits on a synchronous request from the model owner
(rank 0) to the dealer, which regenerates the masks and returns rank 0's share of the product.
Yet the requests (their kind, shapes and operation) are a function of the public SessionSpec
alone: CrypTen's control flow never depends on secret values, and every shape is public. So:

1. **Rehearsal.** The dealer, given the public spec, runs the very session code a model owner
   runs (explorer.mpc.protocol) on placeholder inputs, as rank 0 of a two-party session (so
   CrypTen picks the two-party circuits), with a stand-in communicator that sends nothing
   (``_StandIn``), in a thread of its own. Each provider request of that run is answered at
   once by the dealer's server methods, in order, and queued. The dealer's PRGs (one shared
   with each party, seeded by CrypTen's TTP set-up) advance exactly as they would serving the
   requests one by one, so each party's own shares, drawn from its PRG as in CrypTen, stay
   consistent with the dealt ones.
2. **Pushed ahead.** Rank 0 asks once, when its session starts; the dealer then pushes what
   it has rehearsed, batch after batch, until the rehearsal ends; a thread of rank 0 receives
   it. A product waits only while the rehearsal is behind the session, never on a round
   trip; a session whose spec ran before, which the dealer replays fast, starts its online
   phase only once the whole deal is in (explorer.mpc.protocol).
   Rank 1 never talks to the dealer; it draws its shares from its PRG, as in CrypTen.
3. **Checked pops.** Every request of rank 0 pops the next dealt entry and must equal it
   (kind, shapes, operation, arguments); any difference, a request beyond the deal or a deal
   not used up raises ``DealMismatch`` (rank 0 or the dealer fails the run): a triple for the
   wrong shape would be a silently wrong value. A dealer started without the spec (on a
   machine of its own) rehearses the spec rank 0 sends with its request for the deal; one
   that cannot rehearse deals nothing, and rank 0 then sends each request on its own, as
   CrypTen does.

It also deals masks reused across products (``owned_mask`` / ``correlated_triple``), which
explorer.mpc.masked uses to open the data owner's features once per session.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch

from explorer.mpc.crypten_compat import load_crypten

_crypten = load_crypten()
from crypten.common.rng import generate_random_ring_element  # noqa: E402
from crypten.mpc.primitives import ArithmeticSharedTensor  # noqa: E402
from crypten.mpc.provider.ttp_provider import (  # noqa: E402
    TrustedThirdParty,
    TTPClient,
    TTPServer,
)

Request = tuple[str, tuple, tuple]  # (kind, args, sorted kwargs), sizes as tuples


class DealMismatch(RuntimeError):
    """The session asked the dealer for something other than what was dealt ahead."""


def _request(kind: str, args: tuple, kwargs: dict) -> Request:
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


# --------------------------------------------------------------------------- party side


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

    def owned_mask(self, size, owner: int, device=None) -> tuple[int, torch.Tensor | None]:
        """A fresh random mask (int64, ``size``) known whole to party ``owner`` (it draws it
        from the PRG it shares with the dealer), and the mask's index: the owner gets the mask,
        the other party None (its share is zero). The dealer learns the draw from the request
        (nothing travels but the request)."""
        client = TTPClient.get()
        a = None
        if _rank() == owner:
            a = generate_random_ring_element(size, generator=client.get_generator(device=device),
                                             device=device)
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


def replay(sequence: list[Request]) -> None:
    """A rehearsal from the sequence of requests an earlier rehearsal of the same public spec
    made: the same requests in the same order, without the session's computation. Whatever
    differs from the session's own requests still stops it (DealtClient.request)."""
    client = TTPClient.get()
    for kind, args, kwargs in sequence:
        client.ttp_request(kind, None, *args, **dict(kwargs))


def _rank() -> int:
    return _crypten.communicator.get().get_rank()


def install() -> None:
    """Make DealtAheadProvider the provider behind CrypTen's "TTP" setting in this process."""
    providers = vars(_crypten.mpc)["__SUPPORTED_PROVIDERS"]
    if not isinstance(providers["TTP"], DealtAheadProvider):
        providers["TTP"] = DealtAheadProvider()


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
            asked = _request(kind, args, kwargs)
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


# --------------------------------------------------------------------------- dealer side


class Dealer(TTPServer):
    """CrypTen's TTP server with masks reused across products, and the rehearsed deal."""

    def __init__(self, rehearse_for: Callable[[Any], Any] | None = None) -> None:
        """``rehearse_for(spec)`` runs the model owner's code on the public spec alone: with
        it, a dealer started without the spec (on a machine of its own) rehearses the spec
        rank 0 sends with its request for the deal. CrypTen's __init__ would start serving at
        once."""
        self.rehearse_for = rehearse_for
        # the real communicator, kept: a rehearsal swaps the global one for a stand-in
        self.comm = comm = _crypten.communicator.get()
        self.ttp_group, self.comm_group, self.device = comm.ttp_group, comm.ttp_comm_group, "cpu"
        self._setup_generators()
        self.masks: dict[int, torch.Tensor] = {}

    def mask(self, index: int, size, owner: int) -> torch.Tensor:
        # the owner drew the whole mask from the PRG it shares with the dealer: draw it too
        self.masks[index] = generate_random_ring_element(size, generator=self.generators[owner])
        return _EMPTY

    def correlated(self, index: int, size1, transpose: bool, copies: int = 1) -> torch.Tensor:
        b = self._get_additive_PRSS(size1)
        c = copies_product(self.masks[index], b, copies, transpose)
        return c - self._get_additive_PRSS(c.size(), remove_rank=True)

    def rehearse(self, session: Callable[[], Any]) -> None:
        """Start running ``session`` (the model owner's code on placeholder inputs) as rank 0
        of two, in a thread: each of its requests is answered at once and queued for rank 0."""
        self._ready: list[tuple[Request, torch.Tensor]] = []
        self.rehearsed: list[Request] = []  # the whole sequence, public: kinds and shapes
        self._rehearsing = threading.Condition()
        self._finished, self._failure = False, None

        def answer(kind: str, device, *args, **kwargs) -> torch.Tensor:
            self.device = device or "cpu"
            share = getattr(self, kind)(*args, **kwargs)
            request = _request(kind, args, kwargs)
            with self._rehearsing:
                self._ready.append((request, share))
                self.rehearsed.append(request)
                self._rehearsing.notify()
            return share.clone()  # the rehearsal computes in place on what it receives

        def run() -> None:
            try:
                with _rehearsal(answer):
                    session()
            except BaseException as exc:  # handed to the serving thread, which fails loudly
                self._failure = exc
            self.masks.clear()  # every product using them is dealt
            with self._rehearsing:
                self._finished = True
                self._rehearsing.notify()

        threading.Thread(target=run, name="rehearsal", daemon=True).start()

    def _take(self) -> tuple[list[tuple[Request, torch.Tensor]], bool]:
        """What was rehearsed since the last take (waiting for at least one entry), and
        whether the rehearsal has finished."""
        if not hasattr(self, "_rehearsing"):  # nothing to rehearse: CrypTen's requests
            return [], True
        with self._rehearsing:
            self._rehearsing.wait_for(lambda: self._ready or self._finished)
            ready, self._ready = self._ready, []
            finished = self._finished and not self._ready
        if self._failure is not None:
            raise DealMismatch(f"the dealer's rehearsal of the session failed: "
                               f"{self._failure!r}") from self._failure
        return ready, finished

    def serve(self) -> None:
        """Answer rank 0 until it says "terminate": CrypTen's TTP loop, plus "deal", answered
        by pushing the rehearsal's entries as they come until it has finished."""
        comm = self.comm
        ttp = comm.get_ttp_rank()
        while True:
            message = comm.recv_obj(0, self.ttp_group)
            if message == "terminate":
                if hasattr(self, "_rehearsing") and (self._ready or not self._finished):
                    raise DealMismatch("the session ended before using all that the dealer "
                                       "rehearsed.")
                return
            if message["function"] == "deal":
                if not hasattr(self, "_rehearsing") and self.rehearse_for is not None \
                        and message.get("spec") is not None:
                    self.rehearse(functools.partial(self.rehearse_for, message["spec"]))
                finished = False
                while not finished:
                    ready, finished = self._take()
                    comm.send_obj(([r for r, _ in ready], [tuple(t.shape) for _, t in ready],
                                   finished), 0, self.ttp_group)
                    flat = torch.cat([t.reshape(-1) for _, t in ready]) if ready else _EMPTY
                    comm.send_obj(flat.size(), 0, self.ttp_group)
                    comm.broadcast(flat, ttp, self.comm_group)
                continue
            else:
                self.device = message["device"]
                result = getattr(self, message["function"])(*message["args"],
                                                            **message["kwargs"])
            comm.send_obj(result.size(), 0, self.ttp_group)
            comm.broadcast(result, ttp, self.comm_group)


_EMPTY = torch.empty(0, dtype=torch.long)


class _StandIn:
    """Rank 0 of a two-party session that exchanges nothing: a reveal returns this party's own
    share (as if the other's were zero), which is all a rehearsal needs, since no control flow
    depends on revealed values. Anything else it is asked raises."""

    def get_rank(self) -> int:
        return 0

    def get_world_size(self) -> int:
        return 2

    def get_ttp_rank(self) -> int:
        return 2

    def all_reduce(self, x, op=None, batched=False):
        return [t.clone() for t in x] if batched else x.clone()

    def reduce(self, x, dst, op=None, batched=False):
        if dst != 0:
            return None
        return [t.clone() for t in x] if batched else x.clone()

    def all_gather(self, x):
        return [x.clone(), torch.zeros_like(x)]

    def gather(self, x, dst):
        return [x.clone(), torch.zeros_like(x)] if dst == 0 else [None]

    def broadcast(self, x, src, group=None, batched=False):
        return x

    def broadcast_obj(self, obj, src, group=None):
        return obj

    def reset_communication_stats(self) -> None:
        pass

    def __getattr__(self, name: str):
        raise DealMismatch(f"the rehearsal of a session does not communicate ({name}).")


class _RehearsalClient:
    """The TTP client during a rehearsal: throwaway PRG for rank 0's own shares, requests
    answered by the dealer at once."""

    def __init__(self, answer: Callable[..., torch.Tensor]):
        self.ttp_request = answer
        self.generator = torch.Generator().manual_seed(random.getrandbits(63))

    def get_generator(self, device=None) -> torch.Generator:
        return self.generator


@contextlib.contextmanager
def _rehearsal(answer: Callable[..., torch.Tensor]) -> Iterator[None]:
    from crypten.communicator import DistributedCommunicator

    install()
    cpu = torch.device("cpu")
    gens = _crypten.generators
    saved_gens = {k: dict(gens.get(k, {})) for k in ("prev", "next", "local", "global")}
    saved_comm, saved_client = DistributedCommunicator.instance, TTPClient._TTPClient__instance
    saved_masks = _crypten.mpc.get_default_provider().masks
    try:
        # throwaway PRGs: the dealer holds no party's, and a rehearsal must not advance any
        for k in saved_gens:
            gens.setdefault(k, {})[cpu] = torch.Generator().manual_seed(random.getrandbits(63))
        DistributedCommunicator.instance = _StandIn()
        TTPClient._TTPClient__instance = _RehearsalClient(answer)
        _crypten.mpc.get_default_provider().masks = 0
        yield
    finally:
        DistributedCommunicator.instance = saved_comm
        TTPClient._TTPClient__instance = saved_client
        _crypten.mpc.get_default_provider().masks = saved_masks
        for k, saved in saved_gens.items():
            gens[k] = saved
