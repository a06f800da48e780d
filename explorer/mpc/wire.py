"""What one process really sends: bytes on the wire and sequential communication rounds.

CrypTen's own statistics (``communicator.get_communication_stats``) add what a party sends *and*
what it receives, so summing them over parties counts every byte about twice; they leave out
the dealer; and they count one "round" per communicator call, so a dealer request (an object
sent, an object and a tensor received) is three rounds. Here instead every
``torch.distributed`` point-to-point and collective call of this process is counted where it
happens (everything CrypTen and the dealer send goes through them):

* ``bytes_sent``: tensor payload bytes this process puts on the wire, following gloo's
  algorithms: a send or a broadcast from the root sends its tensor to each receiver, a ring
  all-reduce over P processes sends 2 (P - 1) / P of the tensor, an all-gather sends (P - 1)
  copies, a gather or reduce sends one copy to the root. Gloo's per-message headers and TCP/IP
  headers are not counted (tens of bytes a message).
* ``rounds``: how often this process waits for a peer's data after it has sent something
  since its previous wait (a ring all-reduce over P > 2 processes, as several data owners
  open a sharing, counts its 2 (P - 1) sequential steps): an exchange where both parties
  send and then receive is one round, a dealer request and its reply (one object and one
  tensor, back to back) is one round trip, and several asynchronous exchanges posted together
  and then waited for are one round. Each thread counts its own rounds (a thread that receives
  the dealer's pushes in the background is not on the critical path of the thread that
  computes) and a process's rounds are its busiest thread's. The model owner takes part in
  every exchange and every dealer request, so the most rounds of any party is the critical
  path.

Counting starts when :func:`wire_counter` is first called in a process (it wraps the functions
of ``torch.distributed`` for the rest of the process) and restarts with ``reset``.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# the torch.distributed functions that move data; _traffic says what each call sends
_COUNTED = ("send", "isend", "recv", "irecv", "broadcast", "all_reduce", "reduce",
            "all_gather", "gather", "scatter", "barrier")


@dataclass
class WireCounter:
    """Payload bytes sent (bytes) and sequential rounds waited for (count) by this process."""

    bytes_sent: int = 0
    rounds: dict[int, int] = field(default_factory=dict)  # by thread id
    # threads that have sent since they last waited, so that their next receive starts a
    # round; a thread not seen yet counts as having sent, so that waiting first counts too
    waiting: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent = 0
            self.rounds.clear()
            self.waiting.clear()

    def posted(self, sent: int, sends: bool) -> None:
        """This thread started an operation that sends ``sent`` payload bytes (if ``sends``)."""
        with self.lock:
            self.bytes_sent += sent
            if sends:
                self.waiting.discard(threading.get_ident())

    def waited(self, steps: int = 1) -> None:
        """A receive of this thread completed: a new round if it sent since its last wait
        (``steps`` rounds: an operation whose messages pass through that many sequential
        steps, each sending then receiving, such as a ring all-reduce)."""
        me = threading.get_ident()
        with self.lock:
            if me not in self.waiting:
                self.rounds[me] = self.rounds.get(me, 0) + steps
                self.waiting.add(me)

    def snapshot(self) -> dict[str, int]:
        """{"bytes": bytes sent, "rounds": the rounds of its busiest thread} so far."""
        with self.lock:
            return {"bytes": self.bytes_sent, "rounds": max(self.rounds.values(), default=0)}


_COUNTER: WireCounter | None = None
_INSTALL = threading.Lock()


def bytes_so_far() -> int:
    """Payload bytes this process has sent so far (0 before its counter is installed), for the
    launcher's heartbeats: reading it never installs the counter."""
    counter = _COUNTER
    return 0 if counter is None else counter.bytes_sent


def new_session() -> None:
    """Count from zero again (if counting): a process that serves sessions one after another
    reports each one's bytes in its heartbeats, as a fresh process would."""
    counter = _COUNTER
    if counter is not None:
        counter.reset()


def _nbytes(tensors: Any) -> int:
    if tensors is None:
        return 0
    if isinstance(tensors, (list, tuple)):
        return sum(_nbytes(t) for t in tensors)
    return int(tensors.nelement() * tensors.element_size())


def _is_me(a: dict[str, Any], key: str, dist: Any) -> bool:
    """Whether this process is the root named by ``a[key]`` (a global rank) or by
    ``a["group_" + key]`` (a rank within the group)."""
    if a.get(key) is not None:
        return dist.get_rank() == a[key]
    group = a.get("group")
    mine = dist.get_rank() if group is None else dist.get_group_rank(group, dist.get_rank())
    return mine == a.get("group_" + key)


def _traffic(name: str, a: dict[str, Any], dist: Any) -> tuple[int, bool, bool]:
    """(payload bytes this process sends, whether it sends, whether it waits for a peer) for
    one call of ``dist.<name>`` with bound arguments ``a``."""
    group = a.get("group")
    size = dist.get_world_size(group)
    if name in ("send", "isend"):
        return _nbytes(a["tensor"]), True, False
    if name in ("recv", "irecv"):
        return 0, False, True
    if name == "broadcast":
        root = _is_me(a, "src", dist)
        return ((size - 1) * _nbytes(a["tensor"]) if root else 0), root, not root
    if name == "all_reduce":  # ring: reduce-scatter then all-gather of 1/P chunks
        return 2 * (size - 1) * _nbytes(a["tensor"]) // size, True, True
    if name in ("reduce", "gather"):
        root = _is_me(a, "dst", dist)
        return (0 if root else _nbytes(a["tensor"])), not root, root
    if name == "all_gather":
        return (size - 1) * _nbytes(a["tensor"]), True, True
    if name == "scatter":
        root = _is_me(a, "src", dist)
        # the root keeps its own piece; any one piece's size stands for it
        sent = _nbytes(a.get("scatter_list")) - (_nbytes(a["tensor"]) if root else 0)
        return sent, root, not root
    return 0, True, True  # barrier: empty messages, one wait


class _Receiving:
    """An asynchronous operation that receives: its wait is where the process waits for the
    peer, so that is where a round is counted."""

    def __init__(self, work: Any, counter: WireCounter):
        self._work, self._counter = work, counter

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        done = self._work.wait(*args, **kwargs)
        self._counter.waited()
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._work, name)


def _counted(name: str, original: Callable, dist: Any, counter: WireCounter) -> Callable:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        sent, sends, receives = _traffic(name, bound.arguments, dist)
        counter.posted(sent, sends)
        result = original(*args, **kwargs)
        if not receives:
            return result
        if result is not None and (name == "irecv" or bound.arguments.get("async_op")):
            return _Receiving(result, counter)
        # a synchronous call returns once the peers' data is here; gloo's ring all-reduce over
        # P > 2 processes passes 2 (P - 1) sequential steps (P = 2 exchange instead: one)
        size = dist.get_world_size(bound.arguments.get("group"))
        counter.waited(2 * (size - 1) if name == "all_reduce" and size > 2 else 1)
        return result

    wrapper.__wire_counted__ = True  # type: ignore[attr-defined]
    return wrapper


def wire_counter() -> WireCounter:
    """This process's counter; the first call wraps ``torch.distributed``'s functions.

    Call it in a process that runs one party or the dealer (not in a process whose own
    torch.distributed traffic should stay uncounted): the wrappers stay for the process's life.
    """
    global _COUNTER
    with _INSTALL:
        if _COUNTER is None:
            import torch.distributed as dist

            counter = WireCounter()
            for name in _COUNTED:
                original = getattr(dist, name)
                if not getattr(original, "__wire_counted__", False):
                    setattr(dist, name, _counted(name, original, dist, counter))
            _COUNTER = counter
        return _COUNTER
