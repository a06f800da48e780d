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


def session_of(seed, name: str, pairs, return_shares: bool = False, **options):
    """The private session of appraiser ``name`` fitted to ``seed`` for candidates ``pairs``,
    with backend crypten and these flat options: (spec, model owner's input, candidate batch)."""
    from explorer.mpc.session import session_inputs

    appraiser, runner = configured(name, "crypten", **options)
    return session_inputs(appraiser.fit(seed), pairs, runner.options, runner.defences,
                          return_shares=return_shares)


def plaintext_values(seed, name: str, pairs, **options):
    """The plaintext values (n,) of appraiser ``name`` fitted to ``seed``, appraised together."""
    return appraise(configured(name, **options)[0].fit(seed), pairs).values
