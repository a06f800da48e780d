"""Triples dealt ahead: the dealer streams a session's correlated randomness before it is used.

With CrypTen's TTP provider, every product waits on a synchronous request from the model owner
(rank 0) to the dealer, which regenerates the masks and returns rank 0's share of the product.
Yet the requests (their kind, shapes and operation) are a function of the public SessionSpec
alone: CrypTen's control flow never depends on secret values, and every shape is public. So:

1. **Rehearsal.** The dealer, given the public spec, runs the very session code a model owner
   runs (explorer.mpc.protocol) on placeholder inputs, as rank 0 of a session of as many
   parties as the real one (so CrypTen picks the same circuits: with several data owners,
   truncation by the wrap count, whose masks the dealer deals too), with a stand-in
   communicator that sends nothing (``_StandIn``), in a thread of its own. Each provider
   request of that run is answered at once by the dealer's server methods, in order, and
   queued. The dealer's PRGs (one shared with each party, seeded by CrypTen's TTP set-up)
   advance exactly as they would serving the requests one by one, so each party's own
   shares, drawn from its PRG as in CrypTen, stay consistent with the dealt ones.
2. **Pushed ahead.** Rank 0 asks once, when its session starts; the dealer then pushes what
   it has rehearsed, batch after batch, until the rehearsal ends; a thread of rank 0 receives
   it. A product waits only while the rehearsal is behind the session, never on a round
   trip; a session whose spec ran before, which the dealer replays fast, starts its online
   phase only once the whole deal is in (explorer.mpc.protocol).
   The other ranks never talk to the dealer; it draws its shares from its PRG, as in CrypTen.
3. **Checked pops.** Every request of rank 0 pops the next dealt entry and must equal it
   (kind, shapes, operation, arguments); any difference, a request beyond the deal or a deal
   not used up raises ``DealMismatch`` (rank 0 or the dealer fails the run): a triple for the
   wrong shape would be a silently wrong value. A dealer started without the spec (on a
   machine of its own) rehearses the spec rank 0 sends with its request for the deal; one
   that cannot rehearse deals nothing, and rank 0 then sends each request on its own, as
   CrypTen does.

It also deals masks reused across products (``owned_mask`` / ``correlated_triple``), which
explorer.mpc.masked uses to open the data owner's features once per session.

This module holds the dealer's side: its server (``Dealer``), the rehearsal, ``replay`` of a
rehearsed sequence and a dealer process's session (``serve_as_dealer``); the parties' side (the
provider, rank 0's checked pops) is explorer.mpc.dealt.
"""

from __future__ import annotations

import contextlib
import functools
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from explorer.mpc.crypten_compat import load_crypten
from explorer.mpc.dealt import DealMismatch, Request, copies_product, install, plain_request
from explorer.mpc.keys import authenticate
from explorer.mpc.wire import wire_counter

_crypten = load_crypten()
from crypten.common.rng import generate_random_ring_element  # noqa: E402
from crypten.mpc.provider.ttp_provider import TTPClient, TTPServer  # noqa: E402


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

    def mask(self, index: int, size, owner) -> torch.Tensor:
        # the owner drew the whole mask from the PRG it shares with the dealer: draw it too
        # (several owners: each its own block of rows, from its own PRG)
        if isinstance(owner, int):
            self.masks[index] = generate_random_ring_element(size,
                                                             generator=self.generators[owner])
        else:
            self.masks[index] = torch.cat([
                generate_random_ring_element((rows, *size[1:]), generator=self.generators[rank])
                for rank, rows in owner])
        return _EMPTY

    def correlated(self, index: int, size1, transpose: bool, copies: int = 1) -> torch.Tensor:
        b = self._get_additive_PRSS(size1)
        c = copies_product(self.masks[index], b, copies, transpose)
        return c - self._get_additive_PRSS(c.size(), remove_rank=True)

    def rehearse(self, session: Callable[[], Any]) -> None:
        """Start running ``session`` (the model owner's code on placeholder inputs) as rank 0
        of the session's parties, in a thread: each of its requests is answered at once and
        queued for rank 0."""
        self._ready: list[tuple[Request, torch.Tensor]] = []
        self.rehearsed: list[Request] = []  # the whole sequence, public: kinds and shapes
        self._rehearsing = threading.Condition()
        self._finished, self._failure = False, None

        def answer(kind: str, device, *args, **kwargs) -> torch.Tensor:
            self.device = device or "cpu"
            share = getattr(self, kind)(*args, **kwargs)
            request = plain_request(kind, args, kwargs)
            with self._rehearsing:
                self._ready.append((request, share))
                self.rehearsed.append(request)
                self._rehearsing.notify()
            return share.clone()  # the rehearsal computes in place on what it receives

        parties = self.comm.get_world_size()

        def run() -> None:
            try:
                with _rehearsal(answer, parties):
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
    """Rank 0 of a session of ``parties`` parties that exchanges nothing: a reveal returns this
    party's own share (as if the others' were zero), which is all a rehearsal needs, since no
    control flow depends on revealed values. Anything else it is asked raises."""

    def __init__(self, parties: int = 2):
        self.parties = parties

    def get_rank(self) -> int:
        return 0

    def get_world_size(self) -> int:
        return self.parties

    def get_ttp_rank(self) -> int:
        return self.parties

    def all_reduce(self, x, op=None, batched=False):
        return [t.clone() for t in x] if batched else x.clone()

    def reduce(self, x, dst, op=None, batched=False):
        if dst != 0:
            return None
        return [t.clone() for t in x] if batched else x.clone()

    def all_gather(self, x):
        return [x.clone()] + [torch.zeros_like(x) for _ in range(self.parties - 1)]

    def gather(self, x, dst):
        return [x.clone()] + [torch.zeros_like(x) for _ in range(self.parties - 1)] \
            if dst == 0 else [None]

    def broadcast(self, x, src, group=None, batched=False):
        return x

    def sent_blocks(self, mine, shape, owners):
        return torch.zeros(shape, dtype=torch.long)

    def reduced_to(self, parts, skip=()):
        return {dst: share.clone() for dst, share in parts if dst == 0}

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
def _rehearsal(answer: Callable[..., torch.Tensor], parties: int = 2) -> Iterator[None]:
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
        DistributedCommunicator.instance = _StandIn(parties)
        TTPClient._TTPClient__instance = _RehearsalClient(answer)
        _crypten.mpc.get_default_provider().masks = 0
        yield
    finally:
        DistributedCommunicator.instance = saved_comm
        TTPClient._TTPClient__instance = saved_client
        _crypten.mpc.get_default_provider().masks = saved_masks
        for k, saved in saved_gens.items():
            gens[k] = saved


def replay(sequence: list[Request]) -> None:
    """A rehearsal from the sequence of requests an earlier rehearsal of the same public spec
    made: the same requests in the same order, without the session's computation. Whatever
    differs from the session's own requests still stops it (DealtClient.request)."""
    client = TTPClient.get()
    for kind, args, kwargs in sequence:
        client.ttp_request(kind, None, *args, **dict(kwargs))


def serve_as_dealer(crypten: Any, key: bytes, world_size: int,
                    rehearsal: Callable[[], Any] | None = None,
                    rehearse_for: Callable[[Any], Any] | None = None) -> dict[str, int]:
    """A dealer process's session: CrypTen's TTP server (``Dealer``), with the session-key
    proof after its set-up. With ``rehearsal`` (the model owner's code on placeholders, built
    from the public spec) it first deals the whole session ahead; with ``rehearse_for`` (the
    same, a function of the spec) it deals ahead the spec rank 0 sends with its request for the
    deal. It ends when rank 0 sends "terminate", returning what the dealer sent after the proof
    (explorer.mpc.wire); a broken session raises (CrypTen's own loop returns quietly)."""
    crypten.init()
    server = Dealer(rehearse_for)  # seeds the PRGs it shares with each party
    authenticate(key, crypten.communicator.get().ttp_group, world_size, world_size)
    wire = wire_counter()
    wire.reset()
    if rehearsal is not None:
        server.rehearse(rehearsal)
    server.serve()
    # the rehearsed sequence of requests (public: kinds and shapes) lets a later session of
    # the same spec replay it instead of rehearsing the computation again
    return {**wire.snapshot(), "sequence": getattr(server, "rehearsed", None)}
