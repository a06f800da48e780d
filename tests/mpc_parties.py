"""Party functions for tests/test_launcher.py.

They live in their own module (not in the test file) so that a spawned party,
a fresh interpreter that receives the parent's ``sys.path`` (which contains
``tests/``: the tests have no ``__init__.py``), can import them by reference as
``mpc_parties.<name>``. Nothing here may depend on pytest.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from explorer.mpc.crypten_compat import load_crypten

# --------------------------------------------------------------------------- /proc helpers


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` has open (empty if it is gone)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _decode_addr(hex_addr: str, v6: bool) -> str:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if v6:  # four little-endian 32-bit words
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        return f"[{socket.inet_ntop(socket.AF_INET6, raw)}]:{int(port, 16)}"
    return f"{socket.inet_ntop(socket.AF_INET, raw[::-1])}:{int(port, 16)}"


def listening_addresses(pid: int) -> list[str]:
    """``host:port`` of every TCP socket in LISTEN state owned by process ``pid``."""
    inodes = socket_inodes(pid)
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # 0A = TCP_LISTEN
                    found.append(_decode_addr(parts[1], v6))
    return found


def processes() -> list[tuple[int, str, int, int]]:
    """(pid, state letter, ppid, pgrp) of every process, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        found.append((int(entry), state, int(ppid), int(pgrp)))
    return found


def children_of(pid: int) -> dict[int, str]:
    """pid -> state letter of every process whose parent is ``pid`` (zombies included)."""
    return {child: state for child, state, ppid, _ in processes() if ppid == pid}


# --------------------------------------------------------------------------- party functions


def dot_party(rank: int, world_size: int, payload: torch.Tensor) -> dict[str, Any]:
    """Party 0 holds ``a``, party 1 holds ``b`` (same length); reveal a.b and sum(a + b).

    Also reports what the launcher should have set up: communication stats, and
    the listening sockets of this process and (rank 0 only, while the TTP dealer
    is still serving) of every sibling process, i.e. every other child of the
    launching process.
    """
    crypten = load_crypten()
    comm = crypten.communicator.get()
    mine = payload.double()
    zeros = torch.zeros_like(mine)
    a = crypten.cryptensor(mine if rank == 0 else zeros, src=0)
    b = crypten.cryptensor(mine if rank == 1 else zeros, src=1)
    dot = (a * b).sum().get_plain_text().item()
    total = (a + b).sum().get_plain_text().item()
    siblings: dict[int, list[str]] = {}
    if rank == 0:
        for pid in children_of(os.getppid()):
            if pid != os.getpid():
                siblings[pid] = listening_addresses(pid)
    return {
        "dot": dot,
        "sum": total,
        "comm": dict(comm.get_communication_stats()),
        "pid": os.getpid(),
        "listen": listening_addresses(os.getpid()),
        "siblings_listen": siblings,
    }


def boom_party(rank: int, world_size: int, payload: Any) -> None:
    crypten = load_crypten()
    x = crypten.cryptensor(torch.ones(3), src=0)
    if rank == 1:
        raise ValueError("boom")
    x.get_plain_text()  # rank 0 blocks here waiting for rank 1


def hang_party(rank: int, world_size: int, payload: Any) -> None:
    """Rank 1 starts a grandchild ``sleep <marker>``, records its pid, then hangs."""
    crypten = load_crypten()
    if rank == 1:
        marker, pid_file = payload
        grandchild = subprocess.Popen(["sleep", marker])
        Path(pid_file).write_text(str(grandchild.pid))
        time.sleep(1000)
    crypten.cryptensor(torch.ones(3), src=0).get_plain_text()  # rank 0 blocks here


def exit_party(rank: int, world_size: int, payload: Any) -> None:
    crypten = load_crypten()
    crypten.cryptensor(torch.ones(3), src=0)
    if rank == 1:
        os._exit(3)
    crypten.cryptensor(torch.ones(3), src=0).get_plain_text()  # rank 0 blocks here


def simulated_party(rank: int, world_size: int, payload: Any) -> dict[str, Any]:
    """For run_simulated: what the in-process run looked like from the inside."""
    crypten = load_crypten()
    a = crypten.cryptensor(payload[0].double())
    b = crypten.cryptensor(payload[1].double())
    return {
        "pid": os.getpid(),
        "rank": rank,
        "world_size": world_size,
        "comm_world_size": crypten.communicator.get().get_world_size(),
        "initialized": crypten.is_initialized(),
        "env_world_size": os.environ.get("WORLD_SIZE"),
        "precision_bits": crypten.cfg.encoder.precision_bits,
        "dot": (a * b).sum().get_plain_text().item(),
    }


def stop_party(rank: int, world_size: int, payload: Any) -> None:
    """Rank 1 stops itself (SIGSTOP, as a frozen or swapped-out process would); rank 0 waits
    for it in a collective."""
    crypten = load_crypten()
    if rank == 1:
        os.kill(os.getpid(), signal.SIGSTOP)
    crypten.cryptensor(torch.ones(3), src=0).get_plain_text()


def process_start(pid: int) -> float:
    """When process ``pid`` started, as a time.time() value (from /proc)."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def warm_party(rank: int, world_size: int, payload: Any) -> dict[str, Any]:
    """This process's pid and start time, and the payload it received."""
    return {"pid": os.getpid(), "started": process_start(os.getpid()), "payload": payload,
            "leakage imported": "explorer.leakage" in sys.modules}


def counted_appraisal_party(rank: int, world_size: int, payload: Any) -> Any:
    """explorer.mpc.protocol.appraisal_party, also returning what the party opened (the shape
    of every tensor it sent or exchanged with the other party) and, for the model owner, its
    waits on the dealer."""
    from crypten.mpc.provider.ttp_provider import TTPClient

    from explorer.mpc.protocol import appraisal_party

    if rank == world_size:  # the dealer's rehearsal
        return appraisal_party(rank, world_size, payload)
    comm = load_crypten().communicator.get()
    opened: list[tuple[int, ...]] = []

    def counted(reveal):
        def opening(x, *args, **kwargs):
            opened.extend(tuple(t.shape) for t in (x if isinstance(x, list) else [x]))
            return reveal(x, *args, **kwargs)
        return opening

    # exchanges (all_reduce) and one-way openings (broadcast: an input's owner sends it masked)
    comm.all_reduce, comm.broadcast = counted(comm.all_reduce), counted(comm.broadcast)
    report = appraisal_party(rank, world_size, payload)
    dealt = getattr(TTPClient.get().ttp_request, "__self__", None) if rank == 0 else None
    return {"report": report, "opened": opened,
            "waits": None if dealt is None else dealt.waits,
            "forwarded": None if dealt is None else dealt.forwarded,
            "waited": None if dealt is None else dealt.waited,
            "dealt": None if dealt is None else dealt.dealt}


def dealt_party(rank: int, world_size: int, payload: Any) -> float:
    """Products of ones of the lengths payload["parties"] (the dealer rehearses the lengths
    payload["dealer"]) with triples dealt ahead; returns the sum of the products."""
    from explorer.mpc import dealt as dealt_ahead

    crypten = load_crypten()
    dealt_ahead.install()
    dealt = dealt_ahead.expect_deal() if rank == 0 else None
    total = 0.0
    for n in payload["dealer" if rank == world_size else "parties"]:
        x = crypten.cryptensor(torch.ones(n, dtype=torch.float64), src=0)
        total += float((x * x).sum().get_plain_text())
    if dealt is not None:
        dealt.check_used_up()
    return total


def truncation_party(rank: int, world_size: int, payload: torch.Tensor) -> torch.Tensor:
    """Party 0 enters ``payload`` (float64); both divide its fixed-point encoding by
    2^precision_bits, CrypTen's local truncation, and reveal the integers."""
    crypten = load_crypten()
    y = crypten.cryptensor(payload.double() if rank == 0 else torch.zeros_like(payload.double()),
                           src=0)
    return y.div(2 ** crypten.cfg.encoder.precision_bits).reveal()


# --------------------------------------------------------------------------- the kernel's count


def tcp_bytes_sent(pids: set[int]) -> dict[int, int]:
    """Bytes each process in ``pids`` has sent over TCP, by pid: the kernel's ``bytes_sent``
    of each of its sockets (``ss -tinpH``, iproute2), summed. TCP payload, so gloo's message
    headers are in it, TCP/IP headers are not."""
    out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True,
                         text=True, check=True).stdout
    sent = dict.fromkeys(pids, 0)
    owner: int | None = None
    for line in out.splitlines():
        if not line.startswith("\t"):  # a socket; its counters follow on an indented line
            found = [int(p) for p in re.findall(r"pid=(\d+)", line)]
            owner = next((p for p in found if p in pids), None)
        elif owner is not None:
            match = re.search(r"\bbytes_sent:(\d+)", line)
            sent[owner] += int(match.group(1)) if match else 0
    return sent


def product_party(rank: int, world_size: int, n: int) -> dict[str, Any]:
    """One product of two encrypted n-vectors (the model owner's and the data owner's) and
    its reveal; returns the product and this process's wire count of just that."""
    from explorer.mpc.wire import wire_counter

    crypten = load_crypten()
    mine = torch.arange(n, dtype=torch.float64) / n + rank
    zeros = torch.zeros(n, dtype=torch.float64)
    x = crypten.cryptensor(mine if rank == 0 else zeros, src=0)
    y = crypten.cryptensor(mine if rank == 1 else zeros, src=1)
    wire = wire_counter()
    wire.reset()
    z = (x * y).get_plain_text()
    return {"product": z, "wire": wire.snapshot()}


def wire_checked_party(rank: int, world_size: int, payload: dict) -> dict[str, Any]:
    """``appraisal_party``, with the model owner reading the kernel's TCP counters of every
    process of the session (its siblings: the data owner and the dealer) just before and just
    after: the difference is what they sent on the wire during the session."""
    import torch.distributed as dist

    from explorer.mpc.protocol import appraisal_party

    if rank == world_size:  # the dealer's rehearsal: nothing to count here
        return appraisal_party(rank, world_size, payload)
    comm = load_crypten().communicator.get()
    session = {os.getpid(), *children_of(os.getppid())} if rank == 0 else set()
    before = tcp_bytes_sent(session) if rank == 0 else {}
    # the data owner starts only once the count has: otherwise its first sends could escape it
    dist.barrier(group=comm.main_group)
    comm.reset_communication_stats()
    report = appraisal_party(rank, world_size, payload)
    # the model owner's last receive completes after every process's last send
    after = tcp_bytes_sent(session) if rank == 0 else {}
    # the data owner closes its sockets only after the count has been read
    dist.barrier(group=comm.main_group)
    return {"report": report, "kernel": {p: after[p] - before[p] for p in after},
            "crypten": dict(comm.get_communication_stats())}  # counted with verbose only


def sending_party(rank: int, world_size: int, n: int) -> int:
    """Both parties share an n-vector (each sends its share), then wait a second, so that
    heartbeats report the bytes already sent; returns this process's count."""
    from explorer.mpc.wire import wire_counter

    crypten = load_crypten()
    wire = wire_counter()
    x = crypten.cryptensor(torch.ones(n, dtype=torch.float64), src=0)
    x.get_plain_text()
    time.sleep(1.0)
    return wire.snapshot()["bytes"]


def frozen_config_party(rank: int, world_size: int, payload: Any) -> dict[str, Any]:
    """What a launched party's configuration looks like (explorer.mpc.crypten_compat
    .freeze_config): its type, an override entered and left, and a sigmoid through it."""
    crypten = load_crypten()
    cfg = crypten.cfg
    before = cfg.functions.exp_iterations
    with cfg.temp_override({"functions.exp_iterations": 3, "functions.log_iters": 5}):
        inside = (cfg.functions.exp_iterations, cfg["functions.log_iters"])
    x = crypten.cryptensor(torch.tensor([0.0, 2.0], dtype=torch.float64), src=0)
    return {"type": type(cfg.config).__name__, "before": before, "inside": inside,
            "after": cfg.functions.exp_iterations, "added kept": hasattr(cfg.functions,
                                                                       "log_iters"),
            "sigmoid": x.sigmoid().get_plain_text().tolist()}


def channel_party(rank: int, world_size: int, payload: dict) -> dict[str, Any]:
    """The parties' own connection opened anew with the key in ``payload["keys"][rank]``,
    then one exchange of a 100,000-element tensor (rank r sends r + 1 everywhere) through
    CrypTen's all-reduce."""
    from explorer.mpc import exchange

    comm = load_crypten().communicator.get()
    opened_by_launcher = exchange.channel() is not None
    exchange.close()
    exchange.connect(payload["keys"][rank], comm.main_group, payload.get("timeout", 30.0))
    total = comm.all_reduce(torch.full((100_000,), rank + 1, dtype=torch.int64))
    return {"opened by the launcher": opened_by_launcher, "sum": total.unique().tolist()}


_RECEIVED: list[Any] = []  # every payload this process has received, across its sessions


def remembering_party(rank: int, world_size: int, payload: Any) -> dict[str, Any]:
    """This process's pid and every payload it has received so far (a reused process keeps
    them), after a product with the other party to show that the session really ran."""
    crypten = load_crypten()
    _RECEIVED.append(payload)
    product = (crypten.cryptensor(torch.ones(2), src=0) *
               crypten.cryptensor(torch.full((2,), 2.0), src=1)).sum().get_plain_text()
    return {"pid": os.getpid(), "received": list(_RECEIVED), "product": float(product)}


def audited_appraisal_party(rank: int, world_size: int, payload: dict) -> Any:
    """explorer.mpc.protocol.appraisal_party, also returning every tensor this process
    obtained in the clear through its communicator (the results of openings to everyone,
    openings to it alone, what others broadcast or sent it, the wrap-count gathers) and the
    shapes of the inputs it encrypted itself (src = its rank) and of the sharings it opened to
    everyone. A payload with "die" equal to
    this rank ends the process at the session's start, as a data owner that dies would."""
    from explorer.mpc.protocol import appraisal_party

    if rank == world_size:  # the dealer's rehearsal
        return appraisal_party(rank, world_size, payload)
    if payload.get("die") == rank:
        os._exit(3)
    crypten = load_crypten()
    comm = crypten.communicator.get()
    obtained: list[torch.Tensor] = []
    encrypted: list[tuple[int, ...]] = []
    opened: list[tuple[int, ...]] = []

    def keep(x: Any) -> None:
        for t in (x if isinstance(x, (list, tuple)) else [x]):
            if isinstance(t, torch.Tensor):
                obtained.append(t.detach().clone().reshape(-1))

    def everyone(fn, opening: bool = False):
        def call(x, *args, **kwargs):
            out = fn(x, *args, **kwargs)
            if opening:  # what this party opened to everyone, by shape
                opened.extend(tuple(t.shape) for t in (x if isinstance(x, list) else [x]))
            keep(out)
            return out
        return call

    def at_root(fn):
        def call(x, root, *args, **kwargs):
            out = fn(x, root, *args, **kwargs)
            if root == rank:
                keep(out)
            return out
        return call

    def reduced(fn):
        def call(parts, **kwargs):
            out = fn(parts, **kwargs)
            keep(list(out.values()))
            return out
        return call

    broadcast = comm.broadcast

    def broadcasting(x, src, *args, **kwargs):
        out = broadcast(x, src, *args, **kwargs)
        if src != rank:  # what another party sent it
            keep(out)
        return out

    comm.all_reduce = everyone(comm.all_reduce, opening=True)
    comm.all_gather = everyone(comm.all_gather)
    comm.sent_blocks, comm.broadcast = everyone(comm.sent_blocks), broadcasting
    comm.reduce, comm.gather = at_root(comm.reduce), at_root(comm.gather)
    comm.reduced_to = reduced(comm.reduced_to)
    cryptensor = crypten.cryptensor

    def encrypting(tensor, *args, src: int = 0, **kwargs):
        if src == rank:
            encrypted.append(tuple(tensor.shape))
        return cryptensor(tensor, *args, src=src, **kwargs)

    crypten.cryptensor = encrypting
    try:
        report = appraisal_party(rank, world_size, payload)
    finally:
        crypten.cryptensor = cryptensor
    return {"report": report, "obtained": torch.cat(obtained) if obtained else
            torch.zeros(0, dtype=torch.long), "encrypted": encrypted, "opened": opened}


def private_memory_party(rank: int, world_size: int, payload: Any) -> dict[str, Any]:
    """This process's parent, its private memory in MB (what it shares with no other process)
    and draws from torch's, NumPy's and Python's global generators."""
    import random

    import numpy as np

    private = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                private += int(line.split()[1])
    return {"pid": os.getpid(), "parent": os.getppid(), "private_mb": private / 1024,
            "draws": (torch.rand(4).tolist(), np.random.rand(4).tolist(),
                      [random.random() for _ in range(4)])}
