"""The appraisers, each defined once for both backends (see explorer.appraisers.base), and the
plaintext runner. ``APPRAISERS`` is the registry of the logistic family's definitions by
command-line name, ``FAMILIES`` the same for every seed-model family, and ``definition`` builds
one; the private runner is explorer.mpc.runner.PrivateRunner, and
explorer.config.AppraiserConfig builds both from one configuration.
"""

from __future__ import annotations

from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.finetune import FineTune
from explorer.appraisers.gradient_norm import GradientNorm
from explorer.appraisers.influence import Influence, influence_vector
from explorer.appraisers.last_layer import LastLayer
from explorer.appraisers.network import NetworkGradientNorm, NetworkInfluence
from explorer.appraisers.network_finetune import NetworkFineTune
from explorer.appraisers.network_newton import NetworkNewton
from explorer.appraisers.newton import Newton
from explorer.appraisers.plaintext import PlaintextRunner, appraise
from explorer.appraisers.result import Appraisal
from explorer.appraisers.surrogate import Surrogate
from explorer.constraints import ALL_APPRAISER_NAMES, APPRAISER_NAMES, MODELS
from explorer.errors import ExplorerError

APPRAISERS: dict[str, type[Appraiser]] = {
    Influence.name: Influence,
    GradientNorm.name: GradientNorm,
    FineTune.name: FineTune,
    Newton.name: Newton,
    Surrogate.name: Surrogate,
}
assert tuple(APPRAISERS) == ALL_APPRAISER_NAMES

# Each family's definitions by name; the last-layer family wraps the logistic ones.
FAMILIES: dict[str, dict[str, type[Appraiser]]] = {
    "logistic": APPRAISERS,
    "mlp": {NetworkInfluence.name: NetworkInfluence, NetworkGradientNorm.name: NetworkGradientNorm,
            NetworkFineTune.name: NetworkFineTune, NetworkNewton.name: NetworkNewton},
    "last-layer": {name: APPRAISERS[name] for name in APPRAISER_NAMES},
}
assert tuple(FAMILIES) == MODELS


def appraiser_class(family: str, name: str) -> type[Appraiser]:
    """The class of appraiser ``name`` for seed models of ``family``; one sentence when that
    family has none."""
    if family not in FAMILIES:
        raise ExplorerError(f"unknown seed model {family!r}; choose one of {', '.join(MODELS)}.")
    if name not in FAMILIES[family]:
        raise ExplorerError(f"the {name} appraiser is not defined for the {family} seed model; "
                            f"choose among {', '.join(FAMILIES[family])}.")
    return FAMILIES[family][name]


def definition(family: str, name: str, **params) -> Appraiser:
    """The (unfitted) definition of appraiser ``name`` for ``family`` with its
    hyper-parameters."""
    appraiser = appraiser_class(family, name)(**params)
    return LastLayer(appraiser) if family == "last-layer" else appraiser

__all__ = ["APPRAISERS", "FAMILIES", "Appraisal", "Appraiser", "FineTune", "GradientNorm",
           "Influence", "LastLayer", "NetworkFineTune", "NetworkGradientNorm", "NetworkInfluence",
           "NetworkNewton", "Newton", "PlaintextRunner", "Public", "Surrogate", "appraise",
           "appraiser_class", "definition", "influence_vector"]
