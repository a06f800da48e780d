"""What every appraiser shares: one definition of its computation, run in plaintext or under MPC.

An appraiser says three things, and nothing about the backend:

- ``model_owner_inputs(public)``: what the model owner enters, prepared in the clear from its
  own data only (with ``model_owner_shapes``, the public shapes the data owner expects);
- the data owner's input is always the candidate batch (explorer.appraisers.batch);
- ``compute(inputs, A, Y, public)``: the value of each candidate, written once with operations
  torch tensors and CrypTensors share. In plaintext it runs on torch tensors; under MPC the
  protocol (explorer.mpc.protocol) runs the very same method on CrypTensors;
- ``check_fixed_point(inputs, bits)``: its fixed-point needs, checked before encryption.

Orientation everywhere: a higher value means a more valuable candidate.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.reveal import Defences, compute_defended
from explorer.errors import Cancelled, ExplorerError
from explorer.seed import SeedModel

Progress = Callable[[str, int, int], None]  # (phase, done, total)

# The phases of a job an interface shows (ProgressEvent.phase).
GROUND_TRUTH, APPRAISE, ENCRYPTED, ACQUISITION = ("ground truth", "appraise",
                                                  "encrypted session", "acquisition")


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a job, structured so an interface never parses text: the phase, the
    appraiser it concerns (None for the ground truth), candidates done of total, and during an
    encrypted session its elapsed seconds, how many of its processes are up and the bytes they
    have sent on the wire so far (None in simulated mode, where nothing is sent)."""

    phase: str
    appraiser: str | None
    done: int
    total: int
    elapsed: float | None = None
    parties_up: int | None = None
    bytes_sent: int | None = None

    @property
    def text(self) -> str:
        """The event as one line (what a plain ``Progress`` receives as its phase)."""
        who = self.appraiser or self.phase
        if self.phase == ENCRYPTED:
            sent = "" if not self.bytes_sent else f", {self.bytes_sent / 1e6:.1f} MB sent"
            return f"{who}: encrypted session, {self.elapsed or 0.0:.1f} s{sent}"
        return who


class EventProgress:
    """A ``Progress`` that hands structured events to ``on_event``. Code that knows only
    ``(phase, done, total)`` (explorer.experiments names the ground truth or an appraiser) is
    turned into the same events; the appraisers send theirs directly (``report_progress``)."""

    def __init__(self, on_event: Callable[[ProgressEvent], None], appraisers: Iterable[str]):
        self.on_event, self.appraisers = on_event, frozenset(appraisers)

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase in self.appraisers:
            self.on_event(ProgressEvent(APPRAISE, phase, done, total))
        else:
            self.on_event(ProgressEvent(phase, None, done, total))

    def event(self, event: ProgressEvent) -> None:
        self.on_event(event)


def report_progress(progress: Progress | None, event: ProgressEvent) -> None:
    """Send ``event`` as an event to an ``EventProgress``, as one line to any other Progress."""
    if progress is None:
        return
    if isinstance(progress, EventProgress):
        progress.event(event)
    else:
        progress(event.text, event.done, event.total)

# Copies of a private value always agree within this many units of 2^-precision_bits (see
# Appraiser.agreement).
AGREEMENT_ULPS = 64

# Plaintext batches are cut so that one chunk holds about this many float64 values per tensor.
_CHUNK_VALUES = 4_000_000


@dataclass(frozen=True)
class Public:
    """What both parties know before an appraisal: the appraiser and its hyper-parameters, the
    model's shape, the candidates' sizes and the seed set's public sizes and L2 strength."""

    appraiser: str
    params: tuple[tuple[str, Any], ...]
    n_features: int  # d
    n_outputs: int  # C
    sizes: tuple[int, ...]  # |D_a| of each candidate
    n_seed: int  # |D_tr|
    n_test: int  # |D_te|
    lam: float

    @property
    def n_candidates(self) -> int:
        return len(self.sizes)

    @property
    def size(self) -> int:
        """Rows of the padded candidate batch."""
        return max(self.sizes)

    @property
    def d1(self) -> int:
        return self.n_features + 1

    def sizes_tensor(self) -> torch.Tensor:
        return torch.tensor(self.sizes, dtype=torch.float64)


def _pairs(candidates) -> list[tuple]:
    """The candidates as a list of (X, y) pairs; one sentence when they are not."""
    if candidates is None or isinstance(candidates, (str, bytes)) \
            or not isinstance(candidates, Iterable):
        raise ExplorerError(f"appraise_many takes a list of (X, y) pairs, got "
                            f"{type(candidates).__name__}.")
    pairs = list(candidates)
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ExplorerError(f"candidate {i} must be a pair (X, y) of features and labels, got "
                                f"{type(pair).__name__}; for a market's Candidate c pass "
                                f"(c.X, c.y).")
    return pairs


def penalty_mask(d1: int, n_outputs: int) -> torch.Tensor:
    """1 on the weight rows, 0 on the unpenalised bias row: (d1, C)."""
    mask = torch.ones(d1, n_outputs, dtype=torch.float64)
    mask[-1] = 0.0
    return mask


class Appraiser(ABC):
    """Scikit-learn-shaped: ``fit(seed)`` does the model owner's one-off work, ``value(X, y)``
    appraises one candidate (standardised features (m, d), labels (m,)), ``appraise_many`` a
    batch. ``backend`` is "plaintext" or "crypten" (then ``mpc`` holds the MPC options)."""

    name: ClassVar[str]
    model_owner_data: ClassVar[str]  # in words: what the model owner enters

    def __init__(self, backend: str = "plaintext", mpc=None):
        from explorer.appraisers.config import MPCOptions

        if backend not in ("plaintext", "crypten"):
            raise ExplorerError(f"unknown backend {backend!r}; choose plaintext or crypten.")
        self.backend = backend
        if mpc is not None and not isinstance(mpc, MPCOptions):
            raise ExplorerError("mpc must be an MPCOptions; build appraisers with "
                                "AppraiserConfig.")
        self.mpc = (mpc or MPCOptions()) if backend == "crypten" else None
        self.use_defences(self.mpc.defences if self.mpc is not None else Defences())

    def use_defences(self, defences: Defences) -> Appraiser:
        """Apply these public reveal defences (explorer.appraisers.reveal); a weight bound, and
        the noise calibrated with it, exist only for appraisers that declare one."""
        if not isinstance(defences, Defences):
            raise ExplorerError("defences must be an explorer.appraisers.reveal.Defences.")
        if defences.weight_bound is not None and not self.bounds_weights:
            raise ExplorerError(f"a weight bound (and the noise calibrated with it) is defined "
                                f"for the influence appraiser only, not {self.name}.")
        if self.mpc is not None and self.mpc.defences != defences:
            raise ExplorerError("a private appraiser takes its defences from its MPC options.")
        self.defences = defences
        return self

    # -- the definition ------------------------------------------------------------------

    def params(self) -> dict:
        """The hyper-parameters, public: both parties build the same definition from them."""
        return {}

    @abstractmethod
    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        """The public shape of each of the model owner's inputs."""

    @abstractmethod
    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        """The model owner's inputs (float64), prepared in the clear from its own data."""

    @abstractmethod
    def compute(self, inputs: dict, A, Y, public: Public):
        """Values (B,) of the candidates A (B, m, d1), Y (B, m, C); torch or CrypTen."""

    # whether the model owner's inputs have a norm a public weight bound can limit
    bounds_weights: ClassVar[bool] = False

    def weight_excess(self, inputs: dict, public: Public, weight_bound: float):
        """A vector that is <= 0 everywhere iff the inputs respect ``weight_bound`` (torch or
        CrypTen; see explorer.appraisers.reveal)."""
        raise ExplorerError(f"the {self.name} appraiser has no weight bound.")

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        """Refuse inputs that could overflow the fixed-point ring (see explorer.mpc.protocol)."""
        from explorer.appraisers.fixed_point import check_parameters

        check_parameters(inputs["theta"], precision_bits)

    def diagnose(self, values: Sequence[float]) -> list[str]:
        """Per candidate, "" or a short note a model owner can act on. No test-loss reduction
        can exceed the seed's whole test loss (losses are non-negative)."""
        loss = self._fitted().test_loss
        return [self._beyond_test_loss if v > loss else "" for v in values]

    _beyond_test_loss = "exceeds the seed's whole test loss, which no data can remove"

    # Two independently shared copies of a private value agree within this fraction of the
    # larger of their magnitudes and the batch's median magnitude (README: verified values),
    # and always within AGREEMENT_ULPS units of the fixed-point resolution 2^-precision_bits:
    # copies of a value near zero differ by a few units of rounding noise, while a failed
    # truncation is off by about 2^(64 - 2 precision_bits) or more.
    agreement: ClassVar[float] = 0.01

    def possible(self, values: np.ndarray) -> np.ndarray:
        """Per value: whether it obeys the bounds every value of this appraiser obeys."""
        return np.isfinite(values)

    def verified(self, values: np.ndarray, bits: bool) -> np.ndarray:
        """Which candidates' private values to trust: values (copies, B) revealed from
        independent sharings; bits when only value > threshold was revealed."""
        first = values[0]
        if bits:
            ok = np.isin(first, (0.0, 1.0))
            return ok & (values[0] == values[-1])
        # the bounds need the model owner's seed model; a data owner checks agreement only.
        # A grid rounds each copy stochastically: within one step of the value, and of the
        # other copy (both copies carry the same noise, see explorer.appraisers.reveal)
        step = self.defences.grid
        if hasattr(self, "seed_"):
            ok = self.possible(first - step) | self.possible(first + step)
        else:
            ok = np.isfinite(first)
        if len(values) > 1:
            floor = float(np.median(np.abs(values)))
            from explorer.appraisers.config import DEFAULT_PRECISION_BITS

            bits_ = self.mpc.precision_bits if self.mpc is not None else DEFAULT_PRECISION_BITS
            tol = self.agreement * np.maximum(np.abs(values).max(axis=0), floor) + step \
                + AGREEMENT_ULPS * 2.0 ** -bits_
            ok &= np.abs(values[0] - values[1]) <= tol
        return ok

    # -- running it --------------------------------------------------------------------

    def fit(self, seed: SeedModel) -> Appraiser:
        if not isinstance(seed, SeedModel):
            raise ExplorerError(f"fit takes the model owner's SeedModel (from fit_seed_model), "
                                f"got {type(seed).__name__}.")
        start = time.perf_counter()
        self.seed_ = seed
        self._setup(seed)
        self.setup_seconds_ = time.perf_counter() - start
        return self

    def _setup(self, seed: SeedModel) -> None:  # noqa: B027 - most appraisers need no set-up
        pass

    def public(self, sizes: Sequence[int]) -> Public:
        """The public metadata of appraising candidates of these sizes with this model."""
        s = self._fitted()
        return Public(appraiser=self.name, params=tuple(sorted(self.params().items())),
                      n_features=s.n_features, n_outputs=s.theta.shape[1],
                      sizes=tuple(int(n) for n in sizes), n_seed=s.n_seed,
                      n_test=len(s.y_test), lam=s.lam)

    def _fitted(self) -> SeedModel:
        if not hasattr(self, "seed_"):
            raise ExplorerError(f"the {self.name} appraiser is not fitted; call "
                                f"fit(seed_model) first.")
        return self.seed_

    def value(self, X, y) -> float:
        """The appraised value of one candidate dataset; higher is more valuable."""
        return self.appraise_many([(X, y)])[0]["value"]

    def appraise_many(self, candidates: Sequence[tuple], progress: Progress | None = None,
                      cancel: threading.Event | None = None) -> list[dict]:
        """Appraise [(X, y), ...]: per candidate its value, its seconds and the cost columns
        (plaintext_seconds includes this appraiser's share of the set-up).

        In plaintext the candidates are computed in batches; under MPC in one session.
        ``progress(phase, done, total)`` is called as candidates are done; setting ``cancel``
        stops the job with Cancelled.
        """
        seed = self._fitted()
        checked = [seed.check_candidate(X, y) for X, y in _pairs(candidates)]
        if not checked:
            return []
        if self.backend == "crypten":
            from explorer.mpc.session import appraise_privately

            return appraise_privately(self, checked, progress, cancel)
        return self._appraise_plaintext(checked, progress, cancel)

    def _appraise_plaintext(self, checked, progress, cancel) -> list[dict]:
        n = len(checked)
        width = max(len(y) for _, y in checked) * (self.seed_.n_features + 1)
        chunk = max(1, min(n, _CHUNK_VALUES // max(width * self._work_per_row(), 1)))
        rows: list[dict] = []
        for lo in range(0, n, chunk):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"the {self.name} appraisal was cancelled.")
            part = checked[lo:lo + chunk]
            start = time.perf_counter()
            public = self.public([len(y) for _, y in part])
            batch = candidate_batch(part, public.n_outputs)
            values = compute_defended(self, self.model_owner_inputs(public), batch.A, batch.Y,
                                      public, self.defences)
            seconds = (time.perf_counter() - start) / len(part)
            for v in values.tolist():
                if not math.isfinite(v):
                    raise ExplorerError(f"the {self.name} appraiser produced a non-finite "
                                        f"value; check its hyper-parameters.")
                rows.append({"value": float(v), "seconds": seconds,
                             "plaintext_seconds": seconds + self.setup_seconds_ / n,
                             "private_seconds": 0.0, "bytes": 0, "rounds": 0})
            report_progress(progress, ProgressEvent(APPRAISE, self.name, len(rows), n))
        return rows

    def _work_per_row(self) -> int:
        """Relative memory per candidate row (C and steps), to size plaintext chunks."""
        return int(self.seed_.theta.shape[1])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
