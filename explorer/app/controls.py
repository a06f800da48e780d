"""The dashboard's controls: every widget a user sets, its tooltip, what it means for the
appraisal (an ``AppraiserConfig``), which controls matter under which backend, and the presets
that set everything for one lesson. No science here: the numbers come from explorer.*.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as w

from explorer.config import AppraiserConfig, reveals_bits
from explorer.constraints import (
    ALL_APPRAISER_NAMES,
    DEFAULTS,
    MODELS,
    PROVIDERS,
    default_provider,
)
from explorer.errors import ExplorerError
from explorer.leakage.attack import ATTACKERS
from explorer.leakage.defences import DEFENCES
from explorer.market import CORRUPTIONS
from explorer.pricing import PRICE_THRESHOLD_SD
from explorer.seed import SeedChoice
from explorer.tasks import TASKS

BACKENDS = (("plaintext", "plaintext"), ("simulated", "simulated"),
            ("real parties", "parties"))
BACKEND_TIPS = ["No MPC: the model owner sees the candidates (for reference).",
                "CrypTen, one process playing both parties (TFP triples).",
                "CrypTen, one process per party (and a dealer for TTP)."]
# what only a private backend uses: greyed out under plaintext
MPC_CONTROLS = ("precision_bits", "provider", "reveal", "threshold_sd")
STYLE = {"description_width": "110px"}
CONTROL_WIDTH = "310px"  # inside a 350 px sidebar, with the accordion's padding

TOOLTIPS = {
    "task": "The model owner's task: its seed training set, its test set and the pool the "
            "candidates are drawn from.",
    "model": "The seed model: logistic (the paper's L2 logistic regression), mlp (an L2 network) "
             "or last-layer (that network's hidden layers frozen, its head a logistic model).",
    "hidden": "mlp and last-layer: the width of the network's hidden layer (also the networks' "
              "in the Seed models tab's comparison).",
    "lam": "L2 strength of the seed model (the task's default for the chosen family).",
    "lam_cv": "Choose λ by 5-fold cross-validation on the seed training set instead (logistic "
              "model only).",
    "corruption": "How the candidates are spoiled: their level sets how much (0 = clean).",
    "candidates": "How many candidate datasets the data owners offer.",
    "size": "Samples in each candidate dataset.",
    "levels": "Corruption levels, spread evenly over this range across the candidates.",
    "random_state": "Random state of the market (which samples, which corruptions).",
    "appraisers": "Which appraisers value the candidates (ctrl/cmd-click for several); "
                  "surrogate runs in plaintext only, at the data owner.",
    "lr": "Learning rate of the fine-tuning appraiser.",
    "steps": "Gradient steps of the fine-tuning appraiser.",
    "newton_steps": "Safeguarded Newton steps of the newton appraiser.",
    "backend": "Plaintext: no privacy, for reference. CrypTen simulated: one process plays "
               "both parties. CrypTen real parties: one process per party (and a dealer).",
    "precision_bits": "Fixed-point fractional bits of the encrypted computation.",
    "provider": "Who deals the multiplication triples (and what that assumes).",
    "reveal": "What the session reveals to both parties: each value, or only the bit "
              "value > threshold.",
    "threshold_sd": "Bit mode: each appraiser's threshold is the mean of its values on random "
                    "subsets of the model owner's own training set, plus this many standard "
                    "deviations (one number on every appraiser's own scale).",
    "rate": "Price per nat of test-loss reduction (Prices tab, values revealed).",
    "flat": "Bit mode: the price of a candidate whose bit says accepted (Prices tab); a "
            "rejected one is paid nothing.",
    "attacker": "Who attacks: the data owner (recovers the model) or the model owner "
                "(recovers the candidate's gradient).",
    "defences": "Defences to compare (ctrl/cmd-click for several).",
}


def _tip(widget: w.Widget, name: str) -> w.Widget:
    """Attach ``name``'s tooltip to the widget (ipywidgets 8's ``tooltip``: shown on the
    description and the control)."""
    widget.tooltip = TOOLTIPS[name]
    return widget


def build_controls(task_labels: tuple[tuple[str, str], ...]) -> dict[str, w.Widget]:
    """Every control, by name, with its tooltip and default."""
    c: dict[str, w.Widget] = {
        "task": w.Dropdown(options=task_labels, value="wdbc", description="task"),
        "model": w.Dropdown(options=list(MODELS), value=DEFAULTS["model"],
                            description="seed model"),
        "hidden": w.BoundedIntText(value=DEFAULTS["hidden"][0], min=1, max=4096,
                                   description="hidden width"),
        "lam": w.BoundedFloatText(value=TASKS["wdbc"].lam, min=1e-6, max=1e3, step=0.01,
                                  description="L2 strength λ"),
        "lam_cv": w.Checkbox(value=False, description="λ by cross-validation", indent=False),
        "corruption": w.Dropdown(options=list(CORRUPTIONS), value="label-noise",
                                 description="corruption"),
        "candidates": w.IntSlider(value=20, min=2, max=100, description="candidates"),
        "size": w.IntSlider(value=30, min=5, max=500, description="samples each"),
        "levels": w.FloatRangeSlider(value=(0.0, 0.5), min=0.0, max=1.0, step=0.01,
                                     description="level range"),
        "random_state": w.IntText(value=0, description="random state"),
        "appraisers": w.SelectMultiple(options=ALL_APPRAISER_NAMES,
                                       value=("influence", "gradient-norm"),
                                       description="appraisers", rows=5),
        "lr": w.BoundedFloatText(value=DEFAULTS["lr"], min=1e-6, max=100.0,
                                 description="fine-tune lr"),
        "steps": w.BoundedIntText(value=DEFAULTS["steps"], min=1, max=1000,
                                  description="fine-tune steps"),
        "newton_steps": w.BoundedIntText(value=DEFAULTS["newton_steps"], min=1, max=64,
                                         description="newton steps"),
        "backend": w.ToggleButtons(options=BACKENDS, value="plaintext", description="backend",
                                   tooltips=BACKEND_TIPS,
                                   style={"description_width": "50px", "button_width": "86px"}),
        "precision_bits": w.IntSlider(value=DEFAULTS["precision_bits"], min=12, max=28,
                                      description="precision bits"),
        "provider": w.Dropdown(options=list(PROVIDERS), value=DEFAULTS["provider"],
                               description="provider"),
        "reveal": w.ToggleButtons(options=["value", "bit"], value="value", description="reveal",
                                  style={"description_width": "50px", "button_width": "80px"}),
        "threshold_sd": w.BoundedFloatText(value=PRICE_THRESHOLD_SD, min=0.0, max=10.0, step=0.5,
                                           description="threshold: sd"),
        "rate": w.FloatText(value=1000.0, description="price per nat"),
        "flat": w.BoundedFloatText(value=50.0, min=0.0, max=1e6, description="flat price (bit)"),
    }
    for name, widget in c.items():
        _tip(widget, name)
        if name not in ("backend", "reveal"):
            widget.style = STYLE
            widget.layout = w.Layout(width=CONTROL_WIDTH)
    return c


def build_attack_controls() -> dict[str, w.Widget]:
    """The leakage tab's choices: who attacks, and which defences to compare."""
    return {"attacker": _tip(w.ToggleButtons(options=list(ATTACKERS), value="data-owner",
                                             description="attacker", style=STYLE), "attacker"),
            "defences": _tip(w.SelectMultiple(options=list(DEFENCES),
                                              value=("none", "rounding", "noise"),
                                              description="defences", rows=5, style=STYLE),
                             "defences")}


def provider_used(controls: dict[str, w.Widget]) -> str | None:
    """The triple provider a run with these controls actually uses (None in plaintext)."""
    backend = controls["backend"].value
    if backend == "plaintext":
        return None
    return default_provider(backend) if backend == "simulated" else controls["provider"].value


def provider_text(controls: dict[str, w.Widget]) -> str:
    """One sentence (HTML) on the provider actually used and what it assumes."""
    used = provider_used(controls)
    if used is None:
        return ("<i>Plaintext: no MPC, so no provider; the model owner would have to see the "
                "data (the Catch-22).</i>")
    why = (" (simulated mode runs one process, so there is no dealer)"
           if controls["backend"].value == "simulated" else "")
    return f"<b>{used}</b>{why}: {html.escape(PROVIDERS[used])}"


def bit_mode(controls: dict[str, w.Widget]) -> bool:
    """Whether a run with these controls reveals only bits (a private backend, reveal = bit)."""
    backend = controls["backend"].value
    return reveals_bits("plaintext" if backend == "plaintext" else "crypten",
                        controls["reveal"].value)


def threshold_text(controls: dict[str, w.Widget]) -> str:
    """One paragraph (HTML) on how bit mode's thresholds are set; '' outside bit mode."""
    if not bit_mode(controls):
        return ""
    return ("<b>A threshold per appraiser</b>, each on its own scale: the mean of its values "
            "on random subsets of the model owner's own training set (the candidates' size), "
            f"plus {controls['threshold_sd'].value:g} sd. Data like its own is not worth "
            "buying. The thresholds used are shown in the Prices tab.")


def sync_backend(controls: dict[str, w.Widget]) -> None:
    """Grey out what the backend does not use: the MPC controls under plaintext; the provider
    in simulated mode, where it can only be TFP; the threshold and the flat price unless only
    bits are revealed, the price per nat when they are."""
    backend = controls["backend"].value
    plaintext = backend == "plaintext"
    for name in MPC_CONTROLS:
        controls[name].disabled = plaintext
    if backend == "simulated":
        controls["provider"].value = default_provider(backend)
        controls["provider"].disabled = True
    bits = bit_mode(controls)
    controls["threshold_sd"].disabled = controls["flat"].disabled = not bits
    controls["rate"].disabled = bits


def seed_choice(controls: dict[str, w.Widget]) -> SeedChoice:
    """The seed model the controls describe (validated by SeedChoice): the family, a network's
    hidden width, and λ (cross-validated for the logistic model when asked)."""
    model = controls["model"].value
    cv = controls["lam_cv"].value and model == "logistic"
    return SeedChoice(model, (controls["hidden"].value,),
                      lam="cv" if cv else controls["lam"].value)


def sync_model(controls: dict[str, w.Widget]) -> None:
    """Grey out what the seed model does not use: cross-validated λ for a network, λ itself
    while it is cross-validated. (The hidden width stays: the comparison of seed models uses
    it whatever the chosen family.)"""
    network = controls["model"].value != "logistic"
    if network:
        controls["lam_cv"].value = False
    controls["lam_cv"].disabled = network
    controls["lam"].disabled = controls["lam_cv"].value


def appraiser_config(controls: dict[str, w.Widget]) -> AppraiserConfig:
    """The appraisal the controls describe (validated by AppraiserConfig)."""
    backend = controls["backend"].value
    if not controls["appraisers"].value:
        raise ExplorerError("choose at least one appraiser.")
    private: dict[str, Any] = {}
    if backend != "plaintext":
        # bit mode's thresholds are per appraiser, set when a run starts (RunSnapshot.take)
        private = {"mode": backend, "precision_bits": controls["precision_bits"].value,
                   "provider": provider_used(controls), "reveal": controls["reveal"].value}
    return AppraiserConfig.from_options(
        names=tuple(controls["appraisers"].value),
        backend="plaintext" if backend == "plaintext" else "crypten", lr=controls["lr"].value,
        steps=controls["steps"].value, newton_steps=controls["newton_steps"].value, **private)


@dataclass(frozen=True)
class Preset:
    """Everything one lesson needs: control values (set in this order), the tab to show, the
    appraiser the scatter shows, and what to look for."""

    settings: dict[str, Any]
    tab: str
    lesson: str
    scatter: str | None = None
    attack: dict[str, Any] = field(default_factory=dict)


_BASE = {"task": "wdbc", "model": "logistic", "lam": TASKS["wdbc"].lam, "lam_cv": False,
         "candidates": 20, "size": 30, "random_state": 0, "backend": "plaintext"}

PRESETS: dict[str, Preset] = {
    "label noise": Preset(
        {**_BASE, "corruption": "label-noise", "levels": (0.0, 0.5),
         "appraisers": ("influence", "gradient-norm")}, "rank",
        "Candidates with more flipped labels should be worth less: influence ranks them as "
        "retraining does.", scatter="influence"),
    "why the gradient norm fails": Preset(
        {**_BASE, "corruption": "label-noise", "levels": (0.0, 0.5),
         "appraisers": ("gradient-norm", "influence")}, "rank",
        "Wrong labels make large gradients: the gradient norm rewards exactly the noisiest "
        "candidates, so its ranks run against utility (ρ < 0).", scatter="gradient-norm"),
    "the duplicates trap": Preset(
        {**_BASE, "corruption": "duplicates", "levels": (0.0, 1.0),
         "appraisers": ("influence", "gradient-norm")}, "rank",
        "Copies of the model owner's own training rows teach it nothing: a good appraiser "
        "prices them near zero.", scatter="influence"),
    "far from the training mix": Preset(
        {**_BASE, "corruption": "imbalance", "levels": (0.0, 1.0),
         "appraisers": ("influence", "gradient-norm")}, "rank",
        "The level is one class's share: candidates far from the training mix of classes "
        "help less, on both sides.", scatter="influence"),
    "the blog's surrogate": Preset(
        {**_BASE, "corruption": "label-noise", "levels": (0.0, 0.5),
         "appraisers": ("surrogate", "influence")}, "rank",
        "The model owner hands the data owner a small tree distilled from its model, and the "
        "data owner prices its data against it alone: the tree's ranks stay close to "
        "influence's, but the tree gives away much of the model (reproduce marketplace "
        "measures how much).", scatter="surrogate"),
    "does influence hold for a neural network?": Preset(
        {**_BASE, "hidden": 16, "candidates": 12, "corruption": "label-noise",
         "levels": (0.0, 0.5), "appraisers": ("influence", "gradient-norm")}, "models",
        "The same market under the logistic model, a small network (mlp) and that network with "
        "its hidden layers frozen (last-layer), each against retraining that very model: does "
        "influence still rank as retraining does when the loss is not convex?"),
    "what a value leaks": Preset(
        {**_BASE, "corruption": "label-noise", "levels": (0.0, 0.5),
         "appraisers": ("influence",)}, "leakage",
        "MPC hides the inputs, not the outputs: crafted candidates recover the model from the "
        "revealed values; bits, policies, rounding and noise slow that down.",
        attack={"attacker": "data-owner", "defences": ("none", "bit-only", "rounding",
                                                       "noise")}),
}


def apply_preset(controls: dict[str, w.Widget], attack: dict[str, w.Widget],
                 preset: Preset) -> None:
    """Set the controls (and the attack's) to the preset's values."""
    for name, value in preset.settings.items():
        controls[name].value = value
    for name, value in preset.attack.items():
        attack[name].value = value
