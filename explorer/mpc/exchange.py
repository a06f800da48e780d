"""Two parties open a sharing by one exchange, not by gloo's all-reduce.

Opening a 2-party additive (or XOR) sharing is: each party sends its share to the other and
adds (or XORs) what it receives. CrypTen does it with ``torch.distributed.all_reduce``, whose
gloo ring takes two sequential steps (reduce-scatter, then all-gather) even for two ranks. A
direct exchange sends the same bytes (each party its whole share) in one step; on loopback it
also avoids the all-reduce's scheduling stalls, which made it about 5x slower on average for
the tensors of a small session (``benchmarks/private_costs.py`` measures the session).

Only the transport changes: the sum is the same ring sum modulo 2^64 (or XOR) on both parties,
and for any other group size or reduction CrypTen's own all-reduce runs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

_COMBINE = {dist.ReduceOp.SUM: torch.add, dist.ReduceOp.BXOR: torch.bitwise_xor}


def install(communicator_class: type) -> None:
    """Route ``communicator_class.all_reduce`` (CrypTen's DistributedCommunicator, its
    statistics kept) through :func:`exchanged` for two parties. Idempotent."""
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


def exchanged(tensors: list[torch.Tensor], group: Any, combine: Any) -> list[torch.Tensor]:
    """``combine(mine, theirs)`` for each tensor, ``theirs`` being the peer's tensor in the same
    position: every send and receive is posted at once, so the list costs one round trip."""
    me = dist.get_rank(group)
    peer = dist.get_global_rank(group, 1 - me)
    mine = [t.contiguous() for t in tensors]
    theirs = [torch.empty_like(t) for t in mine]
    # tags keep the list's tensors apart; successive calls match in order on each pair
    sends = [dist.isend(t, peer, group=group, tag=i) for i, t in enumerate(mine)]
    receives = [dist.irecv(t, peer, group=group, tag=i) for i, t in enumerate(theirs)]
    for work in receives + sends:
        work.wait()
    return [combine(a, b) for a, b in zip(mine, theirs, strict=True)]
