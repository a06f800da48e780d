"""The three appraisers. ``make_appraiser(name, **params)`` builds one by its command-line name."""

from __future__ import annotations

from explorer.appraisers.base import Appraiser
from explorer.appraisers.finetune import FineTune
from explorer.appraisers.gradient_norm import GradientNorm
from explorer.appraisers.influence import Influence, influence_vector
from explorer.appraisers.private import PRIVATE_APPRAISERS
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


BACKENDS = ("plaintext", "crypten")


def make_appraiser(name: str, backend: str = "plaintext", **params) -> Appraiser:
    """An unfitted appraiser by name and backend; ``params`` go to its constructor (for
    ``crypten`` also mode, precision_bits, provider, reveal, threshold, timeout)."""
    (name,) = parse_appraiser_names([name])
    if backend == "plaintext":
        return APPRAISERS[name](**params)
    if backend == "crypten":
        return PRIVATE_APPRAISERS[name](**params)
    raise ExplorerError(f"unknown backend {backend!r}; choose plaintext or crypten.")


__all__ = ["APPRAISERS", "BACKENDS", "Appraiser", "FineTune", "GradientNorm", "Influence",
           "influence_vector", "make_appraiser", "parse_appraiser_names"]
