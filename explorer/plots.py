"""Plotly figures drawn from the experiments' tidy DataFrames.

This is the figure layer: data flows task -> market -> appraisers -> experiments -> figures ->
widgets, so this module only reads DataFrames and never imports anything that computes
appraisals. Higher appraisal value = more valuable, everywhere; ranks are 1 for the lowest value.

The frames each figure reads (a missing column raises ExplorerError naming it):

- ``rank_scatter``: candidate, level, utility, accuracy_change, appraiser, value, optional run
  (repeats pooled). Ranks (ties averaged) and Spearman's rho are over the kept rows: those of
  the appraiser, with level in the closed interval ``level_range`` when given.
- ``acquisition_curves``: run, strategy, round, normalised_change. Band: sample sd over runs
  (zero width with a single run).
- ``runtime_bars``: appraiser, backend, plaintext_seconds, private_seconds, optional bytes
  (sent on the wire by all parties and the dealer) and rounds (of the critical path). Rows
  with the same appraiser and backend are summed (per-candidate shares of one session add up
  to the session's cost).
- ``finetune_grid_heatmaps``: batch_size (a number, or 'full', None or NaN for full batch),
  epochs, spearman, seconds. Repeated cells are averaged.
- ``gradient_norm_panels``: panel, level, utility, value (the gradient-norm appraisal).
- ``budget_heatmap``: lr, budget (multiples of influence's runtime), spearman, optional
  influence_spearman (one value, repeated). Repeated cells are averaged.
- ``price_bars``: candidate, kind, level, price, optional utility and accepted (bool; bars of
  candidates not accepted are hatched).

Every figure uses the same template, height and colours (``APPRAISER_COLOURS``,
``BACKEND_COLOURS``, ``KIND_COLOURS``) and reads the same in a Jupyter notebook and in the
standalone HTML file that ``write_html`` writes (plotly.js inlined, no CDN).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy import stats

from explorer.errors import ExplorerError
from explorer.output import write_atomic

TEMPLATE = "plotly_white"
HEIGHT = 420

# Okabe-Ito colours (colour-blind safe): one per appraiser, one per backend.
APPRAISER_COLOURS: dict[str, str] = {
    "influence": "#0072B2",
    "gradient-norm": "#E69F00",
    "finetune": "#009E73",
    "random": "#7F7F7F",
}
BACKEND_COLOURS: dict[str, str] = {
    "plaintext": "#56B4E9",
    "crypten": "#D55E00",
}
# Paul Tol's muted colours: one per corruption kind of the market.
KIND_COLOURS: dict[str, str] = {
    "none": "#117733",
    "label-noise": "#CC6677",
    "imbalance": "#332288",
    "missing-features": "#DDCC77",
    "duplicates": "#88CCEE",
    "feature-noise": "#AA4499",
}
UTILITY_COLOUR = "#222222"  # the ground truth (utility by retraining)
FALLBACK_COLOURS = ("#44AA99", "#882255", "#999933", "#661100", "#6699CC", "#CC79A7")
LEVEL_COLOURSCALE = "Viridis"  # continuous: corruption level
RHO_COLOURSCALE = "RdBu"  # diverging, fixed to [-1, 1]: Spearman's rho (blue = agrees)
SECONDS_COLOURSCALE = "Viridis"  # continuous: runtime
# Figures with a secondary y axis put their legend under the plot: on the right it can cover
# the secondary axis' title.
BOTTOM_LEGEND = {"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom",
                 "x": 0.5, "xanchor": "center"}


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


def _spearman(values: Sequence[float], reference: Sequence[float]) -> float:
    """Spearman's rho (scipy); NaN when fewer than two points or either side is constant."""
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    if len(values) < 2 or np.ptp(values) == 0 or np.ptp(reference) == 0:
        return float("nan")
    return float(stats.spearmanr(values, reference).statistic)


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


def _layout(fig: go.Figure, title: str, **kwargs: object) -> go.Figure:
    """Apply the common template, height and title."""
    fig.update_layout(template=TEMPLATE, height=HEIGHT, title={"text": title, "x": 0.02},
                      **kwargs)
    return fig


def rank_scatter(results: pd.DataFrame, appraiser: str = "influence", against: str = "utility",
                 level_range: tuple[float, float] | None = None,
                 title: str | None = None) -> go.Figure:
    """Draw a scatter of value rank vs ground-truth rank for one appraiser, coloured by level."""
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
    rho = _rho_text(_spearman(kept["value"], kept[against]))
    heading = f"{appraiser} vs {against}{scope}: {rho}"
    if title is not None:
        heading = f"{title} ({heading})"

    x = kept[against].rank(method="average").to_numpy(float)
    y = kept["value"].rank(method="average").to_numpy(float)
    hover = [("candidate", "candidate", ""), ("run", "run", ""), ("level", "level", ":.3g"),
             ("value", "value", ":.4g"), ("utility", "utility (nats)", ":.4g")]
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
    fig.update_xaxes(title_text=f"rank of {against} (1 = lowest)")
    fig.update_yaxes(title_text=f"rank of {appraiser} value (1 = lowest)")
    return _layout(fig, heading, showlegend=False)


def acquisition_curves(curves: pd.DataFrame,
                       title: str = "Greedy acquisition by influence vs random") -> go.Figure:
    """Draw the mean normalised test-loss change per acquisition round and strategy, ±1 sd."""
    _require(curves, ["run", "strategy", "round", "normalised_change"], "acquisition_curves")
    summary = (curves.groupby(["strategy", "round"], sort=False)["normalised_change"]
               .agg(["mean", "std", "count"]).reset_index())
    summary["std"] = summary["std"].fillna(0.0)
    strategies = _ordered(curves["strategy"], APPRAISER_COLOURS)
    colours = _colours(strategies, APPRAISER_COLOURS)
    fig = go.Figure()
    for strategy in strategies:
        s = summary[summary["strategy"] == strategy].sort_values("round")
        rounds = s["round"].to_numpy()
        mean, sd = s["mean"].to_numpy(float), s["std"].to_numpy(float)
        # Band first so that the line is drawn over it: upper edge forwards, lower edge back.
        fig.add_trace(go.Scatter(
            x=np.concatenate([rounds, rounds[::-1]]),
            y=np.concatenate([mean + sd, (mean - sd)[::-1]]),
            fill="toself", fillcolor=_rgba(colours[strategy], 0.2), line={"width": 0},
            mode="lines", name=f"{strategy} ± 1 sd", legendgroup=strategy,
            showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=rounds, y=mean, mode="lines+markers", name=strategy, legendgroup=strategy,
            line={"color": colours[strategy], "width": 2}, marker={"size": 7},
            customdata=np.column_stack([sd, s["count"].to_numpy()]),
            hovertemplate=f"{strategy}<br>round %{{x}}<br>mean %{{y:.3g}}"
                          "<br>sd %{customdata[0]:.3g} over %{customdata[1]} runs<extra></extra>"))
    fig.update_xaxes(title_text="round (datasets acquired)")
    if curves["round"].max() <= 20:
        fig.update_xaxes(tickmode="linear", dtick=1)  # whole rounds only
    fig.update_yaxes(title_text="normalised test-loss change")
    return _layout(fig, title, legend={"title": {"text": "strategy"}})


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
    fig.add_annotation(text="lower = more of the other side's secret recovered; rounding and "
                       "noise simulated on the revealed values", xref="paper", yref="paper",
                       x=0, y=-0.28, showarrow=False, font={"size": 11})
    return _layout(fig, title, legend={"title": {"text": "reveal, defence"}},
                   margin={"b": 110})


def runtime_bars(breakdown: pd.DataFrame) -> go.Figure:
    """Draw bars of plaintext and encrypted seconds per appraiser, one panel per backend, log y."""
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

    # Grouped, not stacked: on a log axis a stacked segment's height is log(a + b) - log(a),
    # which says nothing about b, and the bottom segment starts at 0 (= -infinity), so plotly
    # draws it from the axis' lower edge; side-by-side bars keep each part's length readable.
    fig = make_subplots(rows=1, cols=len(backends), shared_yaxes=True,
                        subplot_titles=[f"backend: {b}" for b in backends]
                        if len(backends) > 1 else None)
    shown: set[str] = set()
    for col, backend in enumerate(backends, start=1):
        rows = totals[totals["backend"] == backend].set_index("appraiser")
        rows = rows.reindex([a for a in appraisers if a in rows.index])
        hover_extra, custom = "", []
        for i, c in enumerate(extras):
            fmt = ":.2f} MB" if c == "bytes" else ":.0f}"
            label = "sent on the wire" if c == "bytes" else "rounds (critical path)"
            hover_extra += f"<br>{label}: %{{customdata[{i}]{fmt}"
            custom.append(rows[c].to_numpy(float))
        for column, (name, colour) in parts.items():
            seconds = rows[column].to_numpy(float)
            if not np.any(seconds > 0):
                continue  # e.g. no encrypted part in plaintext; a log axis cannot show 0
            fig.add_trace(go.Bar(
                x=rows.index.to_list(), y=seconds, name=name, legendgroup=name,
                showlegend=name not in shown, marker_color=colour,
                customdata=np.column_stack(custom) if custom else None,
                hovertemplate=f"%{{x}} ({backend})<br>{name}: %{{y:.3g}} s{hover_extra}"
                              "<extra></extra>"), row=1, col=col)
            shown.add(name)
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="seconds (log scale)", row=1, col=1)
    fig.update_xaxes(title_text="appraiser")
    title = "Appraisal runtime: plaintext and encrypted parts"
    if len(backends) == 1:
        title += f" ({backends[0]})"
    return _layout(fig, title, barmode="group", legend={"title": {"text": "part"}})


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
    """Draw two heatmaps over batch size x epochs: fine-tuning's Spearman rho and its seconds."""
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
    return _layout(fig, "Fine-tuning grid: rank agreement with utility and runtime")


def gradient_norm_panels(frame: pd.DataFrame) -> go.Figure:
    """Draw the gradient-norm value and the utility against corruption level, one panel each."""
    _require(frame, ["panel", "level", "utility", "value"], "gradient_norm_panels")
    panels = list(dict.fromkeys(frame["panel"]))
    subsets = {p: frame[frame["panel"] == p].sort_values("level", kind="stable") for p in panels}
    titles = [f"{p}: {_rho_text(_spearman(s['value'], s['utility']))}"
              for p, s in subsets.items()]
    spacing = min(0.12, 0.9 / (len(panels) - 1)) if len(panels) > 1 else 0.0
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles,
                        horizontal_spacing=spacing,
                        specs=[[{"secondary_y": True}] * len(panels)])
    value_colour = APPRAISER_COLOURS["gradient-norm"]
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
            x=s["level"], y=s["utility"], mode=mode, name="utility", legendgroup="utility",
            showlegend=first, line={"color": UTILITY_COLOUR, "dash": "dash"},
            marker={"color": UTILITY_COLOUR, "size": 7, "symbol": "diamond"},
            hovertemplate=f"{panel}<br>level %{{x:.3g}}<br>utility %{{y:.4g}} nats"
                          "<extra></extra>"), row=1, col=col, secondary_y=True)
    fig.update_xaxes(title_text="corruption level")
    fig.update_yaxes(secondary_y=False, color=value_colour)
    fig.update_yaxes(secondary_y=True, color=UTILITY_COLOUR, showgrid=False)
    fig.update_yaxes(title_text="gradient norm ‖G‖₂ (nats per unit θ)", row=1, col=1,
                     secondary_y=False)
    fig.update_yaxes(title_text="utility (nats)", row=1, col=len(panels), secondary_y=True)
    return _layout(fig, "Gradient norm and utility against corruption level",
                   legend=BOTTOM_LEGEND, margin={"t": 80, "b": 110})


def budget_heatmap(frame: pd.DataFrame) -> go.Figure:
    """Draw a heatmap of fine-tuning's Spearman rho by learning rate and time budget."""
    _require(frame, ["lr", "budget", "spearman"], "budget_heatmap")
    lrs = [_number_label(v) for v in sorted(set(frame["lr"].astype(float)))]
    budgets = [f"{_number_label(v)}x" for v in sorted(set(frame["budget"].astype(float)))]
    cells = pd.DataFrame({"lr": [_number_label(v) for v in frame["lr"]],
                          "budget": [f"{_number_label(v)}x" for v in frame["budget"]],
                          "spearman": frame["spearman"].to_numpy(float)})
    z = _grid(cells, "lr", "budget", ["spearman"], lrs, budgets)["spearman"]
    title = "Fine-tuning's Spearman ρ with utility by learning rate and budget"
    if "influence_spearman" in frame.columns:
        reference = frame["influence_spearman"].dropna().unique()
        if len(reference) > 1:
            raise ExplorerError(f"influence_spearman must be one value repeated, not "
                                f"{len(reference)} different values.")
        if len(reference) == 1:
            title += f" (influence: {_rho_text(float(reference[0]))})"
    fig = go.Figure(go.Heatmap(
        z=z, x=budgets, y=lrs, zmin=-1, zmax=1, colorscale=RHO_COLOURSCALE,
        text=[[f"{v:.2f}" if np.isfinite(v) else "" for v in r] for r in z],
        texttemplate="%{text}", name="Spearman ρ", colorbar={"title": {"text": "ρ"}},
        hovertemplate="learning rate %{y}<br>budget %{x}<br>ρ = %{z:.3f}<extra></extra>"))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=budgets,
                     title_text="time budget (multiples of influence's runtime)")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=lrs,
                     title_text="learning rate (step size)")
    return _layout(fig, title)


def price_bars(prices: pd.DataFrame) -> go.Figure:
    """Draw a bar of price per candidate coloured by kind, with utility markers if present."""
    _require(prices, ["candidate", "kind", "level", "price"], "price_bars")
    rows = prices.sort_values(["kind", "level", "candidate"], kind="stable")
    order = [str(c) for c in rows["candidate"]]
    has_utility = "utility" in rows.columns
    has_accepted = "accepted" in rows.columns
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    kinds = list(dict.fromkeys(rows["kind"]))
    colours = _colours(kinds, KIND_COLOURS)
    for kind in kinds:
        k = rows[rows["kind"] == kind]
        hover = [("level", ":.3g")]
        custom = [k["level"].to_numpy(float)]
        if has_utility:
            hover.append(("utility (nats)", ":.4g"))
            custom.append(k["utility"].to_numpy(float))
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
    if has_utility:
        fig.add_trace(go.Scatter(
            x=order, y=rows["utility"].to_numpy(float), mode="markers", name="utility",
            marker={"color": UTILITY_COLOUR, "symbol": "diamond", "size": 8},
            hovertemplate="candidate %{x}<br>utility %{y:.4g} nats<extra></extra>"),
            secondary_y=True)
        fig.update_yaxes(title_text="utility (nats)", secondary_y=True, showgrid=False)
    x_title = "candidate (sorted by kind, then level)"
    if has_accepted:
        x_title += "; hatched = not accepted"
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order,
                     title_text=x_title)
    fig.update_yaxes(title_text="price (currency units)", secondary_y=False)
    # Each candidate has one bar, so stacking ("relative") keeps bars full width; "group"
    # would reserve a slot per kind at every candidate.
    return _layout(fig, "Prices of the candidate datasets", barmode="relative",
                   legend=BOTTOM_LEGEND, margin={"t": 80, "b": 110})


def paper_comparison_bars(frame: pd.DataFrame, title: str = "Ours beside the paper") -> go.Figure:
    """Our mean (with a ±1 sd error bar) beside the paper's figure, one pair of bars per setting.

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
    return _layout(fig, title, barmode="group")


def placeholder(message: str) -> go.Figure:
    """An empty figure carrying a message, shown before any result exists."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper",
                       yref="paper", font={"size": 14, "color": "#777777"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "")


def write_html(fig: go.Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a standalone HTML page with plotly.js inlined (no CDN), atomically."""
    if not isinstance(fig, go.Figure):
        raise ExplorerError(f"write_html needs a plotly Figure, not {type(fig).__name__}.")
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    return write_atomic(path, lambda f: f.write(html))
