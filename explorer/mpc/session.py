"""Run one private appraisal session for a batch of candidates, in real processes or simulated."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from explorer.errors import Cancelled, ExplorerError
from explorer.mpc.crypten_compat import MPCConfig
from explorer.mpc.launcher import (
    LaunchCancelled,
    LaunchTimeout,
    MPCLaunchError,
    run_parties,
    run_simulated,
)
from explorer.mpc.protocol import (
    DATA_OWNER,
    MODEL_OWNER,
    DataOwnerInput,
    ModelOwnerInput,
    PartyReport,
    SessionSpec,
    appraisal_party,
)

MODES = ("parties", "simulated")
PROVIDERS = {
    "TTP": "a third dealer process deals the multiplication triples; private as long as the "
           "dealer colludes with neither party",
    "TFP": "the model owner's process generates every triple itself: fast, but it could then "
           "recover the data owner's inputs, so use it only for teaching and testing",
}
REVEALS = ("value", "bit")
# Newton iterations of the inverse square root in the gradient norm (CrypTen's default is 3).
SQRT_ITERATIONS = 12


@dataclass(frozen=True)
class SessionResult:
    """Revealed values (B,) and the session's cost: encrypted seconds (slowest party), bytes sent
    by all parties together, communication rounds (most of any party), and whole wall time
    including process start-up."""

    values: np.ndarray
    private_seconds: float
    bytes: int
    rounds: int
    wall_seconds: float
    reports: tuple[PartyReport, ...]


def check_options(mode: str, provider: str, reveal: str, precision_bits: int) -> None:
    if mode not in MODES:
        raise ExplorerError(f"unknown MPC mode {mode!r}; choose one of {', '.join(MODES)}.")
    if provider not in PROVIDERS:
        raise ExplorerError(f"unknown provider {provider!r}; choose TTP or TFP.")
    if reveal not in REVEALS:
        raise ExplorerError(f"unknown reveal mode {reveal!r}; choose value or bit.")
    if not 8 <= int(precision_bits) <= 28:
        raise ExplorerError(f"precision bits must be between 8 and 28, got {precision_bits}.")
    if mode == "simulated" and provider == "TTP":
        raise ExplorerError("simulated mode runs one process and has no dealer; use provider "
                            "TFP or mode parties.")


def mpc_config(spec: SessionSpec, provider: str) -> MPCConfig:
    return MPCConfig(precision_bits=spec.precision_bits, provider=provider, verbose=True,
                     sqrt_nr_iters=SQRT_ITERATIONS)


def run_session(spec: SessionSpec, model_owner: ModelOwnerInput, data_owner: DataOwnerInput,
                mode: str = "parties", provider: str = "TTP", timeout: float = 600.0,
                cancel: threading.Event | None = None,
                on_wait: Callable[[float], None] | None = None) -> SessionResult:
    """Appraise the data owner's candidates against the model owner's inputs under MPC.

    ``cancel`` stops a running session (raising Cancelled); ``on_wait`` receives the elapsed
    seconds several times a second while the parties compute.
    """
    check_options(mode, provider, spec.reveal, spec.precision_bits)
    config = mpc_config(spec, provider)
    if cancel is not None and cancel.is_set():
        raise Cancelled("the appraisal was cancelled.")
    try:
        if mode == "simulated":
            import time

            start = time.perf_counter()
            report = run_simulated(appraisal_party, {"spec": spec, "input": model_owner,
                                                     "data": data_owner}, config=config)
            reports = (report,)
            wall = time.perf_counter() - start
        else:
            launched = run_parties(appraisal_party,
                                   {MODEL_OWNER: {"spec": spec, "input": model_owner},
                                    DATA_OWNER: {"spec": spec, "input": data_owner}},
                                   config=config, timeout=timeout,
                                   collective_timeout=timeout, cancel=cancel,
                                   on_wait=on_wait)
            reports, wall = tuple(launched.results), launched.wall_s
    except LaunchCancelled as exc:
        raise Cancelled("the private appraisal was cancelled; its processes were stopped.") \
            from exc
    except LaunchTimeout as exc:
        raise ExplorerError(f"the private appraisal did not finish within {timeout:g} s and was "
                            f"stopped; raise the timeout or appraise fewer candidates.") from exc
    except MPCLaunchError as exc:
        raise ExplorerError(f"the private appraisal failed: {_first_line(exc)}") from exc
    values = reports[0].values.numpy()
    if len(reports) > 1 and not np.array_equal(values, reports[1].values.numpy()):
        raise ExplorerError("the parties revealed different values; the session is corrupt.")
    return SessionResult(values=values, private_seconds=max(r.seconds for r in reports),
                         bytes=sum(r.bytes for r in reports),
                         rounds=max(r.rounds for r in reports), wall_seconds=wall,
                         reports=reports)


def _first_line(exc: Exception) -> str:
    original = getattr(exc, "original", None)
    if isinstance(original, ExplorerError):
        return str(original)
    return str(exc).splitlines()[0]
