"""Plotly figures drawn from the experiments' tidy DataFrames.

This is the figure layer: data flows task -> market -> appraisers -> experiments -> figures ->
widgets, so this module only reads DataFrames and never imports anything that computes
appraisals. Higher appraisal value = more valuable, everywhere; ranks are 1 for the lowest value.

Every figure carries a caption saying what is plotted and which way is better. It is drawn in
the figure, under the plot area (so it survives an HTML export), and kept as
``fig.layout.meta["caption"]``; ``caption(fig)`` returns it for a widget to show beside the
figure. Utility (the test-loss reduction from retraining with a candidate, which needs both
parties' data) is labelled everywhere as ground truth that only a simulation can know.

The frames each figure reads (a missing column raises ExplorerError naming it):

- ``rank_scatter``: candidate, level, utility, accuracy_change, appraiser, value, optional run
  (repeats pooled). Ranks (ties averaged) and Spearman's rho are over the kept rows: those of
  the appraiser, with level in the closed interval ``level_range`` when given.
- ``correlation_table``: appraiser, value and the ground-truth column (default utility).
- ``model_correlation_bars``: model, appraiser, value, utility, optional description (the
  family and widths) and candidate: one group of bars per appraiser, one bar per seed model
  (explorer.experiments.compare_seed_models).
- ``acquisition_curves``: run, strategy, round, relative_reduction (fraction of the seed
  model's test loss; positive = better). Band: sample sd over runs (zero width with one run).
- ``budget_curves``: strategy, method, run, round, candidate, price, spent, test_loss and
  budget (one value) of ``explorer.acquisition.budgeted_acquisition``. Runs of a strategy
  (random's orders) give the mean and its ±1 sample-sd band of the test loss as a step
  function of the money spent.
- ``runtime_bars``: appraiser, backend, plaintext_seconds, private_seconds, optional bytes
  (sent on the wire by all parties and the dealer) and rounds (on the critical path). Rows
  with the same appraiser and backend are summed (per-candidate shares of one session add up
  to the session's cost).
- ``run_timeline``: phase, appraiser ('' outside an appraiser's phase), part, seconds, and
  an "other" row (explorer.timeline: the run's wall seconds no phase measured); the rows' sum
  is the run's wall time.
- ``finetune_grid_heatmaps``: batch_size (a number, or 'full', None or NaN for full batch),
  epochs, spearman, seconds. Repeated cells are averaged.
- ``gradient_norm_panels``: panel, level, utility, value (the gradient-norm appraisal).
- ``budget_heatmap``: lr, budget (multiples of influence's per-candidate work), spearman,
  optional steps and influence_spearman (one value each, repeated). Repeated cells averaged.
- ``price_bars``: candidate, kind, level, price, optional value, utility, accepted (bool; bars
  of candidates not accepted are hatched) and threshold (one value: the pricing threshold).
- ``bit_decisions``: candidate, appraiser, value (the revealed bit), utility; a threshold per
  appraiser (argument or column).
- ``flat_price_bars``: candidate, appraiser, price, accepted, optional utility; a threshold per
  appraiser (argument or column).
- ``marketplace_table``: approach, blog_row, and for each criterion of CRITERIA (data leakage,
  model leakage, practicality, fairness) its level (High, Medium, Low or "not measured"), the
  blog's rating ("blog <criterion>") and the measured numbers in words ("<criterion>
  measured"), one row per approach (explorer.marketplace).
- ``marketplace_prices``: approach, kind, utility, price (one row per approach and candidate).

Every figure uses the same template, height and colours (``APPRAISER_COLOURS``,
``BACKEND_COLOURS``, ``KIND_COLOURS``) and reads the same in a Jupyter notebook (after
``use_notebook_renderer()``) and in the standalone HTML file that ``write_html`` writes
(plotly.js inlined, no CDN).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from explorer.errors import ExplorerError
from explorer.metrics import model_correlations, spearman
from explorer.output import write_atomic

TEMPLATE = "plotly_white"
HEIGHT = 420  # px of the figure without its caption; the caption adds its own lines

# Okabe-Ito colours (colour-blind safe): one per appraiser, one per backend.
APPRAISER_COLOURS: dict[str, str] = {
    "influence": "#0072B2",
    "gradient-norm": "#E69F00",
    "finetune": "#009E73",
    "newton": "#CC79A7",
    "surrogate": "#882255",
    "random": "#7F7F7F",
}
BACKEND_COLOURS: dict[str, str] = {
    "plaintext": "#56B4E9",
    "crypten": "#D55E00",
}
# Paul Tol's muted colours: one per corruption kind of the market.
# One per seed-model family (explorer.constraints.MODELS).
MODEL_COLOURS: dict[str, str] = {
    "logistic": "#0072B2",
    "mlp": "#D55E00",
    "last-layer": "#009E73",
}
KIND_COLOURS: dict[str, str] = {
    "none": "#117733",
    "label-noise": "#CC6677",
    "imbalance": "#332288",
    "missing-features": "#DDCC77",
    "duplicates": "#88CCEE",
    "feature-noise": "#AA4499",
}
UTILITY_COLOUR = "#222222"  # the ground truth (utility by retraining)
ACCEPTED_COLOUR, REJECTED_COLOUR = "#009E73", "#BBBBBB"
FALLBACK_COLOURS = ("#44AA99", "#882255", "#999933", "#661100", "#6699CC", "#DDCC77")
LEVEL_COLOURSCALE = "Viridis"  # continuous: corruption level
RHO_COLOURSCALE = "RdBu"  # diverging, fixed to [-1, 1]: Spearman's rho (blue = agrees)
SECONDS_COLOURSCALE = "Viridis"  # continuous: runtime

# The words every figure uses for the quantities a class most easily misreads.
GROUND_TRUTH = "ground truth: only a simulation can know this"
UTILITY_TEXT = ("utility = the test-loss reduction from retraining with the candidate added "
                f"(nats; {GROUND_TRUTH}, since it needs both parties' data)")
GRADIENT_NORM_TEXT = ("The gradient norm measures how much a candidate surprises the model, not "
                      "how much it helps: noisy labels surprise it most, so its ρ with utility "
                      "can be strongly negative.")
TIES_TEXT = ("Only bits were revealed, so all accepted candidates tie (they share one average "
             "rank), as do all rejected ones; ρ on bits can only say whether the accepted "
             "were the better ones.")
ACQUISITION_SCALE = "% of the seed model's test loss"

# Caption layout: plotly does not wrap text, so captions are wrapped at a width that fits a
# figure of about 800 px (notebook cells, the dashboard, a 1024 px projector).
CAPTION_CHARS = 115
CAPTION_LINE_PX = 15
CAPTION_FONT = {"size": 11, "color": "#444444"}
AXIS_PX = 64  # tick labels and the x axis' title under the plot area
LEGEND_ROW_PX = 26
TABLE_ROW_PX = 26  # a table row of one line
TABLE_WRAP_PX = 16  # the extra line of a row whose text wraps


def _require(frame: pd.DataFrame, columns: Iterable[str], figure: str) -> None:
    """Raise ExplorerError unless ``frame`` is a non-empty DataFrame with all ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise ExplorerError(f"{figure} needs a pandas DataFrame, not {type(frame).__name__}.")
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        plural = "s" if len(missing) > 1 else ""
        raise ExplorerError(f"{figure} needs the column{plural} {names}, which the frame "
                            f"(columns {', '.join(map(str, frame.columns))}) does not have.")
    if frame.empty:
        raise ExplorerError(f"{figure} needs at least one row, but the frame is empty.")


def _colours(names: Iterable[str], palette: Mapping[str, str]) -> dict[str, str]:
    """One colour per name: the palette's, else the next unused fallback colour."""
    out: dict[str, str] = {}
    spare = iter(FALLBACK_COLOURS * 10)
    for name in dict.fromkeys(names):
        out[name] = palette.get(name) or next(spare)
    return out


def _rgba(hex_colour: str, alpha: float) -> str:
    """The CSS rgba() of a '#rrggbb' colour with the given opacity."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _rho_text(rho: float) -> str:
    """'ρ = 0.923', or 'ρ = n/a' when rho is undefined."""
    return "ρ = n/a" if np.isnan(rho) else f"ρ = {rho:.3f}"


def _significant(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits, without exponent notation; '' for NaN."""
    if not np.isfinite(x):
        return ""
    if x == 0:
        return "0"
    return np.format_float_positional(x, precision=digits, unique=False, fractional=False,
                                      trim="k").rstrip(".")


def _number_label(x: float) -> str:
    """A short label for a grid value: 0.1 -> '0.1', 32.0 -> '32'."""
    return f"{float(x):g}"


def _ordered(names: Iterable[str], preferred: Iterable[str]) -> list[str]:
    """Distinct ``names``: those in ``preferred`` first in its order, then the rest as met."""
    names = list(dict.fromkeys(names))
    return [n for n in preferred if n in names] + [n for n in names if n not in preferred]


def _grid(frame: pd.DataFrame, row: str, col: str, values: Sequence[str],
          row_order: list[str], col_order: list[str]) -> dict[str, np.ndarray]:
    """Mean of each of ``values`` per (row, col) label, as matrices rows x cols (NaN if absent)."""
    means = frame.groupby([row, col], sort=False)[list(values)].mean()
    index = pd.MultiIndex.from_product([row_order, col_order])
    return {v: means[v].reindex(index).to_numpy(float).reshape(len(row_order), len(col_order))
            for v in values}


def _columns(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Stack equal-length columns side by side as an object array (keeps numbers numeric)."""
    out = np.empty((len(columns[0]), len(columns)), dtype=object)
    for i, column in enumerate(columns):
        out[:, i] = column
    return out


def _truth_label(column: str) -> str:
    """How a ground-truth column is named on an axis."""
    return {"utility": f"utility ({GROUND_TRUTH})",
            "accuracy_change": f"accuracy change by retraining ({GROUND_TRUTH})",
            "level": "corruption level (set by the simulation)"}.get(column, column)


def _one_value(frame: pd.DataFrame, column: str, figure: str) -> float | None:
    """The single value a column repeats, None when absent or all NaN; more than one refused."""
    if column not in frame.columns:
        return None
    values = pd.unique(frame[column].dropna())
    if len(values) > 1:
        raise ExplorerError(f"{figure}: {column} must be one value repeated, not {len(values)} "
                            f"different values.")
    return float(values[0]) if len(values) else None


def _thresholds(frame: pd.DataFrame, thresholds: Mapping[str, float] | None,
                figure: str) -> dict[str, float]:
    """One threshold per appraiser of ``frame``: from the mapping, else the threshold column."""
    appraisers = list(dict.fromkeys(frame["appraiser"]))
    if thresholds is None and "threshold" in frame.columns:
        thresholds = {a: _one_value(frame[frame["appraiser"] == a], "threshold",
                                    f"{figure} ({a})") for a in appraisers}
    thresholds = {k: v for k, v in (thresholds or {}).items() if v is not None}
    missing = [a for a in appraisers if a not in thresholds]
    if missing:
        raise ExplorerError(f"{figure} needs a threshold per appraiser (their scales differ), "
                            f"and has none for {', '.join(missing)}.")
    return {a: float(thresholds[a]) for a in appraisers}


def caption(fig: go.Figure) -> str:
    """The caption of a figure made here (what is plotted, which way is better); '' if none."""
    meta = fig.layout.meta
    return str(meta.get("caption", "")) if isinstance(meta, Mapping) else ""


def _wrap(text: str) -> list[str]:
    """Caption lines: paragraphs split at newlines, each wrapped at CAPTION_CHARS."""
    return [line for paragraph in text.split("\n")
            for line in textwrap.wrap(paragraph, CAPTION_CHARS, break_on_hyphens=False)
            or [""]]


def _layout(fig: go.Figure, title: str, caption_text: str, *, axis_px: int = AXIS_PX,
            legend_rows: int = 0, plot_px: int = HEIGHT, **kwargs: object) -> go.Figure:
    """Apply the common template and title, and the caption under the plot area.

    The figure is ``plot_px`` high plus the caption and a bottom legend, so the plot area
    keeps its size whatever the caption's length. With
    ``legend_rows`` the legend lies horizontally between the x axis and the caption (on the
    right it can cover a secondary axis' title).
    """
    lines = _wrap(caption_text)
    caption_px = len(lines) * CAPTION_LINE_PX + 10
    legend_px = legend_rows * LEGEND_ROW_PX
    bottom = axis_px + legend_px + caption_px
    height = plot_px + legend_px + caption_px
    margin = {**dict(kwargs.pop("margin", {}) or {}), "b": bottom}
    if legend_rows:
        kwargs["legend"] = {**dict(kwargs.get("legend", {}) or {}), "orientation": "h",
                            "yref": "container", "y": (caption_px + 4) / height,
                            "yanchor": "bottom", "x": 0.5, "xanchor": "center"}
    fig.update_layout(template=TEMPLATE, height=height, title={"text": title, "x": 0.02},
                      margin=margin, meta={"caption": caption_text}, **kwargs)
    # The caption's bottom sits 4 px above the figure's: y=0 is the plot area's bottom edge,
    # ``bottom`` px above the figure's.
    fig.add_annotation(name="caption", text="<br>".join(lines), showarrow=False, align="left",
                       xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="bottom",
                       xshift=-60, yshift=-(bottom - 4), font=CAPTION_FONT)
    return fig


def use_notebook_renderer() -> str:
    """Make plotly figures in this kernel render both as plotly's JSON mimetype (drawn by
    JupyterLab, Notebook 7, Voila and VS Code) and as HTML with plotly.js inlined once (what
    ``jupyter nbconvert --to html`` and nbviewer show, offline). Returns the renderer string.

    Called at the top of the notebooks: with the mimetype alone an HTML export has no figure.
    """
    renderer = "plotly_mimetype+notebook"
    pio.renderers.default = renderer
    return renderer


def rank_scatter(results: pd.DataFrame, appraiser: str = "influence", against: str = "utility",
                 level_range: tuple[float, float] | None = None,
                 title: str | None = None) -> go.Figure:
    """Draw a scatter of value rank vs ground-truth rank for one appraiser, coloured by level.

    Ranks are 1 for the lowest (ties averaged); points on the dotted diagonal are ranked as the
    ground truth ranks them, and Spearman's rho (in the title) near +1 is better.
    """
    _require(results, ["candidate", "level", "utility", "appraiser", "value", against],
             "rank_scatter")
    kept = results[results["appraiser"] == appraiser]
    if kept.empty:
        known = ", ".join(map(str, results["appraiser"].unique()))
        raise ExplorerError(f"rank_scatter found no rows of appraiser {appraiser!r}; the frame "
                            f"has {known}.")
    scope = ""
    if level_range is not None:
        lo, hi = (float(v) for v in level_range)
        if lo > hi:
            raise ExplorerError(f"level_range must be (low, high) with low <= high, not "
                                f"({lo:g}, {hi:g}).")
        kept = kept[kept["level"].between(lo, hi, inclusive="both")]
        if kept.empty:
            raise ExplorerError(f"rank_scatter found no rows of {appraiser!r} with level in "
                                f"[{lo:g}, {hi:g}].")
        scope = f", level in [{lo:g}, {hi:g}]"
    rho = spearman(kept["value"], kept[against])
    heading = f"{appraiser} vs {against}{scope}: {_rho_text(rho)}"
    if title is not None:
        heading = f"{title} ({heading})"

    x = kept[against].rank(method="average").to_numpy(float)
    y = kept["value"].rank(method="average").to_numpy(float)
    hover = [("candidate", "candidate", ""), ("run", "run", ""), ("level", "level", ":.3g"),
             ("value", "value", ":.4g"), ("utility", "utility (ground truth, nats)", ":.4g")]
    if against not in ("utility", "level", "value"):
        hover.append((against, against, ":.4g"))
    hover = [h for h in hover if h[0] in kept.columns]
    template = "<br>".join(f"{label}: %{{customdata[{i}]{fmt}}}"
                           for i, (_, label, fmt) in enumerate(hover))
    fig = go.Figure(go.Scatter(
        x=x, y=y, mode="markers", name=appraiser,
        customdata=kept[[h[0] for h in hover]].to_numpy(object),
        hovertemplate=f"{template}<br>rank of {against}: %{{x}}<br>rank of value: %{{y}}"
                      "<extra></extra>",
        marker={"color": kept["level"].to_numpy(float), "colorscale": LEVEL_COLOURSCALE,
                "showscale": True, "size": 9, "line": {"width": 0.5, "color": "white"},
                "colorbar": {"title": {"text": "corruption level"}}},
    ))
    n = len(kept)
    # The diagonal: where the points would lie if the value ranked candidates exactly as the
    # ground truth does.
    fig.add_shape(type="line", x0=1, y0=1, x1=n, y1=n, layer="below",
                  line={"color": "#BBBBBB", "dash": "dot", "width": 1})
    fig.update_xaxes(title_text=f"rank of {_truth_label(against)}; 1 = lowest")
    fig.update_yaxes(title_text=f"rank of {appraiser} value (1 = lowest)")
    truth = UTILITY_TEXT if against == "utility" else _truth_label(against)
    text = (f"Each point is a candidate: across, its rank by {truth}; up, its rank by "
            f"{appraiser}'s value (higher = appraised as more valuable). Points on the dotted "
            f"diagonal are ranked as the ground truth ranks them: ρ near +1 is better, 0 is "
            f"no better than chance, below 0 ranks the wrong way round.")
    if appraiser == "gradient-norm":
        text += " " + GRADIENT_NORM_TEXT
    if kept["value"].dropna().nunique() <= 2:
        text += " " + TIES_TEXT
    return _layout(fig, heading, text, showlegend=False)


def correlation_table(results: pd.DataFrame, against: str = "utility",
                      title: str = "How well each appraiser ranks the candidates") -> go.Figure:
    """Draw a table of Spearman's rho of each appraiser's values against a ground-truth column
    (ties averaged), with a line saying how to read it; +1 is best."""
    _require(results, ["appraiser", "value", against], "correlation_table")
    appraisers = _ordered(results["appraiser"], APPRAISER_COLOURS)
    rhos, readings = [], []
    for name in appraisers:
        rows = results[results["appraiser"] == name]
        rho = spearman(rows["value"], rows[against])
        rhos.append("n/a" if np.isnan(rho) else f"{rho:+.3f}")
        if name == "gradient-norm":
            readings.append("measures surprise, not helpfulness: negative under label noise")
        elif rows["value"].dropna().nunique() <= 2:
            readings.append("bits only: accepted candidates tie, as do rejected")
        elif np.isnan(rho):
            readings.append("undefined: one side is constant")
        else:
            readings.append("ranks like the ground truth" if rho >= 0.8 else
                            "partly like the ground truth" if rho > 0 else
                            "the wrong way round")
    fig = go.Figure(go.Table(
        columnwidth=[1.2, 1.6, 3.5],
        header={"values": ["appraiser", f"Spearman ρ with {against}", "reading"],
                "align": "left", "fill_color": "#EEEEEE", "height": TABLE_ROW_PX},
        cells={"values": [appraisers, rhos, readings], "align": "left",
               "height": TABLE_ROW_PX}))
    truth = UTILITY_TEXT if against == "utility" else _truth_label(against)
    text = (f"Spearman's ρ between each appraiser's values and {truth}, over "
            f"{results['candidate'].nunique() if 'candidate' in results else len(results)} "
            f"candidates: +1 = ranks them exactly as the ground truth (better), 0 = chance, "
            f"-1 = exactly reversed.")
    if "gradient-norm" in appraisers:
        text += " " + GRADIENT_NORM_TEXT
    # The table needs its header and rows inside the plot area (below the title's 60 px, above
    # the 20 px axis gap), with room for each row to wrap once in a narrow cell: a table
    # taller than its area scrolls, hiding rows.
    rows_px = TABLE_ROW_PX * (1 + len(appraisers)) + TABLE_WRAP_PX * len(appraisers)
    return _layout(fig, title, text, axis_px=20, plot_px=60 + 20 + rows_px,
                   margin={"t": 60, "l": 70, "r": 20})


def model_correlation_bars(results: pd.DataFrame, against: str = "utility",
                           title: str = "Does influence hold for a neural network?"
                           ) -> go.Figure:
    """Draw Spearman's rho of each appraiser's values against a ground-truth column, one bar
    per seed model side by side; +1 is best. An appraiser a family does not define has no
    bar for it (the caption names it)."""
    _require(results, ["model", "appraiser", "value", against], "model_correlation_bars")
    rhos = model_correlations(results, against)
    label = "description" if "description" in rhos else "model"
    appraisers = _ordered(rhos["appraiser"], APPRAISER_COLOURS)
    colours = _colours(rhos["model"], MODEL_COLOURS)
    fig = go.Figure()
    for model, g in rhos.groupby(label, sort=False):
        g = g.set_index("appraiser").reindex(appraisers)
        fig.add_bar(x=appraisers, y=g["spearman"], name=str(model),
                    marker_color=colours[g["model"].dropna().iloc[0]],
                    text=["n/a" if np.isnan(r) else f"{r:+.2f}" for r in g["spearman"]],
                    textposition="outside")
    fig.update_yaxes(title_text=f"Spearman ρ with {against}", range=[-1.15, 1.15],
                     zeroline=True)
    fig.update_xaxes(title_text="appraiser")
    truth = UTILITY_TEXT if against == "utility" else _truth_label(against)
    models = list(dict.fromkeys(rhos[label]))
    count = f"{results['candidate'].nunique()} " if "candidate" in results else ""
    text = (f"The same {count}candidates appraised under each seed model "
            f"({', '.join(map(str, models))}); each bar is Spearman's ρ between an "
            f"appraiser's values and {truth} under that model: "
            f"+1 = ranks them exactly as retraining that model does (better), 0 = chance. "
            f"A network's utility is the test-loss change at the minimum reached by retraining "
            f"from its seed model (warm-started, same optimiser and tolerance).")
    missing = [f"{a} ({m})" for m in models for a in appraisers
               if not ((rhos[label] == m) & (rhos["appraiser"] == a)).any()]
    if missing:
        text += f" Not defined for that family, so no bar: {', '.join(missing)}."
    if "gradient-norm" in appraisers:
        text += " " + GRADIENT_NORM_TEXT
    return _layout(fig, title, text, barmode="group", legend_rows=1)


def acquisition_curves(curves: pd.DataFrame,
                       title: str = "Greedy acquisition by influence vs random") -> go.Figure:
    """Draw the mean test-loss reduction per acquisition round and strategy, ±1 sd over runs.

    y = 100 * relative_reduction: the seed model's test loss minus the current one, as a
    percentage of the seed model's test loss (a fixed scale for every strategy, round and run).
    Higher is better; below zero the purchases made the model worse.
    """
    _require(curves, ["run", "strategy", "round", "relative_reduction"], "acquisition_curves")
    summary = (curves.groupby(["strategy", "round"], sort=False)["relative_reduction"]
               .agg(["mean", "std", "count"]).reset_index())
    summary["std"] = summary["std"].fillna(0.0)
    summary[["mean", "std"]] *= 100.0  # percent
    strategies = _ordered(curves["strategy"], [*APPRAISER_COLOURS, "oracle"])
    colours = _colours(strategies, {**APPRAISER_COLOURS, "oracle": UTILITY_COLOUR})
    names = {"oracle": "oracle: by utility (ground truth)", "random": "random",
             "influence": "greedy by influence"}
    fig = go.Figure()
    fig.add_hline(y=0, line={"color": "#999999", "width": 1})
    for strategy in strategies:
        s = summary[summary["strategy"] == strategy].sort_values("round")
        rounds = s["round"].to_numpy()
        mean, sd = s["mean"].to_numpy(float), s["std"].to_numpy(float)
        name = names.get(strategy, strategy)
        # Band first so that the line is drawn over it: upper edge forwards, lower edge back.
        fig.add_trace(go.Scatter(
            x=np.concatenate([rounds, rounds[::-1]]),
            y=np.concatenate([mean + sd, (mean - sd)[::-1]]),
            fill="toself", fillcolor=_rgba(colours[strategy], 0.2), line={"width": 0},
            mode="lines", name=f"{name} ± 1 sd", legendgroup=strategy,
            showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=rounds, y=mean, mode="lines+markers", name=name, legendgroup=strategy,
            line={"color": colours[strategy], "width": 2,
                  "dash": "dash" if strategy == "oracle" else "solid"}, marker={"size": 7},
            customdata=np.column_stack([sd, s["count"].to_numpy()]),
            hovertemplate=f"{name}<br>round %{{x}}<br>reduction %{{y:.3g}}%"
                          "<br>sd %{customdata[0]:.3g} over %{customdata[1]} runs"
                          "<extra></extra>"))
    fig.update_xaxes(title_text="round (candidates acquired)")
    if curves["round"].max() <= 20:
        fig.update_xaxes(tickmode="linear", dtick=1)  # whole rounds only
    fig.update_yaxes(title_text=f"test-loss reduction ({ACQUISITION_SCALE})",
                     ticksuffix="%")
    runs = curves.groupby("strategy")["run"].nunique().max()
    text = (f"Each line: how much lower the test loss is after buying that many candidates "
            f"than the seed model's, as a {ACQUISITION_SCALE} (a fixed scale for every "
            f"strategy and run); mean and ±1 sd over up to {runs} runs. Higher is better; below "
            f"0 the purchases made the model worse. Greedy buys the candidate with the highest "
            f"influence under the current model and refits; random buys any one.")
    if "oracle" in strategies:
        text += (f" The dashed oracle buys the highest utility ({GROUND_TRUTH}): the best "
                 f"greedy can do.")
    return _layout(fig, title, text, legend={"title": {"text": "strategy"}})


def leakage_curves(curves: pd.DataFrame,
                   title: str = "What the revealed values leak") -> go.Figure:
    """Draw each attack's relative reconstruction error against the values or bits revealed,
    one line per reveal mode and defence, one panel per attacker; log-log, lower = more
    leaked."""
    _require(curves, ["attacker", "reveal", "defence", "queries", "relative_error"],
             "leakage_curves")
    if "target" in curves.columns:  # the data owner's attack also recovers v: plot theta_hat
        curves = curves[curves["target"] != "v"]
    attackers = list(dict.fromkeys(curves["attacker"]))
    fig = make_subplots(rows=1, cols=len(attackers), subplot_titles=[
        f"{a} attacker: {'the model (θ̂)' if a == 'data-owner' else 'the data (G(D_a))'}"
        for a in attackers])
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    lines = list(dict.fromkeys(zip(curves["reveal"], curves["defence"], strict=True)))
    for col, attacker in enumerate(attackers, start=1):
        for k, (reveal, defence) in enumerate(lines):
            g = curves[(curves.attacker == attacker) & (curves.reveal == reveal)
                       & (curves.defence == defence)].sort_values("queries")
            if g.empty:
                continue
            name = f"{reveal}, {defence}"
            fig.add_trace(go.Scatter(
                x=g["queries"], y=g["relative_error"].clip(lower=1e-6), mode="lines",
                name=name, legendgroup=name, showlegend=col == 1,
                line={"color": palette[k % len(palette)], "width": 2},
                hovertemplate=f"{name}<br>%{{x}} revealed<br>error %{{y:.3g}}<extra></extra>"),
                row=1, col=col)
        fig.update_xaxes(type="log", title_text="values or bits revealed", row=1, col=col)
        fig.update_yaxes(type="log", range=[-6.2, 1.2], title_text="relative reconstruction "
                         "error (1e-6: exact)", row=1, col=col)
    text = ("Each line: how far an attacker's reconstruction of the other side's secret is "
            "from the truth, against how many values or bits it has seen revealed. Lower = "
            "more of the secret recovered (worse for the victim); a line that stays near 1 "
            "means the defence holds. Rounding and noise are the protocol's own, applied "
            "before the reveal.")
    return _layout(fig, title, text, legend={"title": {"text": "reveal, defence"}})


def _steps(spent: np.ndarray, loss: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The test loss after the last purchase made with at most x spent, at each x of ``grid``
    (``spent`` ascending, starting at 0)."""
    return loss[np.searchsorted(spent, grid, side="right") - 1]


def _step_path(grid: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A step function's corners: flat from each grid point to the next, then a jump."""
    x = np.repeat(grid, 2)[1:]
    y = np.repeat(values, 2)[:-1]
    return x, y


def budget_curves(frame: pd.DataFrame,
                  title: str = "Buying within a budget: greedy by value per price vs random "
                               "and the oracle") -> go.Figure:
    """Draw the test loss against the money spent, per strategy of a budgeted buyer.

    Each strategy's test loss (nats, lower is better) is a step function of the money spent:
    it drops or rises at each purchase and stays until the next. Several runs of a strategy
    (random's orders) are drawn as their mean and a ±1 sd band, evaluated on every amount any
    of them spent. The budget is a vertical line, the seed model's test loss a horizontal one.
    """
    _require(frame, ["strategy", "method", "run", "round", "candidate", "price", "spent",
                     "test_loss", "budget"], "budget_curves")
    budgets = frame["budget"].unique()
    if len(budgets) != 1:
        raise ExplorerError(f"budget_curves draws one budget, but the frame holds "
                            f"{len(budgets)}; draw each budget's rows on their own.")
    budget = float(budgets[0])
    seed_loss = float(frame.loc[frame["round"] == 0, "test_loss"].iloc[0])
    strategies = _ordered(frame["strategy"], ["greedy", "random", "oracle"])
    greedy = frame.loc[frame["strategy"] == "greedy", "method"]
    appraiser = str(greedy.iloc[0]).split(" ")[0] if len(greedy) else ""
    colours = _colours(strategies, {"greedy": APPRAISER_COLOURS.get(appraiser, "#0072B2"),
                                    "random": APPRAISER_COLOURS["random"],
                                    "oracle": UTILITY_COLOUR})
    fig = go.Figure()
    fig.add_hline(y=seed_loss, line={"color": "#999999", "width": 1, "dash": "dot"},
                  annotation_text="seed model", annotation_position="bottom left")
    fig.add_vline(x=budget, line={"color": "#444444", "dash": "dot", "width": 1},
                  annotation_text=f"budget {budget:.4g}", annotation_position="top left")
    for strategy in strategies:
        rows = frame[frame["strategy"] == strategy]
        runs = [r.sort_values("round") for _, r in rows.groupby("run")]
        method = str(rows["method"].iloc[0])
        name = f"{strategy}: {method}"
        grid = np.unique(np.concatenate([r["spent"].to_numpy(float) for r in runs] + [[budget]]))
        grid = grid[grid <= budget]
        curves = np.array([_steps(r["spent"].to_numpy(float), r["test_loss"].to_numpy(float),
                                  grid) for r in runs])
        mean = curves.mean(axis=0)
        colour = colours[strategy]
        dash = "dash" if strategy == "oracle" else "solid"
        if len(runs) > 1:
            name = f"{name} (mean of {len(runs)})"
            sd = curves.std(axis=0, ddof=1)
            x, upper = _step_path(grid, mean + sd)
            _, lower = _step_path(grid, mean - sd)
            fig.add_trace(go.Scatter(
                x=np.concatenate([x, x[::-1]]), y=np.concatenate([upper, lower[::-1]]),
                fill="toself", fillcolor=_rgba(colour, 0.2), line={"width": 0}, mode="lines",
                name=f"{name} ± 1 sd", legendgroup=strategy, showlegend=False,
                hoverinfo="skip"))
        x, y = _step_path(grid, mean)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, legendgroup=strategy,
                                 line={"color": colour, "width": 2, "dash": dash},
                                 hoverinfo="skip"))
        if len(runs) == 1:  # each purchase: what was bought, at what price
            bought = runs[0][runs[0]["round"] > 0]
            fig.add_trace(go.Scatter(
                x=bought["spent"], y=bought["test_loss"], mode="markers", name=name,
                legendgroup=strategy, showlegend=False,
                marker={"color": colour, "size": 8}, customdata=bought[["candidate", "price"]],
                hovertemplate=f"{strategy}<br>candidate %{{customdata[0]}} for "
                              "%{customdata[1]:.4g}<br>spent %{x:.4g}<br>test loss %{y:.4g}"
                              "<extra></extra>"))
    fig.update_xaxes(title_text="money spent (currency units)", range=[0, budget * 1.04])
    fig.update_yaxes(title_text="test loss (nats)")
    text = ("Each line: the model's test loss (mean cross-entropy, nats; lower is better) "
            "after buying, against the money spent so far; it steps at each purchase. Greedy "
            "re-appraises the affordable candidates after every purchase, skips those of value "
            "<= 0 and buys the highest value per asking price; random buys any affordable "
            "candidate, until none is (mean and ±1 sd over its orders). The dashed oracle "
            f"buys by retraining ({GROUND_TRUTH}): the knapsack oracle's last point is the "
            "lowest test loss any set of candidates within the budget reaches.")
    return _layout(fig, title, text, legend={"title": {"text": "strategy"}})


def runtime_bars(breakdown: pd.DataFrame) -> go.Figure:
    """Draw bars of plaintext and encrypted seconds per appraiser, one panel per backend, on a
    linear axis with each bar's seconds written on it (lower = cheaper).

    Under each appraiser of a backend with communication: MB sent on the wire and rounds on
    the critical path (from the bytes and rounds columns, when present).
    """
    _require(breakdown, ["appraiser", "backend", "plaintext_seconds", "private_seconds"],
             "runtime_bars")
    extras = [c for c in ("bytes", "rounds") if c in breakdown.columns]
    totals = (breakdown.groupby(["backend", "appraiser"], sort=False)
              [["plaintext_seconds", "private_seconds", *extras]].sum(min_count=1).reset_index())
    if "bytes" in totals.columns:
        totals["bytes"] = totals["bytes"] / 1e6  # shown as MB
    backends = _ordered(breakdown["backend"], BACKEND_COLOURS)
    appraisers = _ordered(breakdown["appraiser"], APPRAISER_COLOURS)
    parts = {"plaintext_seconds": ("plaintext part", BACKEND_COLOURS["plaintext"]),
             "private_seconds": ("encrypted part", BACKEND_COLOURS["crypten"])}

    # Grouped, linear: each part's bar length compares directly with every other's, and the
    # label carries the number even where a bar is too short to see (a log axis hid
    # influence's encrypted bar among fine-tuning's).
    fig = make_subplots(rows=1, cols=len(backends), shared_yaxes=True,
                        subplot_titles=[f"backend: {b}" for b in backends]
                        if len(backends) > 1 else None)
    shown: set[str] = set()
    communicates = False
    for col, backend in enumerate(backends, start=1):
        rows = totals[totals["backend"] == backend].set_index("appraiser")
        rows = rows.reindex([a for a in appraisers if a in rows.index])
        hover_extra, custom = "", []
        words = {"bytes": ("sent on the wire", ":.3g} MB"),
                 "rounds": ("rounds on the critical path", ":.0f}")}
        for i, c in enumerate(extras):
            label, fmt = words[c]
            hover_extra += f"<br>{label}: %{{customdata[{i}]{fmt}"
            custom.append(rows[c].to_numpy(float))
        for column, (name, colour) in parts.items():
            seconds = rows[column].to_numpy(float)
            if not np.any(seconds > 0):
                continue  # e.g. no encrypted part in plaintext: no empty bars, no "0 s" labels
            fig.add_trace(go.Bar(
                x=rows.index.to_list(), y=seconds, name=name, legendgroup=name,
                showlegend=name not in shown, marker_color=colour,
                text=[f"{s:.3g} s" if np.isfinite(s) else "" for s in seconds],
                textposition="outside", cliponaxis=False,
                customdata=np.column_stack(custom) if custom else None,
                hovertemplate=f"%{{x}} ({backend})<br>{name}: %{{y:.3g}} s{hover_extra}"
                              "<extra></extra>"), row=1, col=col)
            shown.add(name)
        sent = rows["bytes"].to_numpy(float) if "bytes" in rows else np.zeros(len(rows))
        if np.any(np.nan_to_num(sent) > 0):
            communicates = True
            rounds = rows["rounds"].to_numpy(float) if "rounds" in rows \
                else np.full(len(rows), np.nan)
            ticks = [f"{a}<br>{mb:.3g} MB sent"
                     + (f"<br>{r:.0f} rounds" if np.isfinite(r) else "")
                     for a, mb, r in zip(rows.index, sent, rounds, strict=True)]
            fig.update_xaxes(tickmode="array", tickvals=rows.index.to_list(), ticktext=ticks,
                             tickangle=0, row=1, col=col)
    top = np.nanmax(totals[list(parts)].to_numpy(float))
    fig.update_yaxes(range=[0, 1.15 * top if top > 0 else 1])  # room for the labels
    fig.update_yaxes(title_text="seconds", row=1, col=1)
    fig.update_xaxes(title_text="appraiser")
    title = "Appraisal runtime: plaintext and encrypted parts"
    if len(backends) == 1:
        title += f" ({backends[0]})"
    text = ("Seconds each appraiser took for the whole market, split into its plaintext part "
            "(the model owner's own set-up and bookkeeping) and its encrypted part (the MPC "
            "session); lower is cheaper. Linear axis: bar lengths compare directly, and each "
            "bar is labelled with its seconds.")
    if communicates:
        text += (" Under each appraiser: the bytes sent on the wire (MB) and the rounds on the "
                 "critical path of its session.")
    return _layout(fig, title, text, axis_px=AXIS_PX + (36 if communicates else 0),
                   barmode="group", legend={"title": {"text": "part"}})

# A run's phases outside the appraisers, coloured apart from them; an appraiser's parts are
# told apart by their pattern, its colour being the appraiser's.
PHASE_COLOURS: dict[str, str] = {
    "task and seed model": "#BBBBBB",
    "party processes": "#D55E00",
    "ground truth": UTILITY_COLOUR,
    "prices": "#999933",
    "live results": "#88CCEE",
    "other": "#DDDDDD",
}
PART_PATTERNS: dict[str, str] = {
    "set-up": "", "computation": "", "session inputs": ".", "start-up and handoff": "x",
    "offline phase": "-", "encrypted computation": "", "session set-up and wind-down": "/",
    "greedy rounds": "", "random orders": "", "other": "\\",
}
PART_OPACITY = {"set-up": 0.55}  # the plaintext set-up lighter than the encrypted part


def run_timeline(timeline: pd.DataFrame) -> go.Figure:
    """Draw where a run's wall time went, as a waterfall: one horizontal bar per phase (each
    appraiser its own, split into its parts), each starting where the one above ended, so the
    last ends at the run's wall time (the sum of the rows, "other" included).

    Appraisers' bars have their colours (``APPRAISER_COLOURS``), their parts a pattern each;
    the caption states the wall time and the "other" seconds no phase measured.
    """
    _require(timeline, ["phase", "appraiser", "part", "seconds"], "run_timeline")
    if not (timeline["phase"] == "other").any():
        raise ExplorerError("run_timeline needs the timeline's \"other\" row (the seconds no "
                            "phase measured), without which its bars cannot add up to the "
                            "run's wall time.")
    frame = timeline.assign(appraiser=timeline["appraiser"].fillna("").astype(str))
    frame["row"] = [f"{p}: {a}" if a and p == "appraisal" else p
                    for p, a in zip(frame["phase"], frame["appraiser"], strict=True)]
    rows = list(dict.fromkeys(frame["row"]))
    wall = float(frame["seconds"].sum())
    other = float(frame.loc[frame["phase"] == "other", "seconds"].sum())
    appraiser_colours = _colours(_ordered(frame["appraiser"][frame["appraiser"] != ""],
                                          APPRAISER_COLOURS), APPRAISER_COLOURS)
    frame["start"] = frame["seconds"].cumsum() - frame["seconds"]
    fig = go.Figure()
    for part in dict.fromkeys(frame["part"]):
        spans = frame[frame["part"] == part]
        colours = [appraiser_colours[a] if a else PHASE_COLOURS.get(p, "#777777")
                   for p, a in zip(spans["phase"], spans["appraiser"], strict=True)]
        seconds = spans["seconds"].to_numpy(float)
        fig.add_trace(go.Bar(
            y=spans["row"], x=seconds, base=spans["start"].to_numpy(float), orientation="h",
            name=part, legendgroup=part,
            marker={"color": colours, "opacity": PART_OPACITY.get(part, 1.0),
                    "pattern": {"shape": PART_PATTERNS.get(part, "+"), "fillmode": "overlay",
                                "fgcolor": "#FFFFFF", "solidity": 0.3},
                    "line": {"color": "#FFFFFF", "width": 0.5}},
            text=[f"{s:.3g} s" for s in seconds], textposition="inside",
            insidetextanchor="middle",
            customdata=np.column_stack([spans["count"].to_numpy(float)
                                        if "count" in spans else np.ones(len(spans))]),
            hovertemplate=f"%{{y}}<br>{part}: %{{x:.3g}} s (×%{{customdata[0]:.0f}})"
                          "<extra></extra>"))
    fig.add_vline(x=wall, line={"color": "#444444", "dash": "dot", "width": 1},
                  annotation_text=f"wall {wall:.3g} s", annotation_position="top left")
    fig.update_yaxes(categoryorder="array", categoryarray=rows, autorange="reversed")
    fig.update_xaxes(title_text="seconds since the run started", range=[0, 1.08 * wall or 1])
    text = (f"The run took {wall:.3g} s of wall time, from its start to its last result. Each "
            f"bar is a phase, starting where the one above ended, so together they span the "
            f"whole run; an appraiser's bar is split into its parts: the plaintext set-up "
            f"(e.g. v = H⁻¹g_te) and, in a private run, each session's start-up and handoff of "
            f"the inputs to its processes, offline phase (the dealer's deal awaited), "
            f"encrypted computation and CrypTen's set-up and wind-down; its \"other\" is "
            f"verification and bookkeeping. Shorter is faster.")
    if other < 0:
        text += (f" The measured phases overlap: they add up to {-other:.3g} s more than the "
                 f"wall time, shown as a negative \"other\".")
    else:
        text += f" \"Other\" ({other:.3g} s) is the run's time no phase measured."
    return _layout(fig, f"Where the run's {wall:.3g} s went", text, barmode="overlay",
                   plot_px=max(HEIGHT, 60 + 34 * len(rows)), legend_rows=3,
                   legend={"title": {"text": "part"}}, margin={"l": 200},
                   uniformtext={"minsize": 9, "mode": "hide"})


def _batch_size_key(batch: object) -> tuple[float, str]:
    """(sort key, label) of a batch size; None, NaN or 'full' means full batch, sorted last."""
    if batch is None or (isinstance(batch, str) and batch.strip().lower() == "full"):
        return float("inf"), "full"
    try:
        size = float(batch)
    except (TypeError, ValueError):
        raise ExplorerError(f"batch size {batch!r} is neither a number nor 'full'.") from None
    if np.isnan(size):
        return float("inf"), "full"
    return size, _number_label(size)


def finetune_grid_heatmaps(grid: pd.DataFrame) -> go.Figure:
    """Draw two heatmaps over batch size x epochs: fine-tuning's Spearman rho with utility
    (+1 best) and its seconds for the market (lower = cheaper)."""
    _require(grid, ["batch_size", "epochs", "spearman", "seconds"], "finetune_grid_heatmaps")
    keys = [_batch_size_key(b) for b in grid["batch_size"]]
    frame = pd.DataFrame({"batch": [k[1] for k in keys],
                          "epochs": [_number_label(e) for e in grid["epochs"]],
                          "spearman": grid["spearman"].to_numpy(float),
                          "seconds": grid["seconds"].to_numpy(float)})
    batches = [label for _, label in sorted(set(keys))]
    epochs = [_number_label(e) for e in sorted(set(grid["epochs"].astype(float)))]
    z = _grid(frame, "epochs", "batch", ["spearman", "seconds"], epochs, batches)

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16,
                        subplot_titles=("Spearman ρ with utility", "runtime (seconds)"))
    right_edge = fig.layout.xaxis.domain[1]
    fig.add_trace(go.Heatmap(
        z=z["spearman"], x=batches, y=epochs, zmin=-1, zmax=1, colorscale=RHO_COLOURSCALE,
        text=[[f"{v:.2f}" if np.isfinite(v) else "" for v in r] for r in z["spearman"]],
        texttemplate="%{text}", name="Spearman ρ",
        colorbar={"title": {"text": "ρ"}, "x": right_edge + 0.01, "xanchor": "left"},
        hovertemplate="batch size %{x}<br>epochs %{y}<br>ρ = %{z:.3f}<extra></extra>"),
        row=1, col=1)
    fig.add_trace(go.Heatmap(
        z=z["seconds"], x=batches, y=epochs, colorscale=SECONDS_COLOURSCALE,
        text=[[_significant(v) for v in r] for r in z["seconds"]], texttemplate="%{text}",
        name="seconds", colorbar={"title": {"text": "s"}},
        hovertemplate="batch size %{x}<br>epochs %{y}<br>%{z:.3g} s<extra></extra>"),
        row=1, col=2)
    # Categorical axes in numeric order (plotly would otherwise read '32' as a number).
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=batches,
                     title_text="batch size (samples per step)")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=epochs)
    fig.update_yaxes(title_text="epochs", row=1, col=1)
    text = (f"Left: Spearman's ρ between fine-tuning's values and {UTILITY_TEXT}; +1 (blue) = "
            f"ranks the candidates as the ground truth does, better. Right: fine-tuning's "
            f"seconds for the whole market; lower is cheaper.")
    return _layout(fig, "Fine-tuning grid: rank agreement with utility and runtime", text)


def gradient_norm_panels(frame: pd.DataFrame) -> go.Figure:
    """Draw the gradient-norm value and the utility against corruption level, one panel each,
    with each panel's Spearman rho between them in its title."""
    _require(frame, ["panel", "level", "utility", "value"], "gradient_norm_panels")
    panels = list(dict.fromkeys(frame["panel"]))
    subsets = {p: frame[frame["panel"] == p].sort_values("level", kind="stable") for p in panels}
    titles = [f"{p}: {_rho_text(spearman(s['value'], s['utility']))}"
              for p, s in subsets.items()]
    spacing = min(0.12, 0.9 / (len(panels) - 1)) if len(panels) > 1 else 0.0
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles,
                        horizontal_spacing=spacing,
                        specs=[[{"secondary_y": True}] * len(panels)])
    value_colour = APPRAISER_COLOURS["gradient-norm"]
    utility_name = "utility (ground truth)"
    for col, (panel, s) in enumerate(subsets.items(), start=1):
        # Lines only make sense with one point per level; repeats are shown as markers.
        mode = "lines+markers" if s["level"].is_unique else "markers"
        first = col == 1
        fig.add_trace(go.Scatter(
            x=s["level"], y=s["value"], mode=mode, name="gradient norm",
            legendgroup="gradient norm", showlegend=first,
            line={"color": value_colour}, marker={"color": value_colour, "size": 7},
            hovertemplate=f"{panel}<br>level %{{x:.3g}}<br>gradient norm %{{y:.4g}}"
                          "<extra></extra>"), row=1, col=col, secondary_y=False)
        fig.add_trace(go.Scatter(
            x=s["level"], y=s["utility"], mode=mode, name=utility_name,
            legendgroup="utility", showlegend=first,
            line={"color": UTILITY_COLOUR, "dash": "dash"},
            marker={"color": UTILITY_COLOUR, "size": 7, "symbol": "diamond"},
            hovertemplate=f"{panel}<br>level %{{x:.3g}}<br>utility %{{y:.4g}} nats "
                          f"(ground truth)<extra></extra>"), row=1, col=col, secondary_y=True)
    fig.update_xaxes(title_text="corruption level")
    fig.update_yaxes(secondary_y=False, color=value_colour)
    fig.update_yaxes(secondary_y=True, color=UTILITY_COLOUR, showgrid=False)
    fig.update_yaxes(title_text="gradient norm ‖G‖₂ (nats per unit θ)", row=1, col=1,
                     secondary_y=False)
    fig.update_yaxes(title_text="utility (nats, ground truth)", row=1, col=len(panels),
                     secondary_y=True)
    text = (f"Solid: the gradient-norm value of each candidate (higher = appraised as more "
            f"valuable); dashed: {UTILITY_TEXT}. Where the two rise and fall together (ρ near "
            f"+1) the gradient norm ranks well. {GRADIENT_NORM_TEXT}")
    return _layout(fig, "Gradient norm and utility against corruption level", text,
                   legend_rows=1, margin={"t": 80})


def budget_heatmap(frame: pd.DataFrame) -> go.Figure:
    """Draw a heatmap of fine-tuning's Spearman rho with utility by learning rate and budget
    (multiples of influence's per-candidate work); +1 is best, blank cells diverged."""
    _require(frame, ["lr", "budget", "spearman"], "budget_heatmap")
    budget_values = sorted(set(frame["budget"].astype(float)))
    budgets = [f"{_number_label(v)}x" for v in budget_values]
    if "steps" in frame.columns:  # the steps a budget buys, written under it
        steps = {f"{_number_label(b)}x": _one_value(frame[frame["budget"].astype(float) == b],
                                                     "steps", "budget_heatmap")
                 for b in budget_values}
        ticks = [f"{b} ({steps[b]:.0f} step{'s' if steps[b] != 1 else ''})" for b in budgets]
    else:
        ticks = budgets
    lrs = [_number_label(v) for v in sorted(set(frame["lr"].astype(float)))]
    cells = pd.DataFrame({"lr": [_number_label(v) for v in frame["lr"]],
                          "budget": [f"{_number_label(v)}x" for v in frame["budget"]],
                          "spearman": frame["spearman"].to_numpy(float)})
    z = _grid(cells, "lr", "budget", ["spearman"], lrs, budgets)["spearman"]
    title = "Fine-tuning's Spearman ρ with utility by learning rate and budget"
    reference = _one_value(frame, "influence_spearman", "budget_heatmap")
    if reference is not None:
        title += f" (influence: {_rho_text(reference)})"
    fig = go.Figure(go.Heatmap(
        z=z, x=budgets, y=lrs, zmin=-1, zmax=1, colorscale=RHO_COLOURSCALE,
        text=[[f"{v:.2f}" if np.isfinite(v) else "" for v in r] for r in z],
        texttemplate="%{text}", name="Spearman ρ", colorbar={"title": {"text": "ρ"}},
        hovertemplate="learning rate %{y}<br>budget %{x}<br>ρ = %{z:.3f}<extra></extra>"))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=budgets,
                     tickmode="array", tickvals=budgets, ticktext=ticks,
                     title_text="budget (multiples of influence's work per candidate)")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=lrs,
                     title_text="learning rate (step size)")
    text = (f"Spearman's ρ between fine-tuning's values and {UTILITY_TEXT}; +1 (blue) = ranks "
            f"the candidates as the ground truth does, better. A budget of kx buys the "
            f"full-batch steps whose gradient passes over the seed set and the candidate add up "
            f"to k times influence's pass over the candidate (a cost model of public sizes, "
            f"not a clock, so a seed always gives the same steps). Blank: the learning rate "
            f"diverges.")
    return _layout(fig, title, text)


def price_bars(prices: pd.DataFrame, threshold: float | None = None) -> go.Figure:
    """Draw a bar of price per candidate coloured by kind, and on a second axis (nats) the
    appraised value, the utility (ground truth) and the pricing threshold as a dashed line.

    ``threshold`` (nats of predicted test-loss reduction; default: the frame's threshold
    column) is where payment starts: price = rate * (value - threshold), floored.
    """
    _require(prices, ["candidate", "kind", "level", "price"], "price_bars")
    if threshold is None:
        threshold = _one_value(prices, "threshold", "price_bars")
    rows = prices.sort_values(["kind", "level", "candidate"], kind="stable")
    order = [str(c) for c in rows["candidate"]]
    has_value, has_utility = "value" in rows.columns, "utility" in rows.columns
    has_accepted = "accepted" in rows.columns
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    kinds = list(dict.fromkeys(rows["kind"]))
    colours = _colours(kinds, KIND_COLOURS)
    for kind in kinds:
        k = rows[rows["kind"] == kind]
        hover = [("level", ":.3g")]
        custom = [k["level"].to_numpy(float)]
        for column, label in (("value", "value (nats)"), ("utility", "utility (ground truth, "
                                                                     "nats)")):
            if column in k.columns:
                hover.append((label, ":.4g"))
                custom.append(k[column].to_numpy(float))
        marker: dict[str, object] = {"color": colours[kind]}
        accepted_text = ""
        if has_accepted:
            accepted = np.array([bool(a) if pd.notna(a) else False for a in k["accepted"]])
            marker["pattern"] = {"shape": ["" if a else "/" for a in accepted]}
            custom.append(np.where(accepted, "yes", "no"))
            accepted_text = f"<br>accepted: %{{customdata[{len(hover)}]}}"
        lines = "".join(f"<br>{label}: %{{customdata[{i}]{fmt}}}"
                        for i, (label, fmt) in enumerate(hover))
        fig.add_trace(go.Bar(
            x=[str(c) for c in k["candidate"]], y=k["price"].to_numpy(float), name=kind,
            legendgroup=kind, marker=marker, customdata=_columns(custom),
            hovertemplate=f"candidate %{{x}} ({kind})<br>price %{{y:.4g}}{lines}"
                          f"{accepted_text}<extra></extra>"), secondary_y=False)
    if has_value:
        fig.add_trace(go.Scatter(
            x=order, y=rows["value"].to_numpy(float), mode="markers", name="value",
            marker={"color": APPRAISER_COLOURS["influence"], "symbol": "circle", "size": 8},
            hovertemplate="candidate %{x}<br>value %{y:.4g} nats<extra></extra>"),
            secondary_y=True)
    if has_utility:
        fig.add_trace(go.Scatter(
            x=order, y=rows["utility"].to_numpy(float), mode="markers",
            name="utility (ground truth)",
            marker={"color": UTILITY_COLOUR, "symbol": "diamond-open", "size": 9},
            hovertemplate="candidate %{x}<br>utility %{y:.4g} nats (ground truth)"
                          "<extra></extra>"), secondary_y=True)
    if threshold is not None:
        # A line across the whole plot on the nats axis, and a legend entry naming it (a
        # shape has none).
        fig.add_shape(type="line", name="threshold", xref="x domain", x0=0, x1=1, yref="y2",
                      y0=threshold, y1=threshold,
                      line={"color": "#D55E00", "dash": "dash", "width": 2})
        fig.add_trace(go.Scatter(
            x=[order[0]], y=[threshold], mode="lines", name=f"threshold {threshold:.4g} nats",
            line={"color": "#D55E00", "dash": "dash", "width": 2}, hoverinfo="skip"),
            secondary_y=True)
    if has_value or has_utility or threshold is not None:
        # plotly.js 3 syncs an overlaying axis' ticks to the primary gridlines, which puts
        # them at odd values with no tick at 0: its own round ticks instead
        fig.update_yaxes(title_text="nats of test-loss reduction", secondary_y=True,
                         showgrid=False, zeroline=True, tickformat=".2g", tickmode="auto")
    x_title = "candidate (sorted by kind, then level)"
    if has_accepted:
        x_title += "; hatched = not accepted"
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order,
                     title_text=x_title)
    fig.update_yaxes(title_text="price (currency units)", secondary_y=False, rangemode="tozero")
    text = ("Bars: the price offered for each candidate (currency units; higher = paid more), "
            "coloured by how the candidate was made.")
    if has_value:
        text += (" Dots: its appraised value, the predicted test-loss reduction (nats; higher "
                 "= more valuable).")
    if threshold is not None:
        text += (f" Dashed line: the threshold ({threshold:.4g} nats); a candidate is paid "
                 f"rate × (value − threshold) only above it, the floor below.")
    if has_utility:
        text += f" Open diamonds: {UTILITY_TEXT}."
    return _layout(fig, "Prices of the candidate datasets", text, legend_rows=2,
                   barmode="relative", margin={"t": 80})


def _bit_order(frame: pd.DataFrame) -> tuple[list[str], pd.Series | None]:
    """Candidates as category labels, the highest utility first when utility is known."""
    if "utility" in frame.columns:
        utility = frame.groupby("candidate", sort=False)["utility"].mean()
        utility = utility.sort_values(ascending=False, kind="stable")
        return [str(c) for c in utility.index], utility
    return [str(c) for c in dict.fromkeys(frame["candidate"])], None


def bit_decisions(results: pd.DataFrame, thresholds: Mapping[str, float] | None = None,
                  title: str = "What bit mode revealed: accepted or rejected") -> go.Figure:
    """Draw, per appraiser, which candidates its revealed bit accepted (value > its own
    threshold), under the candidates' utility (ground truth), best candidate first.

    ``value`` is the revealed bit (1 = accepted, 0 = rejected, NaN = not verified);
    ``thresholds`` maps every appraiser to its threshold (default: the threshold column).
    """
    _require(results, ["candidate", "appraiser", "value", "utility"], "bit_decisions")
    limits = _thresholds(results, thresholds, "bit_decisions")
    bits = results["value"].dropna()
    if not bits.isin([0.0, 1.0]).all():
        raise ExplorerError("bit_decisions needs revealed bits (value 0 or 1); these are "
                            "values: show them with rank_scatter.")
    order, utility = _bit_order(results)
    appraisers = _ordered(results["appraiser"], APPRAISER_COLOURS)
    share = 44 * len(appraisers) / (160 + 44 * len(appraisers))  # ~44 px per appraiser
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[1 - share, share])
    fig.add_trace(go.Bar(
        x=order, y=utility.to_numpy(float), name="utility (ground truth)",
        marker_color=UTILITY_COLOUR, showlegend=True,
        hovertemplate="candidate %{x}<br>utility %{y:.4g} nats (ground truth)<extra></extra>"),
        row=1, col=1)
    labels = {}
    for name in appraisers:
        rows = results[results["appraiser"] == name]
        accepted = int((rows["value"] == 1).sum())
        rho = spearman(rows["value"].fillna(0.0), rows["utility"])
        labels[name] = (f"{name} > {limits[name]:.3g}<br>{accepted} of {len(rows)} accepted, "
                        f"{_rho_text(rho)}")
    for verdict, bit, symbol, colour in (("accepted", 1.0, "circle", ACCEPTED_COLOUR),
                                         ("rejected", 0.0, "x-thin-open", REJECTED_COLOUR),
                                         ("not verified", np.nan, "question", "#D55E00")):
        pick = results["value"].isna() if np.isnan(bit) else results["value"] == bit
        rows = results[pick]
        if rows.empty:
            continue
        fig.add_trace(go.Scatter(
            x=[str(c) for c in rows["candidate"]], y=[labels[a] for a in rows["appraiser"]],
            mode="markers", name=verdict,
            marker={"symbol": symbol, "size": 13, "color": colour,
                    "line": {"width": 2, "color": colour}},
            customdata=np.column_stack([rows["appraiser"], rows["appraiser"].map(limits)]),
            hovertemplate=f"candidate %{{x}}<br>%{{customdata[0]}}: {verdict} (threshold "
                          f"%{{customdata[1]:.4g}})<extra></extra>"), row=2, col=1)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order)
    fig.update_xaxes(title_text="candidate (highest utility first)", row=2, col=1)
    fig.update_yaxes(title_text="utility (nats)", row=1, col=1)
    fig.update_yaxes(type="category", categoryorder="array",
                     categoryarray=[labels[a] for a in appraisers][::-1], row=2, col=1)
    text = (f"Top: {UTILITY_TEXT}, best candidate first. Bottom: for each appraiser, the one "
            f"bit that was revealed per candidate, value > that appraiser's own threshold "
            f"(accepted, filled) or not (rejected, cross). Thresholds differ per appraiser "
            f"because their values are on different scales. Better = the accepted candidates "
            f"sit at the left, where utility is highest. {TIES_TEXT}")
    return _layout(fig, title, text, legend_rows=1, plot_px=260 + 44 * len(appraisers),
                   margin={"t": 70, "l": 190})


def flat_price_bars(prices: pd.DataFrame, thresholds: Mapping[str, float] | None = None,
                    title: str = "Flat prices from revealed bits") -> go.Figure:
    """Draw the flat price each appraiser's bit buys per candidate (flat if accepted, the
    floor otherwise), grouped by candidate, best utility first when utility is known.

    ``thresholds`` maps every appraiser to its threshold (default: the threshold column); the
    legend shows each.
    """
    _require(prices, ["candidate", "appraiser", "price", "accepted"], "flat_price_bars")
    limits = _thresholds(prices, thresholds, "flat_price_bars")
    order, utility = _bit_order(prices)
    appraisers = _ordered(prices["appraiser"], APPRAISER_COLOURS)
    colours = _colours(appraisers, APPRAISER_COLOURS)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name in appraisers:
        rows = prices[prices["appraiser"] == name]
        accepted = rows["accepted"].fillna(False).astype(bool).to_numpy()
        fig.add_trace(go.Bar(
            x=[str(c) for c in rows["candidate"]], y=rows["price"].to_numpy(float),
            name=f"{name} (threshold {limits[name]:.3g}): {accepted.sum()} of {len(rows)} "
                 f"bought",
            marker={"color": colours[name],
                    "pattern": {"shape": ["" if a else "/" for a in accepted]}},
            hovertemplate=f"candidate %{{x}}<br>{name}: price %{{y:.4g}}<extra></extra>"),
            secondary_y=False)
    if utility is not None:
        fig.add_trace(go.Scatter(
            x=order, y=utility.to_numpy(float), mode="markers", name="utility (ground truth)",
            marker={"color": UTILITY_COLOUR, "symbol": "diamond-open", "size": 9},
            hovertemplate="candidate %{x}<br>utility %{y:.4g} nats (ground truth)"
                          "<extra></extra>"), secondary_y=True)
        fig.update_yaxes(title_text="utility (nats, ground truth)", secondary_y=True,
                         showgrid=False, tickmode="auto")  # round ticks (see price_bars)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order,
                     title_text="candidate" + (" (highest utility first)" if utility is not None
                                               else ""))
    fig.update_yaxes(title_text="price (currency units)", secondary_y=False, rangemode="tozero")
    text = ("Bars: what each appraiser's revealed bit pays for each candidate: the flat price "
            "when value > that appraiser's own threshold (accepted), the floor otherwise "
            "(hatched). The bit says yes or no, never how much, so every accepted candidate "
            "gets the same price: they tie, as the rejected do.")
    if utility is not None:
        text += (f" Open diamonds: {UTILITY_TEXT}; better = money goes to the candidates on the "
                 f"left.")
    return _layout(fig, title, text, legend_rows=2, barmode="group", margin={"t": 70})


def paper_comparison_bars(frame: pd.DataFrame, title: str = "Ours beside the paper") -> go.Figure:
    """Our mean Spearman rho with utility (±1 sd error bar) beside the paper's figure, one pair
    of bars per setting; higher is better.

    Columns: setting, mean, sd, paper_mean, and optionally paper_sd.
    """
    _require(frame, ["setting", "mean", "sd", "paper_mean"], "paper_comparison_bars")
    fig = go.Figure()
    fig.add_bar(x=frame.setting, y=frame["mean"], name="ours",
                marker_color=APPRAISER_COLOURS["influence"],
                error_y={"type": "data", "array": frame["sd"], "visible": True})
    paper_sd = frame.get("paper_sd")
    fig.add_bar(x=frame.setting, y=frame.paper_mean, name="paper",
                marker_color="#BBBBBB",
                error_y=None if paper_sd is None else {"type": "data", "array": paper_sd,
                                                       "visible": True})
    fig.update_yaxes(title_text="Spearman ρ with utility")
    fig.update_xaxes(title_text="setting")
    text = (f"Mean Spearman's ρ over runs between the appraised values and {UTILITY_TEXT}, "
            f"±1 sd, ours beside the paper's; +1 = ranks the candidates as the ground truth "
            f"does, higher is better.")
    return _layout(fig, title, text, barmode="group")


def placeholder(message: str) -> go.Figure:
    """An empty figure carrying a message, shown before any result exists."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper",
                       yref="paper", font={"size": 14, "color": "#777777"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", "Nothing is plotted yet: the figure appears here once there is a "
                   "result.", axis_px=20)


def write_html(fig: go.Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a standalone HTML page with plotly.js inlined (no CDN), atomically."""
    if not isinstance(fig, go.Figure):
        raise ExplorerError(f"write_html needs a plotly Figure, not {type(fig).__name__}.")
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    return write_atomic(path, lambda f: f.write(html))


MARKET_CRITERIA = ("data leakage", "model leakage", "practicality", "fairness")
# How good each level is for the market, per criterion: a leak is bad, practicality and
# fairness are good (1 = good, 0 = bad).
_GOOD = {"High": 1.0, "Medium": 0.5, "Low": 0.0}


def marketplace_table(table: pd.DataFrame) -> go.Figure:
    """Draw the blog's table measured: one row per approach, one column per criterion, each cell
    the measured numbers and their level beside the blog's rating ("≠" where they disagree),
    coloured by how good the measured level is for the market (blue good, red bad)."""
    columns = ["approach", "blog_row", *MARKET_CRITERIA,
               *(f"blog {c}" for c in MARKET_CRITERIA), *(f"{c} measured" for c in MARKET_CRITERIA)]
    _require(table, columns, "marketplace_table")
    rows = list(table["approach"])
    z, text, hover = [], [], []
    for record in table.to_dict("records"):
        zr, tr, hr = [], [], []
        for criterion in MARKET_CRITERIA:
            level, blog = record[criterion], record[f"blog {criterion}"]
            good = _GOOD.get(level, np.nan)
            zr.append(1.0 - good if criterion.endswith("leakage") else good)
            mark = "=" if level == blog else "≠"
            numbers = "<br>".join(textwrap.wrap(str(record[f"{criterion} measured"]), 34))
            tr.append(f"<b>{level}</b> {mark} blog {blog}<br>{numbers}")
            hr.append(f"{record['approach']} (blog: {record['blog_row']})<br>{criterion}: "
                      f"{record[f'{criterion} measured']}")
        z.append(zr)
        text.append(tr)
        hover.append(hr)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(MARKET_CRITERIA), y=rows, zmin=0, zmax=1, colorscale=RHO_COLOURSCALE,
        text=text, texttemplate="%{text}", textfont={"size": 10}, customdata=hover,
        showscale=False, hovertemplate="%{customdata}<extra></extra>", xgap=2, ygap=2))
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False)
    fig.update_xaxes(side="top", type="category", showgrid=False)
    text_caption = (
        "Each approach on one market (explorer.marketplace): its measured level beside the blog "
        "post's rating of the matching row (hover names it), and the numbers; ≠ marks a "
        "disagreement. Blue = better for the market (little leaks; practical; fair), red = "
        "worse, blank = not measured. Leakage: relative "
        "error of the other party's best reconstruction (≤ 0.1 High, ≤ 0.5 Medium, else Low); "
        "practicality: seconds and bytes of appraising the whole market (≤ 10 s and 1 MB High, "
        "≤ 600 s and 1 GB Medium); fairness: Spearman's ρ "
        "of the prices against " + UTILITY_TEXT + " (≥ 0.7 High, ≥ 0.4 Medium), one level "
        "lower if a duplicate of the model owner's data is paid.")
    return _layout(fig, "The blog's marketplace table, measured", text_caption,
                   margin={"l": 170}, axis_px=20, plot_px=60 + 80 * len(rows))


def marketplace_prices(prices: pd.DataFrame) -> go.Figure:
    """Draw each approach's price against the candidates' utility (ground truth), one panel
    per approach, coloured by kind (duplicates of the model owner's data should sit at 0)."""
    _require(prices, ["approach", "kind", "utility", "price"], "marketplace_prices")
    approaches = list(dict.fromkeys(prices["approach"]))
    cols = 3
    n_rows = (len(approaches) + cols - 1) // cols
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=approaches, shared_xaxes=True,
                        horizontal_spacing=0.07, vertical_spacing=0.14)
    colours = _colours(prices["kind"], KIND_COLOURS)
    for i, approach in enumerate(approaches):
        part = prices[prices["approach"] == approach]
        for kind, group in part.groupby("kind", sort=False):
            fig.add_scatter(x=group["utility"], y=group["price"], mode="markers", name=kind,
                            legendgroup=kind, showlegend=i == 0,
                            marker={"color": colours[kind], "size": 7, "opacity": 0.8},
                            row=i // cols + 1, col=i % cols + 1,
                            hovertemplate=f"{kind}<br>utility %{{x:.4f}}<br>price "
                                          f"%{{y:.2f}}<extra>{approach}</extra>")
    fig.update_xaxes(title_text="utility", row=n_rows)
    fig.update_yaxes(title_text="price", col=1)
    text = ("Each approach's price for each candidate against " + UTILITY_TEXT + ". A fair "
            "price rises with utility (points along a rising line are better) and pays nothing "
            "for duplicates of the model owner's own "
            "training data, which it could re-use for free; prices are floored at 0 below a "
            "threshold calibrated on the model owner's own data (mean + 3 sd), and bit mode "
            "pays one flat price for an accepted candidate.")
    return _layout(fig, "Prices against utility, per approach", text, legend_rows=1,
                   plot_px=HEIGHT + 120 * (n_rows - 1))
