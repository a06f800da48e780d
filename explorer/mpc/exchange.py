"""Two parties open a sharing by one exchange, not by gloo's all-reduce.

Opening a 2-party additive (or XOR) sharing is: each party sends its share to the other and
adds (or XORs) what it receives. CrypTen does it with ``torch.distributed.all_reduce``, whose
gloo ring takes two sequential steps (reduce-scatter, then all-gather) even for two ranks. A
direct exchange sends the same bytes (each party its whole share) in one step.

Where it goes: parties launched on one machine (explorer.mpc.launcher) exchange over a TCP
connection of their own on loopback (``Channel``), opened after the session key is proved and
itself authenticated with that key. Gloo's point-to-point messages, even its isend and irecv,
stall for a scheduler tick (about 4 ms) on one exchange in eight when the parties compute
between exchanges, as they do; a plain socket does not. Parties on separate machines exchange
with gloo's isend and irecv, over the connections gloo already has.

More than two parties (several data owners) open a sharing with CrypTen's own all-reduce,
gloo's ring: each party sends about twice its share whatever the number of parties (where an
exchange with every other party would send its share to each), in 2 (P - 1) sequential steps,
each counted as a round (explorer.mpc.wire). Two more operations serve several data owners,
both one round of point-to-point messages: ``blocks_sent`` (each data owner sends its
own rows of a public tensor, such as its masked features, to every other party) and
``reduced_to`` (sharings opened to chosen parties only, or summed there over some of the
parties: each party sends its share to each destination, which alone adds them up; nobody
relays a partial sum).

Only the transport changes: the sum is the same ring sum modulo 2^64 (or XOR) on every party,
and for any other reduction or group size CrypTen's own all-reduce runs. What is sent is
counted on this process's wire counter (explorer.mpc.wire): the payload bytes, one round.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import select
import socket
import time
from typing import Any

import torch
import torch.distributed as dist

from explorer.mpc.wire import wire_counter

_COMBINE = {dist.ReduceOp.SUM: torch.add, dist.ReduceOp.BXOR: torch.bitwise_xor}
NONCE_BYTES = 32
CHUNK = 1 << 22  # bytes a send or receive call takes at most
PROOF_SECONDS = 5.0  # a connection to the model owner's port proves the key within this


class ChannelError(RuntimeError):
    """The parties' own connection failed: refused, unauthenticated, closed or silent."""


class Channel:
    """The two parties' own TCP connection, for their exchanges."""

    def __init__(self, sock: socket.socket, timeout: float | None = None):
        """``timeout``: seconds a party waits for the other before failing; None waits as
        long as the other lives (a launcher that watches both bounds the session)."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock, self.timeout = sock, timeout

    def exchange(self, mine: torch.Tensor) -> torch.Tensor:
        """The peer's tensor of ``mine``'s shape and type, ``mine`` sent to it meanwhile."""
        mine = mine.contiguous()
        theirs = torch.empty_like(mine)
        self._transfer(memoryview(mine.reshape(-1).view(torch.uint8).numpy()),
                       memoryview(theirs.reshape(-1).view(torch.uint8).numpy()))
        return theirs

    def send(self, data: memoryview) -> None:
        """Send ``data`` (bytes) whole."""
        self._transfer(data, memoryview(b""))

    def receive(self, into: memoryview) -> None:
        """Fill ``into`` (bytes) from the peer."""
        self._transfer(memoryview(b""), into)

    def _transfer(self, out: memoryview, into: memoryview) -> None:
        """Send ``out`` and fill ``into``, interleaved, so that neither party blocks on a full
        buffer while both send."""
        sent = got = 0
        while sent < len(out) or got < len(into):
            readable, writable, _ = select.select([self.sock] if got < len(into) else [],
                                                  [self.sock] if sent < len(out) else [], [],
                                                  self.timeout)
            if not readable and not writable:
                raise ChannelError(f"the other party sent nothing for {self.timeout} s.")
            if writable:
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    sent += self.sock.send(out[sent:sent + CHUNK])
            if readable:
                try:
                    n = self.sock.recv_into(into[got:], min(CHUNK, len(into) - got))
                except (BlockingIOError, InterruptedError):
                    continue
                if n == 0:
                    raise ChannelError("Connection closed by peer (the parties' own "
                                       "connection).")
                got += n

    def close(self) -> None:
        self.sock.close()


_CHANNEL: Channel | None = None


def channel() -> Channel | None:
    """The parties' own connection, when this process opened one."""
    return _CHANNEL


def _proof(key: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, b"appraisal-explorer channel|" + nonce, "sha256").digest()


def _receive_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Up to ``n`` bytes from ``sock``: fewer if it closes or ``deadline`` passes."""
    data = b""
    while len(data) < n:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(n - len(data))
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def connect(key: bytes, group: Any, timeout: float, idle: float | None = None) -> Channel:
    """Open the two parties' own connection on loopback (both on this machine): rank 0 of
    ``group`` listens on a free port and sends the port and a fresh nonce over ``group`` (gloo,
    already authenticated); rank 1 connects and proves it holds ``key`` within ``timeout``
    seconds; rank 0 drops anyone who does not, then acknowledges. Later exchanges go over it
    (see ``install``) and wait at most ``idle`` seconds for the other party (None: as long as
    it lives)."""
    global _CHANNEL
    me = dist.get_rank(group)
    deadline = time.monotonic() + timeout
    # the port and the nonce as one tensor: gloo carries tensors, never pickles, here
    message = torch.zeros(1 + NONCE_BYTES, dtype=torch.int64)
    if me == 0:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            nonce = secrets.token_bytes(NONCE_BYTES)
            message[0] = listener.getsockname()[1]
            message[1:] = torch.tensor(list(nonce))
            dist.broadcast(message, dist.get_global_rank(group, 0), group=group)
            while True:
                listener.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    sock, _ = listener.accept()
                except TimeoutError as exc:
                    raise ChannelError("the data owner did not connect to the parties' own "
                                       "connection with the session key in time.") from exc
                # a connection that proves nothing within seconds is dropped, not waited on
                proof = _receive_exactly(sock, len(_proof(key, nonce)),
                                         min(deadline, time.monotonic() + PROOF_SECONDS))
                if hmac.compare_digest(proof, _proof(key, nonce)):
                    sock.sendall(b"\x01")
                    break
                sock.close()  # a stranger: wait for the data owner
    else:
        dist.broadcast(message, dist.get_global_rank(group, 0), group=group)
        nonce = bytes(message[1:].tolist())
        sock = socket.create_connection(("127.0.0.1", int(message[0])),
                                        timeout=max(deadline - time.monotonic(), 0.001))
        sock.sendall(_proof(key, nonce))
        if _receive_exactly(sock, 1, deadline) != b"\x01":
            sock.close()
            raise ChannelError("the model owner did not accept the data owner's proof of the "
                               "session key on the parties' own connection; start both "
                               "parties with the same session key.")
    _CHANNEL = Channel(sock, idle)
    return _CHANNEL


def close() -> None:
    """Close the parties' own connection, if open; exchanges go over gloo again."""
    global _CHANNEL
    if _CHANNEL is not None:
        _CHANNEL.close()
        _CHANNEL = None


def install(communicator_class: type) -> None:
    """Route ``communicator_class.all_reduce`` (CrypTen's DistributedCommunicator, its
    statistics kept) through :func:`exchanged` for two parties, and its ``broadcast`` between
    them over their own connection when open. Idempotent."""
    from crypten.communicator.communicator import _logging

    logged = communicator_class.all_reduce
    if getattr(logged, "__exchange__", False):
        return
    original = logged.__wrapped__  # CrypTen's all-reduce inside its statistics' wrapper

    def all_reduce(self: Any, input: Any, op: Any = dist.ReduceOp.SUM,
                   batched: bool = False) -> Any:
        group = self.main_group
        combine = _COMBINE.get(op)
        if combine is None or dist.get_world_size(group) != 2:
            return original(self, input, op=op, batched=batched)
        tensors = input if batched else [input]
        out = exchanged([t.data for t in tensors], group, combine)
        return out if batched else out[0]

    all_reduce.__doc__ = original.__doc__
    wrapped = _logging(all_reduce)
    wrapped.__exchange__ = True  # type: ignore[attr-defined]
    communicator_class.all_reduce = wrapped

    original_broadcast = communicator_class.broadcast.__wrapped__

    def broadcast(self: Any, input: Any, src: int, group: Any = None,
                  batched: bool = False) -> Any:
        if _CHANNEL is None or batched or group not in (None, self.main_group) \
                or dist.get_world_size(self.main_group) != 2:
            return original_broadcast(self, input, src, group=group, batched=batched)
        data = input.data
        if not data.is_contiguous():
            raise ValueError("the parties' own connection broadcasts contiguous tensors only.")
        view = memoryview(data.reshape(-1).view(torch.uint8).numpy())
        counter = wire_counter()
        if self.get_rank() == src:
            counter.posted(len(view), sends=True)
            _CHANNEL.send(view)
        else:
            _CHANNEL.receive(view)
            counter.waited()
        return input

    broadcast.__doc__ = original_broadcast.__doc__
    communicator_class.broadcast = _logging(broadcast)

    def sent_blocks(self: Any, mine: torch.Tensor | None, shape: tuple[int, ...],
                    owners: tuple[tuple[int, int], ...]) -> torch.Tensor:
        return blocks_sent(mine, shape, owners, self.main_group)

    def reduced(self: Any, parts: list[tuple[int, torch.Tensor]], skip: tuple[int, ...] = ()
                ) -> dict[int, torch.Tensor]:
        return reduced_to(parts, self.main_group, skip)

    sent_blocks.__doc__, reduced.__doc__ = blocks_sent.__doc__, reduced_to.__doc__
    communicator_class.sent_blocks = sent_blocks
    communicator_class.reduced_to = reduced


def exchanged(tensors: list[torch.Tensor], group: Any, combine: Any) -> list[torch.Tensor]:
    """``combine(mine, theirs)`` for each tensor, ``theirs`` being the peer's tensor in the same
    position, in one round trip: over the parties' own connection when open, else every gloo
    send and receive posted at once."""
    mine = [t.contiguous() for t in tensors]
    if _CHANNEL is not None:
        flat = torch.cat([t.reshape(-1) for t in mine]) if len(mine) > 1 else mine[0].reshape(-1)
        counter = wire_counter()
        counter.posted(flat.numel() * flat.element_size(), sends=True)
        received = _CHANNEL.exchange(flat)
        counter.waited()
        parts = received.split([t.numel() for t in mine]) if len(mine) > 1 else [received]
        theirs = [p.view(t.shape) for p, t in zip(parts, mine, strict=True)]
    else:
        peer = dist.get_global_rank(group, 1 - dist.get_rank(group))
        theirs = [torch.empty_like(t) for t in mine]
        # tags keep the list's tensors apart; successive calls match in order on each pair
        sends = [dist.isend(t, peer, group=group, tag=i) for i, t in enumerate(mine)]
        receives = [dist.irecv(t, peer, group=group, tag=i) for i, t in enumerate(theirs)]
        for work in receives + sends:
            work.wait()
    return [combine(a, b) for a, b in zip(mine, theirs, strict=True)]


def blocks_sent(mine: torch.Tensor | None, shape: tuple[int, ...],
                owners: tuple[tuple[int, int], ...], group: Any) -> torch.Tensor:
    """The public tensor of ``shape`` whose consecutive row blocks (along the first axis) are
    held by ``owners`` ((rank, rows), in order): each owner sends its block (``mine``, on it;
    None elsewhere) to every other party of ``group``, all messages posted at once, one round.
    Every party returns the whole tensor."""
    me = dist.get_rank()  # global ranks throughout, as ``owners`` names them
    parties = [dist.get_global_rank(group, r) for r in range(dist.get_world_size(group))]
    blocks, sends, receives, offset = [], [], [], 0
    for owner, rows in owners:
        if owner == me:
            if mine is None or tuple(mine.shape) != (rows, *shape[1:]):
                raise ValueError(f"block of rank {me} must have shape {(rows, *shape[1:])}")
            block = mine.contiguous()
            sends += [dist.isend(block, p, group=group) for p in parties if p != me]
        else:
            block = torch.empty((rows, *shape[1:]), dtype=torch.long)
            receives.append(dist.irecv(block, owner, group=group))
        blocks.append(block)
        offset += rows
    if offset != shape[0]:
        raise ValueError(f"the owners' blocks add up to {offset} rows, not {shape[0]}")
    for work in receives + sends:
        work.wait()
    return torch.cat(blocks)


def reduced_to(parts: list[tuple[int, torch.Tensor]], group: Any, skip: tuple[int, ...] = ()
               ) -> dict[int, torch.Tensor]:
    """Sharings opened to chosen parties only: for each (destination rank, this party's share),
    every other party sends its share to the destination, which adds them all up. All messages
    are posted at once (one round); the result, by destination, holds the sums this party
    received (the ring's sum modulo 2^64), and nothing for the others. Destinations are
    distinct global ranks, none in ``skip``: the parties whose shares are left out of the sums
    (they send nothing)."""
    if len({dst for dst, _ in parts}) != len(parts) or {dst for dst, _ in parts} & set(skip):
        raise ValueError("each destination is named once, and none is skipped")
    me = dist.get_rank()
    senders = [p for p in (dist.get_global_rank(group, r)
                           for r in range(dist.get_world_size(group))) if p not in skip]
    sends, receives, opened = [], [], {}
    for tag, (dst, share) in enumerate(parts):
        share = share.contiguous()
        if dst != me:
            if me in senders:
                sends.append(dist.isend(share, dst, group=group, tag=tag))
            continue
        others = [p for p in senders if p != me]
        theirs = [torch.empty_like(share) for _ in others]
        receives += [dist.irecv(t, p, group=group, tag=tag)
                     for t, p in zip(theirs, others, strict=True)]
        opened[dst] = (share, theirs)
    for work in receives + sends:
        work.wait()
    return {dst: sum(theirs, share.clone()) for dst, (share, theirs) in opened.items()}
