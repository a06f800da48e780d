"""The appraisers, each defined once for both backends (see explorer.appraisers.base).

``AppraiserConfig(...).build(name)`` builds one by its command-line name; ``make_appraiser`` is
the same for a single appraiser.
"""

from __future__ import annotations

from explorer.appraisers.base import Appraiser, Progress, Public
from explorer.appraisers.config import (
    APPRAISER_NAMES,
    BACKENDS,
    AppraiserConfig,
    MPCOptions,
    parse_appraiser_names,
)
from explorer.appraisers.finetune import FineTune
from explorer.appraisers.gradient_norm import GradientNorm
from explorer.appraisers.influence import Influence, influence_vector
from explorer.appraisers.newton import Newton
from explorer.errors import ExplorerError

APPRAISERS: dict[str, type[Appraiser]] = {
    Influence.name: Influence,
    GradientNorm.name: GradientNorm,
    FineTune.name: FineTune,
    Newton.name: Newton,
}
assert tuple(APPRAISERS) == APPRAISER_NAMES


def make_appraiser(name: str, backend: str = "plaintext", **options) -> Appraiser:
    """One unfitted appraiser by name and backend; ``options`` are AppraiserConfig fields
    (lr, steps, batch_size, newton_steps, mode, precision_bits, provider, reveal, ...)."""
    if "names" in options:
        raise ExplorerError("make_appraiser builds the one appraiser it names; drop names= "
                            "(AppraiserConfig builds several).")
    return AppraiserConfig(names=(name,), backend=backend, **options).build(name)


__all__ = ["APPRAISERS", "APPRAISER_NAMES", "BACKENDS", "Appraiser", "AppraiserConfig",
           "FineTune", "GradientNorm", "Influence", "MPCOptions", "Newton", "Progress", "Public",
           "influence_vector", "make_appraiser", "parse_appraiser_names"]
