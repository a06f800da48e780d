"""The appraisers, each defined once for both backends (see explorer.appraisers.base), and the
plaintext runner. ``APPRAISERS`` is the registry of definitions by command-line name; the
private runner is explorer.mpc.runner.PrivateRunner, and explorer.config.AppraiserConfig builds
both from one configuration.
"""

from __future__ import annotations

from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.finetune import FineTune
from explorer.appraisers.gradient_norm import GradientNorm
from explorer.appraisers.influence import Influence, influence_vector
from explorer.appraisers.newton import Newton
from explorer.appraisers.plaintext import PlaintextRunner, appraise
from explorer.appraisers.result import Appraisal
from explorer.appraisers.surrogate import Surrogate
from explorer.constraints import ALL_APPRAISER_NAMES

APPRAISERS: dict[str, type[Appraiser]] = {
    Influence.name: Influence,
    GradientNorm.name: GradientNorm,
    FineTune.name: FineTune,
    Newton.name: Newton,
    Surrogate.name: Surrogate,
}
assert tuple(APPRAISERS) == ALL_APPRAISER_NAMES

__all__ = ["APPRAISERS", "Appraisal", "Appraiser", "FineTune", "GradientNorm", "Influence",
           "Newton", "PlaintextRunner", "Public", "Surrogate", "appraise",
           "influence_vector"]
