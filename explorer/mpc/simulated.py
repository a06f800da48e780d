"""Party code at world size 1 in this process: no real secret sharing, for teaching and
fixed-point checks."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from explorer.mpc.crypten_compat import MPCConfig, crypten_config, load_crypten
from explorer.mpc.runs import PartyFn


def run_simulated(fn: PartyFn, payload: Any = None, *, config: MPCConfig | None = None) -> Any:
    """Run ``fn(0, 1, payload)`` with crypten initialised at world size 1 in *this* process.

    Shares equal the encoded plaintext and truncation is exact: for teaching and fixed-point
    checks only. Environment and CrypTen config are restored afterwards.
    """
    config = config or MPCConfig()
    if config.uses_ttp:
        raise ValueError("run_simulated does not support the TTP provider (needs a dealer)")
    crypten = load_crypten()
    if crypten.is_initialized():
        raise RuntimeError("crypten is already initialised in this process")
    keys = ("RENDEZVOUS", "WORLD_SIZE", "RANK", "DISTRIBUTED_BACKEND", "GLOO_SOCKET_IFNAME")
    saved = {k: os.environ.get(k) for k in keys}
    store_dir = tempfile.mkdtemp(prefix="appraisal-simulated-")
    try:
        with crypten_config(config):
            os.environ.update(RENDEZVOUS=f"file://{store_dir}/store", WORLD_SIZE="1", RANK="0",
                              DISTRIBUTED_BACKEND="gloo", GLOO_SOCKET_IFNAME="lo")
            crypten.init()
            try:
                return fn(0, 1, payload)
            finally:
                if crypten.is_initialized():
                    crypten.uninit()
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
        for k, value in saved.items():
            if value is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = value
