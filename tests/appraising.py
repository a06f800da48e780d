"""Shorthands the tests share for building and running one appraiser."""

from __future__ import annotations

from explorer.appraisers import Appraiser, appraise
from explorer.config import AppraiserConfig


def configured(name: str, backend: str = "plaintext", **options):
    """Appraiser ``name``'s (unfitted) definition and the runner of its configuration;
    ``options`` are AppraiserConfig.from_options' flat settings (lr, steps, mode, reveal, ...)."""
    config = AppraiserConfig.from_options(names=(name,), backend=backend, **options)
    return config.build(name), config.runner()


def value(appraiser: Appraiser, X, y) -> float:
    """The plaintext value of one candidate."""
    return float(appraise(appraiser, [(X, y)]).values[0])
