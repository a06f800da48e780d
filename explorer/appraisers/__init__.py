"""The three appraisers. ``make_appraiser(name, **params)`` builds one by its command-line name."""

from __future__ import annotations

from explorer.appraisers.base import Appraiser
from explorer.appraisers.finetune import FineTune
from explorer.appraisers.gradient_norm import GradientNorm
from explorer.appraisers.influence import Influence, influence_vector
from explorer.errors import ExplorerError

APPRAISERS: dict[str, type[Appraiser]] = {
    Influence.name: Influence,
    GradientNorm.name: GradientNorm,
    FineTune.name: FineTune,
}


def parse_appraiser_names(spec: str | list[str]) -> list[str]:
    """'influence,finetune' -> ['influence', 'finetune'], validated and without repeats."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    if not names:
        raise ExplorerError(f"name at least one appraiser: {', '.join(APPRAISERS)}.")
    for n in names:
        if n not in APPRAISERS:
            raise ExplorerError(f"unknown appraiser {n!r}; choose from {', '.join(APPRAISERS)}.")
    return list(dict.fromkeys(names))


def make_appraiser(name: str, **params) -> Appraiser:
    """An unfitted appraiser by name; ``params`` go to its constructor."""
    (name,) = parse_appraiser_names([name])
    return APPRAISERS[name](**params)


__all__ = ["APPRAISERS", "Appraiser", "FineTune", "GradientNorm", "Influence",
           "influence_vector", "make_appraiser", "parse_appraiser_names"]
