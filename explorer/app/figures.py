"""The dashboard's figures and tables: one Output per figure (set from any thread as a plotly
mimebundle), the results table with its downloads, and the upload's and attack's results.
Every figure comes from explorer.plots and carries its own caption (what is plotted, which way
is better, utility as ground truth); a tab adds text only where it says what the figure's
caption cannot (how this run set its thresholds, why a view is empty in bit mode).
"""

from __future__ import annotations

import base64
import html
import os
import tempfile

import ipywidgets as w
import pandas as pd
from plotly.io._base_renderers import PlotlyRenderer

from explorer import plots
from explorer.app.task_loader import TABLE_CSS
from explorer.jobs import RunOutcome, UploadOutcome
from explorer.pricing import PRICE_THRESHOLD_SD

# "prices" holds value mode's price bars; "decisions" and "flat_prices" are bit mode's views
FIGURES = ("rank", "correlations", "acquisition", "budget", "timeline", "runtime", "prices",
           "decisions", "flat_prices", "table", "leakage", "models")
# figures of their own jobs (an attack, a comparison of seed models), not of a run
OWN_JOBS = ("leakage", "models")
# What a tab says beside its figure that the figure's own caption does not.
NOTES = {
    "prices": f"The threshold is calibrated on the model owner's own data: the predicted "
              f"reduction of a random subset of its own training set, of the candidates' size, "
              f"plus {PRICE_THRESHOLD_SD:g} sd; data like what it already holds is not paid "
              f"for.",
    "table": "One row per candidate and appraiser. " + html.escape(plots.UTILITY_TEXT) + ".",
    "leakage": "MPC hides each party's inputs, not what is revealed.",
    "models": "The task and market chosen on the left, appraised in plaintext under each seed "
              "model, each family at the task's default λ and the hidden width chosen; each "
              "model's utility is its own retraining.",
}
NO_PRICES = ("Prices are paid per nat of influence's predicted test-loss reduction: choose "
             "influence among the appraisers to see them.")
NO_LAST_LAYER_ACQUISITION = ("Acquisition refits the whole model after each purchase, which a "
                             "last-layer seed model (its hidden layers frozen) does not do, so "
                             "it is not run; choose the logistic or mlp seed model to see it.")
NO_BIT_ACQUISITION = ("Bit mode reveals only accepted or rejected: greedy acquisition buys the "
                      "candidate with the highest value, and a bit cannot say which is highest, "
                      "so it is not run. Reveal values to see it.")


# plotly's "plotly_mimetype" renderer itself, not looked up in plotly.io.renderers: building that
# registry imports nbformat, whose jsonschema builds a URI grammar for 3-6 s of a kernel's
# first render on two cores, for nothing the dashboard uses.
MIMETYPE_RENDERER = PlotlyRenderer()


def mimebundle_output(fig) -> dict:
    """A plotly figure as an Output widget's display_data (settable from any thread)."""
    bundle = MIMETYPE_RENDERER.to_mimebundle(fig.to_dict())
    return {"output_type": "display_data", "data": bundle, "metadata": {}}


def html_output(text: str) -> dict:
    return {"output_type": "display_data", "data": {"text/html": text, "text/plain": ""},
            "metadata": {}}


def download_link(label: str, filename: str, payload: str, mime: str) -> str:
    data = base64.b64encode(payload.encode("utf-8")).decode("ascii")
    return (f'<a download="{html.escape(filename)}" href="data:{mime};base64,{data}" '
            f'style="margin-right:1.5em">{html.escape(label)}</a>')


def diagnostic_notes(results: pd.DataFrame) -> str:
    """The appraisers' diagnostics (explorer.experiments) as warnings above the tabs."""
    noted = results[results.diagnostic.fillna("") != ""]
    lines = [f"{count} of {int((results.appraiser == name).sum())} {html.escape(name)} values: "
             f"{html.escape(note)}" for (name, note), count in
             noted.groupby(["appraiser", "diagnostic"], sort=False).size().items()]
    return "".join(f"<div style='color:#8a5a00;margin:2px 0'>⚠ {line}</div>" for line in lines)


def _note(text: str) -> str:
    """A tab's own text, set like the figures' captions."""
    return (f"<div style='font-size:12px;line-height:1.3;color:#444;max-width:880px'>{text}"
            f"</div>" if text else "")


def bit_thresholds_note(outcome: RunOutcome) -> str:
    """How the run's bit-mode thresholds were set, and their values (HTML)."""
    snapshot = outcome.snapshot
    values = ", ".join(f"{html.escape(name)} {value:.4g}"
                       for name, value in (snapshot.thresholds or {}).items())
    return (f"Each appraiser's threshold is the mean of its values on random subsets of the "
            f"model owner's own training set, of the candidates' size, plus "
            f"{snapshot.threshold_sd:g} sd, in that appraiser's own unit: {values}. Accepted "
            f"candidates are paid the flat price {snapshot.flat:g}, rejected ones nothing.")


class Figures:
    """The figure outputs of one run, labelled with the run they belong to."""

    def __init__(self):
        self.outputs = {name: w.Output() for name in FIGURES}
        self.notes_of = {name: w.HTML(_note(NOTES.get(name, ""))) for name in
                         ("acquisition", "prices", "table", "leakage", "models")}
        self.scatter_choice = w.Dropdown(options=["influence"], value="influence",
                                         description="scatter of",
                                         tooltip="Which appraiser's values the scatter shows.",
                                         layout=w.Layout(width="260px"))
        self.run_label = w.HTML()
        self.notes = w.HTML()
        self.downloads = w.HTML()
        self.figures_button = w.Button(description="Prepare figures (HTML)", icon="download",
                                       disabled=True, layout=w.Layout(width="auto"),
                                       tooltip="Write each figure as a standalone HTML file "
                                               "to download.")
        self.figures_button.on_click(lambda _: self.prepare_downloads())
        self.scatter_choice.observe(lambda _: self._draw_scatter(), "value")
        self.outcome: RunOutcome | None = None
        self._figures: dict = {}
        self._csv_link = ""
        # an empty figure from the start: plotly.js is loaded before the first results arrive
        self.outputs["rank"].outputs = (mimebundle_output(plots.placeholder(
            "Press Run: each candidate's appraisal against its utility")),)

    def tab(self, name: str) -> w.Widget:
        """The contents of the tab that shows figure ``name``."""
        if name == "rank":
            return w.VBox([self.scatter_choice, self.outputs["rank"],
                           self.outputs["correlations"]])
        if name == "table":
            return w.VBox([self.notes_of["table"], w.HBox([self.downloads,
                                                           self.figures_button]),
                           self.outputs["table"]])
        if name == "runtime":  # the whole run's wall time, then each appraiser's costs
            return w.VBox([self.outputs["timeline"], self.outputs["runtime"]])
        if name == "prices":
            return w.VBox([self.notes_of["prices"], self.outputs["prices"],
                           self.outputs["decisions"], self.outputs["flat_prices"]])
        if name in self.notes_of:
            return w.VBox([self.notes_of[name], self.outputs[name]])
        return self.outputs[name]

    def clear(self, label: str = "") -> None:
        """Forget the shown run: every figure, table, download and note."""
        self.outcome = None
        self._figures = {}
        for name, out in self.outputs.items():
            if name not in OWN_JOBS:
                out.outputs = ()
        self.downloads.value = self._csv_link = ""
        self.figures_button.disabled = True
        self.notes.value = ""
        for name in ("acquisition", "prices"):  # what they say depends on the run
            self.notes_of[name].value = ""
        self.run_label.value = label

    def start(self, outcome_label: str, names: tuple[str, ...]) -> None:
        """A run begins: clear the old one and name the new one."""
        self.clear(f"<b>Results of</b>: {html.escape(outcome_label)}")
        self.scatter_choice.options = names
        self.scatter_choice.value = names[0]

    def show(self, outcome: RunOutcome, final: bool = False) -> None:
        """Draw a run's results so far (every appraiser that has finished)."""
        self.outcome = outcome
        results = outcome.results
        self._draw_scatter()
        if not results.empty:
            self.set_figure("correlations", plots.correlation_table(results))
        self.notes.value = diagnostic_notes(results)
        if not final:
            return
        if outcome.timeline is not None:
            self.set_figure("timeline", plots.run_timeline(outcome.timeline))
        self.set_figure("runtime", plots.runtime_bars(results))
        thresholds = outcome.snapshot.thresholds
        if outcome.snapshot.bits:
            self.notes_of["prices"].value = _note(bit_thresholds_note(outcome))
            self.set_figure("decisions", plots.bit_decisions(results, thresholds))
            self.set_figure("flat_prices", plots.flat_price_bars(outcome.priced, thresholds))
            self.notes_of["acquisition"].value = _note(NO_BIT_ACQUISITION)
        elif outcome.priced is not None:  # its threshold column draws the threshold line
            self.notes_of["prices"].value = _note(NOTES["prices"])
            self.set_figure("prices", plots.price_bars(outcome.priced))
        else:
            self.notes_of["prices"].value = _note(NO_PRICES)
        if not outcome.snapshot.acquires:
            self.notes_of["acquisition"].value = _note(NO_LAST_LAYER_ACQUISITION)
        if outcome.acquisition is not None:
            self.set_figure("acquisition", plots.acquisition_curves(outcome.acquisition))
        shown = results.drop(columns=["truth_seconds", "setup_seconds"]).round(5)
        shown = shown.rename(columns={"utility": "utility (ground truth)"})
        self.outputs["table"].outputs = (html_output(
            TABLE_CSS + "<div class='ae-table' style='max-height:400px;overflow:auto'>"
            + shown.to_html(index=False, border=0) + "</div>"),)
        self._csv_link = download_link("Download results (CSV)", "results.csv",
                                       results.to_csv(index=False), "text/csv")
        if outcome.timeline is not None:
            self._csv_link += download_link("Download timeline (CSV)", "timeline.csv",
                                            outcome.timeline.to_csv(index=False), "text/csv")
        self.downloads.value = self._csv_link
        self.figures_button.disabled = False

    def _draw_scatter(self) -> None:
        results = self.outcome.results if self.outcome is not None else None
        choice = self.scatter_choice.value
        if results is None or results.empty or choice not in set(results.appraiser):
            return
        self.set_figure("rank", plots.rank_scatter(results, choice))

    def set_figure(self, name: str, fig) -> None:
        self._figures[name] = fig
        self.outputs[name].outputs = (mimebundle_output(fig),)

    def prepare_downloads(self) -> None:
        """The CSV and one standalone HTML file per figure (pressed again: the same links)."""
        links = []
        with tempfile.TemporaryDirectory() as tmp:
            for name, fig in self._figures.items():
                if name in OWN_JOBS:
                    continue
                path = plots.write_html(fig, os.path.join(tmp, f"{name}.html"))
                links.append(download_link(f"{name}.html", f"{name}.html",
                                           path.read_text(encoding="utf-8"), "text/html"))
        self.downloads.value = self._csv_link + "".join(links)


def _verdict(bit: float, threshold: float) -> str:
    """What one revealed bit says, against the appraiser's threshold (HTML)."""
    if bit == 1:
        return f"accepted: value &gt; {threshold:.4g}"
    if bit == 0:
        return f"rejected: value ≤ {threshold:.4g}"
    return f"not verified (threshold {threshold:.4g})"


def upload_html(outcome: UploadOutcome) -> str:
    """A user's file's appraisal, saying which task and backend produced it."""
    frame = outcome.frame
    first = frame.iloc[0]
    if outcome.thresholds is None:
        rows = "".join(f"<tr><td>{html.escape(r.appraiser)}</td><td>{r.value:.6g}</td></tr>"
                       for r in frame.itertuples())
    else:  # bit mode: the revealed bit, against the appraiser's own threshold
        rows = "".join(f"<tr><td>{html.escape(r.appraiser)}</td><td>"
                       f"{_verdict(r.value, outcome.thresholds[r.appraiser])}</td></tr>"
                       for r in frame.itertuples())
    return (f"<p><b>{html.escape(outcome.filename)}</b>: {outcome.samples} samples, appraised "
            f"for task <b>{html.escape(outcome.task_name)}</b> with the "
            f"<b>{html.escape(outcome.backend)}</b> backend.</p>"
            f"<table><tr><th>appraiser</th><th>value</th></tr>{rows}</table>"
            f"<p style='font-size:12px'>utility by retraining {first.utility:.6g} nats, accuracy "
            f"change {first.accuracy_change:+.4f} (<b>{plots.GROUND_TRUTH}</b>: here the "
            f"dashboard holds your file in the clear).</p>")
