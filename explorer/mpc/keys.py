"""The session key: who may take part in a session.

After ``crypten.init()`` and before anything is secret-shared, every process proves that it
holds the session key (:func:`authenticate`): each sends a fresh random nonce, then an
HMAC-SHA256 of all nonces and its own rank under the key (the standard library's ``hmac`` and
``secrets``), over the established gloo group; a process whose proof fails stops everyone with
a sentence about the session key.
"""

from __future__ import annotations

import hmac
import secrets

from explorer.mpc.runs import role

KEY_BYTES = 32


class SessionKeyError(RuntimeError):
    """A process could not prove that it holds the session key."""


def new_session_key() -> bytes:
    """A fresh random session key (32 bytes)."""
    return secrets.token_bytes(KEY_BYTES)


def authenticate(key: bytes, group, rank: int, world_size: int) -> None:
    """Challenge-response over ``group`` (every process of the session): each proves it holds
    ``key``. Tensors only, never pickles, so a stranger cannot inject objects."""
    import torch
    import torch.distributed as dist

    n = dist.get_world_size(group)

    def gather(data: bytes) -> list[bytes]:
        mine = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.int64)
        out = [torch.zeros(len(data), dtype=torch.int64) for _ in range(n)]
        dist.all_gather(out, mine, group=group)
        return [bytes(t.clamp(0, 255).to(torch.uint8).tolist()) for t in out]

    transcript = b"".join(gather(secrets.token_bytes(KEY_BYTES)))

    def proof(r: int) -> bytes:
        return hmac.new(key, b"appraisal-explorer session|%d|" % r + transcript, "sha256").digest()

    proofs = gather(proof(rank))
    dist.barrier(group=group)  # everyone holds every proof before anyone may stop
    # in the gather, process r of the group is global rank r (CrypTen's groups are 0..n-1)
    wrong = [r for r in range(n) if r != rank and not hmac.compare_digest(proofs[r], proof(r))]
    if wrong:
        names = " and ".join(f"the {role(r, world_size)} (rank {r})" for r in wrong)
        holds = "it holds" if len(wrong) == 1 else "they hold"
        raise SessionKeyError(f"{names} did not prove {holds} the session key, so nothing was "
                              f"shared; start every party with the same key "
                              f"(APPRAISAL_SESSION_KEY or --session-key-file).")
