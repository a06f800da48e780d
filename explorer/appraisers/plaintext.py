"""Run an appraiser's definition on torch tensors: the plaintext runner.

It applies the same public reveal defences as a private session (explorer.appraisers.reveal),
so that a plaintext run shows what a private one would reveal.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

import numpy as np

from explorer.appraisers.base import Appraiser
from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.result import Appraisal
from explorer.appraisers.reveal import Defences, compute_defended
from explorer.errors import Cancelled, ExplorerError
from explorer.progress import APPRAISE, Progress, ProgressEvent, report_progress

# Batches are cut so that one chunk holds about this many float64 values per tensor.
_CHUNK_VALUES = 4_000_000


class PlaintextRunner:
    """Appraise candidates in the clear, in batches, with the public ``defences``."""

    backend = "plaintext"

    def __init__(self, defences: Defences | None = None):
        defences = Defences() if defences is None else defences
        if not isinstance(defences, Defences):
            raise ExplorerError("defences must be an explorer.appraisers.reveal.Defences.")
        self.defences = defences

    def check(self, appraiser: Appraiser) -> None:
        """Refuse an appraiser these settings cannot run (one sentence)."""
        if self.defences.weight_bound is not None and not appraiser.bounds_weights:
            raise ExplorerError(f"a weight bound (and the noise calibrated with it) is defined "
                                f"for the influence appraiser only, not {appraiser.name}.")

    def run(self, appraiser: Appraiser, candidates: Sequence[tuple],
            progress: Progress | None = None,
            cancel: threading.Event | None = None) -> Appraisal:
        """Appraise [(X, y), ...] with the fitted ``appraiser``. ``progress(phase, done,
        total)`` hears as candidates are done; setting ``cancel`` stops with Cancelled."""
        self.check(appraiser)
        checked = appraiser.check_candidates(candidates)
        n = len(checked)
        values, seconds = np.zeros(n), np.zeros(n)
        if n:
            width = max(len(y) for _, y in checked) * (appraiser.seed_.n_features + 1)
            chunk = max(1, min(n, _CHUNK_VALUES // max(width * appraiser.work_per_row(), 1)))
        for lo in range(0, n, chunk if n else 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"the {appraiser.name} appraisal was cancelled.")
            part = checked[lo:lo + chunk]
            start = time.perf_counter()
            public = appraiser.public([len(y) for _, y in part])
            batch = candidate_batch(part, public.n_outputs)
            got = compute_defended(appraiser, appraiser.model_owner_inputs(public), batch.A,
                                   batch.Y, public, self.defences)
            for v in got.tolist():
                if not math.isfinite(v):
                    raise ExplorerError(f"the {appraiser.name} appraiser produced a non-finite "
                                        f"value; check its hyper-parameters.")
            values[lo:lo + len(part)] = got.numpy()
            seconds[lo:lo + len(part)] = (time.perf_counter() - start) / len(part)
            report_progress(progress, ProgressEvent(APPRAISE, appraiser.name, lo + len(part), n))
        setup = appraiser.setup_seconds_
        zeros = np.zeros(n, dtype=np.int64)  # nothing is sent in plaintext
        return Appraisal(appraiser.name, self.backend, values,
                         {"seconds": seconds, "plaintext_seconds": seconds + setup / max(n, 1),
                          "private_seconds": np.zeros(n), "bytes": zeros, "rounds": zeros},
                         setup_seconds=setup)


def appraise(appraiser: Appraiser, candidates: Sequence[tuple],
             defences: Defences | None = None) -> Appraisal:
    """``PlaintextRunner(defences).run(appraiser, candidates)``: the shortest way to appraise
    in plaintext from Python."""
    return PlaintextRunner(defences).run(appraiser, candidates)
