"""The dashboard's figures and tables: one Output per figure (set from any thread as a plotly
mimebundle), captions saying what is plotted and that utility is ground truth only a
simulation knows, the results table with its downloads, and the upload's and attack's results.
Every figure comes from explorer.plots.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile

import ipywidgets as w
import pandas as pd
import plotly.io as pio

from explorer import plots
from explorer.app.party_view import GROUND_TRUTH_NOTE
from explorer.app.runner import RunOutcome, UploadOutcome
from explorer.app.task_loader import TABLE_CSS

FIGURES = ("rank", "acquisition", "runtime", "prices", "table", "leakage")
UTILITY = (f"<i>utility</i> is the test-loss reduction from retraining on a candidate "
           f"(nats): <b>{GROUND_TRUTH_NOTE}</b>; no party could compute it in a real market.")
CAPTIONS = {
    "rank": "Each point is a candidate: the appraiser's value against the candidate's "
            "utility. Higher is more valuable; an appraiser that ranks as retraining does puts "
            "the points on a rising line (Spearman ρ near 1). " + UTILITY,
    "acquisition": "The model owner acquires one candidate a round, the highest influence or a "
                   "random one, and retrains; the test loss is " + GROUND_TRUTH_NOTE + ".",
    "runtime": "Seconds per appraiser: plaintext work on the model owner's side and encrypted "
               "computation.",
    "prices": "Influence values priced per nat; candidates below the calibrated threshold are "
              "rejected.",
    "table": "One row per candidate and appraiser. " + UTILITY,
    "leakage": "MPC hides each party's inputs, not what is revealed: each line is an attack's "
               "reconstruction error against the values revealed (lower = more leaked).",
}
GRADIENT_NORM_NOTE = ("Gradient norm: wrong labels make large gradients, so it rewards exactly "
                      "the noisiest candidates and its ρ against utility is negative.")


def mimebundle_output(fig) -> dict:
    """A plotly figure as an Output widget's display_data (settable from any thread)."""
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
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


def _caption(name: str) -> w.HTML:
    return w.HTML(f"<div style='font-size:12px;line-height:1.3;color:#444;max-width:880px'>"
                  f"{CAPTIONS[name]}</div>")


class Figures:
    """The figure outputs of one run, labelled with the run they belong to."""

    def __init__(self):
        self.outputs = {name: w.Output() for name in FIGURES}
        self.captions = {name: _caption(name) for name in FIGURES}
        self.scatter_choice = w.Dropdown(options=["influence"], value="influence",
                                         description="scatter of",
                                         tooltip="Which appraiser's values the scatter shows.",
                                         layout=w.Layout(width="260px"))
        self.scatter_note = w.HTML()
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
            return w.VBox([w.HBox([self.scatter_choice, self.scatter_note],
                                  layout=w.Layout(align_items="center")),
                           self.captions["rank"], self.outputs["rank"]])
        if name == "table":
            return w.VBox([self.captions["table"], w.HBox([self.downloads,
                                                           self.figures_button]),
                           self.outputs["table"]])
        return w.VBox([self.captions[name], self.outputs[name]])

    def clear(self, label: str = "") -> None:
        """Forget the shown run: every figure, table, download and note."""
        self.outcome = None
        self._figures = {}
        for name, out in self.outputs.items():
            if name != "leakage":
                out.outputs = ()
        self.downloads.value = self._csv_link = ""
        self.figures_button.disabled = True
        self.notes.value = self.scatter_note.value = ""
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
        self.notes.value = diagnostic_notes(results)
        if not final:
            return
        self.set_figure("runtime", plots.runtime_bars(results))
        if outcome.priced is not None:
            self.set_figure("prices", plots.price_bars(outcome.priced))
        if outcome.acquisition is not None:
            self.set_figure("acquisition", plots.acquisition_curves(outcome.acquisition))
        shown = results.drop(columns=["truth_seconds", "setup_seconds"]).round(5)
        shown = shown.rename(columns={"utility": "utility (ground truth)"})
        self.outputs["table"].outputs = (html_output(
            TABLE_CSS + "<div class='ae-table' style='max-height:400px;overflow:auto'>"
            + shown.to_html(index=False, border=0) + "</div>"),)
        self._csv_link = download_link("Download results (CSV)", "results.csv",
                                       results.to_csv(index=False), "text/csv")
        self.downloads.value = self._csv_link
        self.figures_button.disabled = False

    def _draw_scatter(self) -> None:
        results = self.outcome.results if self.outcome is not None else None
        choice = self.scatter_choice.value
        if results is None or results.empty or choice not in set(results.appraiser):
            return
        self.scatter_note.value = (f"<span style='font-size:12px;color:#8a5a00'>"
                                   f"{GRADIENT_NORM_NOTE}</span>"
                                   if choice == "gradient-norm" else "")
        self.set_figure("rank", plots.rank_scatter(results, choice))

    def set_figure(self, name: str, fig) -> None:
        self._figures[name] = fig
        self.outputs[name].outputs = (mimebundle_output(fig),)

    def prepare_downloads(self) -> None:
        """The CSV and one standalone HTML file per figure (pressed again: the same links)."""
        links = []
        with tempfile.TemporaryDirectory() as tmp:
            for name, fig in self._figures.items():
                if name == "leakage":
                    continue
                path = plots.write_html(fig, os.path.join(tmp, f"{name}.html"))
                links.append(download_link(f"{name}.html", f"{name}.html",
                                           path.read_text(encoding="utf-8"), "text/html"))
        self.downloads.value = self._csv_link + "".join(links)


def upload_html(outcome: UploadOutcome) -> str:
    """A user's file's appraisal, saying which task and backend produced it."""
    frame = outcome.frame
    first = frame.iloc[0]
    rows = "".join(f"<tr><td>{html.escape(r.appraiser)}</td><td>{r.value:.6g}</td></tr>"
                   for r in frame.itertuples())
    return (f"<p><b>{html.escape(outcome.filename)}</b>: {outcome.samples} samples, appraised "
            f"for task <b>{html.escape(outcome.task_name)}</b> with the "
            f"<b>{html.escape(outcome.backend)}</b> backend.</p>"
            f"<table><tr><th>appraiser</th><th>value</th></tr>{rows}</table>"
            f"<p style='font-size:12px'>utility by retraining {first.utility:.6g} nats, accuracy "
            f"change {first.accuracy_change:+.4f} (<b>{GROUND_TRUTH_NOTE}</b>: here the "
            f"dashboard holds your file in the clear).</p>")
