"""A party's random draws, drawn ahead: its shares of the session's correlated randomness.

Besides what the dealer sends, each party draws its own shares of every triple from the PRG it
shares with the dealer, and its zero-sharings from the PRGs it shares with the other party
(CrypTen's ``generate_random_ring_element`` and ``generate_kbit_random_tensor``). On MNIST-sized
sessions these draws are a third of a party's encrypted seconds (torch's CPU generator gives
about 60 million elements a second). Which draws a session makes (the generator, the kind, the
shape) depends on the public spec alone, like the dealer's requests (explorer.mpc.dealer); their
values do not depend on when they are drawn, only on their order on each generator.

So a party records the sequence of its draws in a session (``start``) and returns it; a later
session of the same spec draws that sequence ahead, before the encrypted computation starts
(``start`` with the record: the offline phase), and every draw of the computation then takes the
next tensor drawn ahead from its generator, checked against it (kind, shape, range): a draw that
differs raises ``DrawMismatch``, since it would pair shares the dealer or the other party never
drew. At most ``memory_budget()`` elements are drawn ahead; the rest of each generator's
sequence is drawn when used, which continues each generator's stream exactly where it would be.
"""

from __future__ import annotations

import importlib
import math
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from explorer.mpc.crypten_compat import load_crypten

_crypten = load_crypten()
from crypten.common import rng  # noqa: E402

# where CrypTen and the project bound the two draw functions by name
_MODULES = ("crypten.mpc.provider.ttp_provider", "crypten.mpc.primitives.arithmetic",
            "crypten.mpc.primitives.binary", "explorer.mpc.dealt")
BUDGET = 2 ** 28  # elements drawn ahead at most (2 GiB of int64 per party) ...
FREE_SHARE = 8  # ... and at most an eighth of the memory free when the session starts


def memory_budget() -> int:
    """Elements a party may draw ahead now (``BUDGET``, less on a machine short of memory)."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: the fixed budget
        return BUDGET
    return min(BUDGET, free // FREE_SHARE // 8)

Draw = tuple[str, str, tuple[int, ...], tuple, tuple]  # generator, function, shape, args


class DrawMismatch(RuntimeError):
    """A session drew other random tensors than the ones drawn ahead for it."""


_FUNCTIONS = {"ring": "generate_random_ring_element", "kbit": "generate_kbit_random_tensor"}


class Draws:
    """One session's draws on the named generators this process shares with the dealer and
    the other party."""

    def __init__(self, generators: dict[str, torch.Generator]):
        self.generators = dict(generators)
        self.names = {id(g): name for name, g in generators.items()}
        self.log: list[Draw] = []
        self.queues: dict[str, deque[tuple[Draw, torch.Tensor]]] = {}
        self.drawn_ahead = 0  # elements

    def ahead(self, log: list[Draw], budget: int | None = None) -> None:
        """Draw ``log`` (an earlier session's record) in order, up to ``budget`` elements
        (by default :func:`memory_budget`)."""
        budget = memory_budget() if budget is None else budget
        for draw in log:
            name, function, shape, args, kwargs = draw
            if self.drawn_ahead + math.prod(shape) > budget:
                break
            tensor = getattr(rng, _FUNCTIONS[function])(
                torch.Size(shape), *args, generator=self.generators[name], **dict(kwargs))
            self.queues.setdefault(name, deque()).append((draw, tensor))
            self.drawn_ahead += math.prod(shape)

    def draw(self, function: str, size: Any, args: tuple, generator: torch.Generator | None,
             kwargs: dict) -> torch.Tensor:
        """CrypTen's draw ``function`` with these arguments: taken from what was drawn ahead
        when ``generator`` is one of the session's, else drawn now."""
        original = getattr(rng, _FUNCTIONS[function])
        name = None if generator is None else self.names.get(id(generator))
        if name is None or kwargs.get("device") not in (None, "cpu", torch.device("cpu")):
            return original(size, *args, generator=generator, **kwargs)
        rest = tuple(sorted((k, v) for k, v in kwargs.items() if k != "device"))
        draw: Draw = (name, function, tuple(torch.Size(size)), tuple(args), rest)
        self.log.append(draw)
        queue = self.queues.get(name)
        if not queue:  # nothing (more) drawn ahead on this generator: its stream goes on
            return original(size, *args, generator=generator, **kwargs)
        ahead, tensor = queue.popleft()
        if ahead != draw:
            raise DrawMismatch(f"draw {len(self.log)} of the session differs from the one "
                               f"drawn ahead for it: {draw[:3]} against {ahead[:3]}.")
        return tensor

    def check_used_up(self) -> None:
        """Every tensor drawn ahead was used: the session drew what its record said."""
        left = sum(len(q) for q in self.queues.values())
        if left:
            raise DrawMismatch(f"the session left {left} of the tensors drawn ahead for it "
                               f"unused.")


_ACTIVE: Draws | None = None


def _wrapped(function: str) -> Callable[..., torch.Tensor]:
    original = getattr(rng, _FUNCTIONS[function])

    def draw(size, *args, generator=None, **kwargs):
        if _ACTIVE is None:
            return original(size, *args, generator=generator, **kwargs)
        return _ACTIVE.draw(function, size, args, generator, kwargs)

    draw.__drawn__ = True  # type: ignore[attr-defined]
    return draw


def start(generators: dict[str, torch.Generator], log: list[Draw] | None = None) -> Draws:
    """Route this process's draws on ``generators`` (by name) through a fresh ``Draws`` for one
    session: ``log`` (an earlier session's record of the same spec) drawn ahead at once, so call
    this before the clock starts; without it, the draws are only recorded."""
    global _ACTIVE
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        for function, attr in _FUNCTIONS.items():
            if hasattr(module, attr) and not getattr(getattr(module, attr), "__drawn__", False):
                setattr(module, attr, _wrapped(function))
    _ACTIVE = Draws(generators)
    if log:
        _ACTIVE.ahead(log)
    return _ACTIVE


def stop() -> None:
    """Draws go straight to CrypTen again."""
    global _ACTIVE
    _ACTIVE = None


def session_generators() -> dict[str, torch.Generator]:
    """This party's generators whose draws the other party or the dealer matches: the two it
    shares with the other party (zero-sharings) and, with a dealer, the one it shares with it."""
    cpu = torch.device("cpu")
    named = {name: _crypten.generators[name][cpu] for name in ("prev", "next")
             if cpu in _crypten.generators.get(name, {})}
    if _crypten.mpc.ttp_required():
        from crypten.mpc.provider.ttp_provider import TTPClient

        named["dealer"] = TTPClient.get().get_generator()
    return named
