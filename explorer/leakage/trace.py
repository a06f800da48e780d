"""An attacker's estimates as values or bits are revealed, and how they are scored."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Trace:
    """The attacker's estimates as values or bits are revealed: ``points`` holds (revealed so
    far, {target: estimate})."""

    points: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list)

    def add(self, queries: int, estimates: dict[str, np.ndarray]) -> None:
        self.points.append((int(queries), {k: np.array(v, dtype=np.float64)
                                           for k, v in estimates.items()}))


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """||estimate - truth|| / ||truth|| (L2 over all entries)."""
    truth = np.asarray(truth, dtype=np.float64).ravel()
    estimate = np.asarray(estimate, dtype=np.float64).ravel()
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def centre_classes(theta: np.ndarray) -> np.ndarray:
    """Softmax parameters (d+1, C) are defined up to a common shift over classes: remove it
    (binary parameters, C = 1, are returned as they are)."""
    theta = np.asarray(theta, dtype=np.float64)
    return theta - theta.mean(axis=1, keepdims=True) if theta.shape[1] > 1 else theta
