"""One party per machine: the model owner, the data owner and the dealer each started on its own,
configured with CrypTen's environment variables (RENDEZVOUS, WORLD_SIZE, RANK).

The model owner hosts the rendezvous store, bound to RENDEZVOUS's address only. Before any gloo
group forms, every process posts its public settings there and compares them with everyone
else's: a mismatch stops all of them within seconds, each with the difference. Then each proves
that it holds the session key (explorer.mpc.keys). Gloo collectives time out after
``stall_timeout``, so a peer stopped on another machine fails the others too.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from explorer.mpc.crypten_compat import (
    MPCConfig,
    apply_config,
    load_crypten,
    set_collective_timeout,
)
from explorer.mpc.keys import authenticate
from explorer.mpc.runs import LaunchError, PartyFn, role


@contextlib.contextmanager
def host_store(host: str, port: int, timeout_s: float = 300.0) -> Iterator[int]:
    """Host a c10d TCPStore bound to ``host`` only; yields the port. Closed on exit."""
    import torch.distributed as dist

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        bound = int(sock.getsockname()[1])
        store = dist.TCPStore(host, bound, None, True, timeout=_dt.timedelta(seconds=timeout_s),
                              wait_for_workers=False, master_listen_fd=sock.fileno())
    except BaseException:
        sock.close()
        raise
    sock.detach()  # the store owns (and closes) the fd now
    try:
        yield bound
    finally:
        del store  # stops the server thread and closes the listening socket


def _env() -> tuple[int, int, str, int]:
    """RANK, WORLD_SIZE and RENDEZVOUS's host and port (set and checked by explorer.parties)."""
    from urllib.parse import urlparse

    url = urlparse(os.environ["RENDEZVOUS"])
    os.environ.setdefault("DISTRIBUTED_BACKEND", "gloo")
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), url.hostname, url.port


@contextlib.contextmanager
def _settings_exchange(settings: Mapping[str, Any], stall_timeout: float) -> Iterator[None]:
    """Before any gloo group exists, every process posts its public settings in the rendezvous
    store (rank 0 hosts it, bound to RENDEZVOUS's address only), reads everyone else's and
    compares them: a mismatch stops all of them within seconds, each with the difference."""
    import json

    import torch.distributed as dist

    rank, world_size, host, port = _env()
    everyone = range(world_size + (1 if settings.get("provider") == "TTP" else 0))
    hosting = _hosted_store(host, port, stall_timeout) if rank == 0 else \
        contextlib.nullcontext()
    with hosting:
        store = dist.TCPStore(host, port, None, False,
                              timeout=_dt.timedelta(seconds=stall_timeout))
        store.set(f"appraisal/settings/{rank}", json.dumps(dict(settings), sort_keys=True))
        _wait(store, "settings", everyone, world_size, stall_timeout)
        if rank == 0 and world_size not in everyone:
            # a dealer started against a TFP model owner: let it join, so that all compare
            with contextlib.suppress(Exception):
                store.wait([f"appraisal/settings/{world_size}"], _dt.timedelta(seconds=3))
            if store.check([f"appraisal/settings/{world_size}"]):
                everyone = range(world_size + 1)
        posted = {r: json.loads(store.get(f"appraisal/settings/{r}")) for r in everyone}
        store.set(f"appraisal/read/{rank}", "1")
        if rank == 0:  # the host keeps the store up until everyone has read it
            _wait(store, "read", everyone, world_size, stall_timeout)
        _compare(posted, world_size)
        os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "True"  # init connects as a client
        try:
            yield
        finally:
            os.environ.pop("TORCHELASTIC_USE_AGENT_STORE", None)


@contextlib.contextmanager
def _hosted_store(host: str, port: int, seconds: float) -> Iterator[int]:
    try:
        store = host_store(host, port, timeout_s=seconds)
        bound = store.__enter__()
    except OSError as exc:
        raise LaunchError(f"the model owner cannot listen on {host}:{port} "
                          f"({exc.strerror or exc}); RENDEZVOUS must name this machine's "
                          f"address and a free port.") from None
    try:
        yield bound
    finally:
        store.__exit__(None, None, None)


def _wait(store, what: str, everyone: range, world_size: int, seconds: float) -> None:
    try:
        store.wait([f"appraisal/{what}/{r}" for r in everyone])
    except Exception:
        missing = [role(r, world_size) for r in everyone
                   if not store.check([f"appraisal/{what}/{r}"])]
        raise LaunchError(f"the {' and the '.join(missing) or 'model owner'} did not join "
                          f"within {seconds:g} s; start all parties with the same RENDEZVOUS "
                          f"and provider.") from None


def _compare(posted: dict[int, dict], world_size: int) -> None:
    """Every setting two processes both posted must agree."""
    for a in sorted(posted):
        for b in sorted(posted):
            if a >= b:
                continue
            differ = sorted(k for k in posted[a].keys() & posted[b].keys()
                            if posted[a][k] != posted[b][k])
            if differ:
                detail = ", ".join(f"{k}: {role(a, world_size)} {posted[a][k]!r}, "
                                   f"{role(b, world_size)} {posted[b][k]!r}" for k in differ)
                raise LaunchError(f"the parties disagree before computing ({detail}); start "
                                  f"them with the same options.")


def run_party_from_env(fn: PartyFn, payload: Any, *, config: MPCConfig, key: bytes,
                       settings: Mapping[str, Any],
                       stall_timeout: float = 45.0) -> Any:
    """One party per machine: this process is party RANK of WORLD_SIZE (environment). It
    compares ``settings`` (public) with every other process before the gloo group forms, proves
    it holds ``key``, then runs ``fn``."""
    rank, world_size, _, _ = _env()
    crypten = load_crypten()
    apply_config(config)
    set_collective_timeout(stall_timeout)
    with _settings_exchange({**settings, "provider": config.provider}, stall_timeout):
        crypten.init()
        authenticate(key, crypten.communicator.get().ttp_group, rank, world_size)
        result = fn(rank, world_size, payload)
        # only a finished session is shut down (rank 0 tells the dealer); after a failure the
        # peers may be gone and the caller ends the process
        crypten.uninit()
        return result


def run_dealer_from_env(*, config: MPCConfig, key: bytes, stall_timeout: float = 45.0,
                        fn: PartyFn | None = None) -> None:
    """One party per machine: this process is the TTP dealer (RANK == WORLD_SIZE). With
    ``fn`` (the parties' function), it rehearses ``fn(WORLD_SIZE, WORLD_SIZE, {"spec": spec})``
    on the public spec the model owner sends, to deal the session ahead."""
    rank, world_size, _, _ = _env()
    if rank != world_size:
        raise LaunchError(f"the dealer runs with RANK equal to WORLD_SIZE ({world_size}).")
    crypten = load_crypten()
    apply_config(config)
    set_collective_timeout(stall_timeout)
    with _settings_exchange({"provider": "TTP"}, stall_timeout):
        # here, not at the top: importing this module must not import CrypTen
        from explorer.mpc.dealer import serve_as_dealer

        # its count stays on its own machine
        serve_as_dealer(crypten, key, world_size, rehearse_for=None if fn is None else (
            lambda spec: fn(world_size, world_size, {"spec": spec})))
