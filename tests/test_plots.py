"""The figure layer: each figure drawn from a small synthetic frame of its schema."""

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy import stats

from explorer import plots
from explorer.errors import ExplorerError

LEVELS = np.round(np.linspace(0.0, 0.55, 12), 2)  # 0, 0.05, ..., 0.55: exact 0.1 and 0.3


@pytest.fixture
def results():
    """3 runs x 12 candidates x 2 appraisers; utilities and influence values rounded (ties)."""
    rng = np.random.default_rng(0)
    rows = []
    for run in range(3):
        utility = np.round(-LEVELS + rng.normal(0, 0.05, LEVELS.size), 2)
        accuracy = -LEVELS / 2 + rng.normal(0, 0.05, LEVELS.size)
        for appraiser, noise in (("influence", 0.05), ("finetune", 0.2)):
            value = utility + rng.normal(0, noise, LEVELS.size)
            if appraiser == "influence":
                value = np.round(value, 1)
            for i in range(LEVELS.size):
                rows.append({"candidate": i, "kind": "label-noise", "level": LEVELS[i],
                             "utility": utility[i], "accuracy_change": accuracy[i],
                             "appraiser": appraiser, "value": value[i], "run": run})
    return pd.DataFrame(rows)


def expected_rho(a, b):
    return f"ρ = {stats.spearmanr(a, b).statistic:.3f}"


def title_of(fig):
    return fig.layout.title.text


# --- rank_scatter -----------------------------------------------------------------------------

def test_rank_scatter_ranks_rho_and_colour(results):
    fig = plots.rank_scatter(results)
    kept = results[results["appraiser"] == "influence"]
    assert len(fig.data) == 1
    trace = fig.data[0]
    assert trace.type == "scatter" and trace.mode == "markers"
    assert len(trace.x) == len(kept) == 36
    np.testing.assert_allclose(trace.x, stats.rankdata(kept["utility"]))
    np.testing.assert_allclose(trace.y, stats.rankdata(kept["value"]))
    for ranks in (trace.x, trace.y):
        assert np.any(np.asarray(ranks) % 1 != 0), "rounded values should give average ranks"
    np.testing.assert_allclose(trace.marker.color, kept["level"])
    assert trace.marker.colorbar.title.text == "corruption level"
    assert title_of(fig) == f"influence vs utility: {expected_rho(kept['value'], kept['utility'])}"
    assert "rank of utility" in fig.layout.xaxis.title.text
    assert "rank of influence value" in fig.layout.yaxis.title.text
    assert fig.layout.height == plots.HEIGHT
    assert fig.layout.template.layout.paper_bgcolor is not None  # a template is applied
    for field in ("candidate", "run", "level", "value", "utility"):
        assert f"{field}:" in trace.hovertemplate or f"{field} (" in trace.hovertemplate
    np.testing.assert_array_equal(np.asarray(trace.customdata)[:, 1], kept["run"])


def test_rank_scatter_level_range_keeps_closed_interval(results):
    fig = plots.rank_scatter(results, appraiser="finetune", level_range=(0.1, 0.3))
    kept = results[(results["appraiser"] == "finetune") & (results["level"] >= 0.1)
                   & (results["level"] <= 0.3)]
    assert len(kept) == 15  # 0.1, 0.15, 0.2, 0.25, 0.3 in each of 3 runs
    trace = fig.data[0]
    assert len(trace.x) == 15
    assert sorted(set(np.round(trace.marker.color, 2))) == [0.1, 0.15, 0.2, 0.25, 0.3]
    np.testing.assert_allclose(sorted(trace.x), sorted(stats.rankdata(kept["utility"])))
    np.testing.assert_allclose(trace.y, stats.rankdata(kept["value"]))
    rho = expected_rho(kept["value"], kept["utility"])
    assert title_of(fig) == f"finetune vs utility, level in [0.1, 0.3]: {rho}"
    # the zoomed rho differs from the pooled one, so the title really is over the kept rows
    all_rows = results[results["appraiser"] == "finetune"]
    assert rho != expected_rho(all_rows["value"], all_rows["utility"])


def test_rank_scatter_against_another_column_and_custom_title(results):
    fig = plots.rank_scatter(results, against="accuracy_change", title="Figure 6a")
    kept = results[results["appraiser"] == "influence"]
    np.testing.assert_allclose(fig.data[0].x, stats.rankdata(kept["accuracy_change"]))
    rho = expected_rho(kept["value"], kept["accuracy_change"])
    assert title_of(fig) == f"Figure 6a (influence vs accuracy_change: {rho})"


def test_rank_scatter_refuses_unknown_appraiser_and_empty_range(results):
    with pytest.raises(ExplorerError, match="gradient-norm"):
        plots.rank_scatter(results, appraiser="gradient-norm")
    with pytest.raises(ExplorerError, match=r"\[0.9, 1\]"):
        plots.rank_scatter(results, level_range=(0.9, 1.0))
    with pytest.raises(ExplorerError, match="low <= high"):
        plots.rank_scatter(results, level_range=(0.3, 0.1))


# --- acquisition_curves -----------------------------------------------------------------------

@pytest.fixture
def curves():
    rng = np.random.default_rng(1)
    rows = []
    for run in range(4):
        for strategy, slope in (("influence", -0.2), ("random", -0.05)):
            for rnd in range(6):
                change = 0.0 if rnd == 0 else slope * rnd + rng.normal(0, 0.05)
                rows.append({"run": run, "strategy": strategy, "round": rnd,
                             "normalised_change": change})
    return pd.DataFrame(rows)


def test_acquisition_curves_mean_lines_and_sd_bands(curves):
    fig = plots.acquisition_curves(curves)
    assert title_of(fig) == "Greedy acquisition by influence vs random"
    assert fig.layout.xaxis.title.text == "round (datasets acquired)"
    assert fig.layout.yaxis.title.text == "normalised test-loss change"
    lines = [t for t in fig.data if t.showlegend is not False]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [t.name for t in lines] == ["influence", "random"]
    assert len(bands) == 2 and all(t.showlegend is False for t in bands)
    for line, band in zip(lines, bands, strict=True):
        values = np.array([curves[(curves["strategy"] == line.name) & (curves["round"] == r)]
                           ["normalised_change"].to_numpy() for r in range(6)])  # rounds x runs
        mean, sd = values.mean(axis=1), values.std(axis=1, ddof=1)
        assert "lines" in line.mode and "markers" in line.mode
        np.testing.assert_array_equal(line.x, np.arange(6))
        np.testing.assert_allclose(line.y, mean)
        band_y = np.asarray(band.y, float)
        np.testing.assert_allclose(band_y[:6], mean + sd)
        np.testing.assert_allclose(band_y[6:], (mean - sd)[::-1])
        np.testing.assert_array_equal(band.x, np.r_[np.arange(6), np.arange(6)[::-1]])
        colour = plots.APPRAISER_COLOURS[line.name]
        assert line.line.color == colour
        rgb = ", ".join(str(int(colour[i:i + 2], 16)) for i in (1, 3, 5))
        assert band.fillcolor == f"rgba({rgb}, 0.2)"
    assert sd[1:].min() > 0  # the bands have width


# --- runtime_bars -----------------------------------------------------------------------------

@pytest.fixture
def breakdown():
    return pd.DataFrame({
        "appraiser": ["influence", "gradient-norm", "finetune"] * 2,
        "backend": ["plaintext"] * 3 + ["crypten"] * 3,
        "plaintext_seconds": [0.02, 0.004, 0.03, 0.02, 0.004, 0.03],
        "private_seconds": [0.0, 0.0, 0.0, 0.19, 0.55, 6.16],
        "bytes": [0, 0, 0, 2.3e6, 2.4e6, 108.8e6],
        "rounds": [0, 0, 0, 105, 293, 3513],
    })


def test_runtime_bars_log_axis_facets_and_parts(breakdown):
    fig = plots.runtime_bars(breakdown)
    axes = [fig.layout[k] for k in fig.layout if k.startswith("yaxis")]
    assert len(axes) == 2 and all(a.type == "log" for a in axes)
    assert fig.layout.yaxis.title.text == "seconds (log scale)"
    assert fig.layout.barmode == "group"
    assert all(t.type == "bar" for t in fig.data)
    # plaintext panel: only a plaintext part (0 s cannot be drawn on a log axis)
    by_panel = {}
    for t in fig.data:
        by_panel.setdefault(t.xaxis, []).append(t)
    assert [t.name for t in by_panel["x"]] == ["plaintext part"]
    assert [t.name for t in by_panel["x2"]] == ["plaintext part", "encrypted part"]
    encrypted = by_panel["x2"][1]
    assert list(encrypted.x) == ["influence", "gradient-norm", "finetune"]
    np.testing.assert_allclose(encrypted.y, [0.19, 0.55, 6.16])
    np.testing.assert_allclose(np.asarray(encrypted.customdata, float)[:, 0], [2.3, 2.4, 108.8])
    np.testing.assert_allclose(np.asarray(encrypted.customdata, float)[:, 1], [105, 293, 3513])
    assert "MB" in encrypted.hovertemplate and "sent on the wire" in encrypted.hovertemplate
    assert "rounds (critical path)" in encrypted.hovertemplate
    assert encrypted.marker.color != by_panel["x2"][0].marker.color
    assert [t.showlegend for t in fig.data] == [True, False, True]
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["backend: plaintext", "backend: crypten"]


def test_runtime_bars_sums_shares_and_works_without_costs(breakdown):
    shares = pd.concat([breakdown, breakdown]).drop(columns=["bytes", "rounds"])
    fig = plots.runtime_bars(shares[shares["backend"] == "crypten"])
    assert len(fig.data) == 2 and fig.layout.yaxis.type == "log"
    np.testing.assert_allclose(fig.data[1].y, [0.38, 1.10, 12.32])
    assert fig.data[1].customdata is None and "MB" not in fig.data[1].hovertemplate
    assert "crypten" in title_of(fig)


# --- finetune_grid_heatmaps -------------------------------------------------------------------

@pytest.fixture
def grid():
    rng = np.random.default_rng(2)
    rows = [{"batch_size": b, "epochs": e, "spearman": rng.uniform(-1, 1),
             "seconds": rng.uniform(0.001, 2000)}
            for b in (128, "full", 8, 16) for e in (10, 2, 1)]
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1, random_state=3).reset_index(drop=True)


def test_finetune_grid_heatmaps_cells_and_order(grid):
    fig = plots.finetune_grid_heatmaps(grid)
    rho, seconds = fig.data
    assert rho.type == seconds.type == "heatmap"
    assert list(rho.x) == ["8", "16", "128", "full"]  # numeric order, not "128" < "16" < "8"
    assert list(rho.y) == ["1", "2", "10"]
    assert (rho.zmin, rho.zmax) == (-1, 1)
    assert fig.layout.xaxis.type == fig.layout.xaxis2.type == "category"
    assert list(fig.layout.xaxis.categoryarray) == list(rho.x)
    for _, row in grid.iterrows():
        i = list(rho.y).index(str(row["epochs"]))
        j = list(rho.x).index(str(row["batch_size"]))
        assert rho.z[i][j] == pytest.approx(row["spearman"])
        assert seconds.z[i][j] == pytest.approx(row["seconds"])
        assert rho.text[i][j] == f"{row['spearman']:.2f}"
        text = seconds.text[i][j]  # 3 significant digits, never exponent notation
        assert "e" not in text and float(text) == float(f"{row['seconds']:.3g}")
        if "." in text:
            assert len(re.sub(r"[^0-9]", "", text).lstrip("0")) == 3
    assert rho.texttemplate == "%{text}"


@pytest.mark.parametrize("full", [None, np.nan, "full"])
def test_finetune_grid_full_batch_spellings(full):
    grid = pd.DataFrame({"batch_size": [4, full], "epochs": [1, 1], "spearman": [0.5, 0.25],
                         "seconds": [1.0, 2.0]})
    fig = plots.finetune_grid_heatmaps(grid)
    assert list(fig.data[0].x) == ["4", "full"]
    np.testing.assert_allclose(fig.data[0].z, [[0.5, 0.25]])


# --- gradient_norm_panels ---------------------------------------------------------------------

@pytest.fixture
def norms():
    rng = np.random.default_rng(4)
    frames = []
    for panel, sign in (("MNIST label noise", 1), ("class imbalance", -1)):
        level = rng.permutation(np.linspace(0, 1, 8))
        frames.append(pd.DataFrame({"panel": panel, "level": level,
                                    "utility": -level + rng.normal(0, 0.1, 8),
                                    "value": sign * level * 100 + rng.normal(0, 10, 8)}))
    return pd.concat(frames, ignore_index=True)


def test_gradient_norm_panels_secondary_axes_and_rho(norms):
    fig = plots.gradient_norm_panels(norms)
    assert len(fig.data) == 4
    assert [t.name for t in fig.data] == ["gradient norm", "utility"] * 2
    titles = [a.text for a in fig.layout.annotations]
    for k, panel in enumerate(["MNIST label noise", "class imbalance"]):
        rows = norms[norms["panel"] == panel]
        value, utility = fig.data[2 * k], fig.data[2 * k + 1]
        assert value.yaxis != utility.yaxis and value.xaxis == utility.xaxis
        assert fig.layout[utility.yaxis.replace("y", "yaxis")].overlaying == value.yaxis
        assert len(value.x) == len(utility.x) == len(rows)
        order = np.argsort(rows["level"].to_numpy())
        np.testing.assert_allclose(value.x, rows["level"].to_numpy()[order])
        np.testing.assert_allclose(value.y, rows["value"].to_numpy()[order])
        np.testing.assert_allclose(utility.y, rows["utility"].to_numpy()[order])
        assert titles[k] == f"{panel}: {expected_rho(rows['value'], rows['utility'])}"
    assert fig.layout.yaxis.title.text.startswith("gradient norm")
    assert fig.layout.yaxis4.title.text == "utility (nats)"
    assert [t.showlegend for t in fig.data] == [True, True, False, False]


# --- budget_heatmap ---------------------------------------------------------------------------

def test_budget_heatmap_cells_and_title():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame([{"lr": lr, "budget": b, "spearman": rng.uniform(-1, 1),
                           "influence_spearman": 0.9639}
                          for lr in (1.0, 0.01, 0.1) for b in (16, 1, 4)])
    fig = plots.budget_heatmap(frame)
    heat = fig.data[0]
    assert heat.type == "heatmap"
    assert list(heat.x) == ["1x", "4x", "16x"]
    assert list(heat.y) == ["0.01", "0.1", "1"]
    assert fig.layout.yaxis.type == "category"
    for _, row in frame.iterrows():
        i, j = list(heat.y).index(f"{row['lr']:g}"), list(heat.x).index(f"{row['budget']:g}x")
        assert heat.z[i][j] == pytest.approx(row["spearman"])
        assert heat.text[i][j] == f"{row['spearman']:.2f}"
    assert "influence: ρ = 0.964" in title_of(fig)
    assert "influence" not in title_of(plots.budget_heatmap(
        frame.drop(columns="influence_spearman")))
    frame.loc[0, "influence_spearman"] = 0.5
    with pytest.raises(ExplorerError, match="one value"):
        plots.budget_heatmap(frame)


# --- price_bars -------------------------------------------------------------------------------

@pytest.fixture
def prices():
    rng = np.random.default_rng(6)
    kinds = ["label-noise", "none", "imbalance", "label-noise", "imbalance", "none", "label-noise"]
    levels = [0.4, 0.0, 0.2, 0.1, 0.6, 0.0, 0.25]
    return pd.DataFrame({"candidate": range(7), "kind": kinds, "level": levels,
                         "price": rng.uniform(1, 10, 7), "utility": rng.normal(0, 0.1, 7),
                         "accepted": [True, False, True, True, False, True, False]})


def test_price_bars_order_colours_and_utility(prices):
    fig = plots.price_bars(prices)
    assert title_of(fig) == "Prices of the candidate datasets"
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["imbalance", "label-noise", "none"]
    assert sum(len(t.x) for t in bars) == len(prices)
    assert list(fig.layout.xaxis.categoryarray) == ["2", "4", "3", "6", "0", "1", "5"]
    for t in bars:
        assert t.marker.color == plots.KIND_COLOURS[t.name]
        for x, y in zip(t.x, t.y, strict=True):
            assert y == pytest.approx(prices.loc[int(x), "price"])
    label_noise = bars[1]
    assert list(label_noise.marker.pattern.shape) == ["", "/", ""]  # candidates 3, 6, 0
    (utility,) = [t for t in fig.data if t.type == "scatter"]
    assert utility.yaxis == "y2" and utility.name == "utility"
    np.testing.assert_allclose(utility.y, prices.loc[[2, 4, 3, 6, 0, 1, 5], "utility"])
    assert fig.layout.yaxis2.title.text == "utility (nats)"


def test_price_bars_without_optional_columns(prices):
    fig = plots.price_bars(prices.drop(columns=["utility", "accepted"]))
    assert all(t.type == "bar" for t in fig.data) and len(fig.data) == 3
    assert all(t.marker.pattern.shape is None for t in fig.data)


# --- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize(("function", "frame", "missing"), [
    (plots.rank_scatter, pd.DataFrame({"candidate": [0], "level": [0.0], "appraiser": ["a"]}),
     ["utility", "value"]),
    (plots.acquisition_curves, pd.DataFrame({"run": [0], "round": [0]}),
     ["strategy", "normalised_change"]),
    (plots.runtime_bars, pd.DataFrame({"appraiser": ["a"], "backend": ["crypten"],
                                       "plaintext_seconds": [1.0]}), ["private_seconds"]),
    (plots.finetune_grid_heatmaps, pd.DataFrame({"epochs": [1], "spearman": [0.1]}),
     ["batch_size", "seconds"]),
    (plots.gradient_norm_panels, pd.DataFrame({"panel": ["p"], "level": [0.0]}),
     ["utility", "value"]),
    (plots.budget_heatmap, pd.DataFrame({"lr": [0.1], "spearman": [0.1]}), ["budget"]),
    (plots.price_bars, pd.DataFrame({"candidate": [0], "kind": ["none"]}), ["level", "price"]),
])
def test_missing_columns_are_named(function, frame, missing):
    with pytest.raises(ExplorerError) as error:
        function(frame)
    message = str(error.value)
    for column in missing:
        assert f"'{column}'" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence


def test_rank_scatter_needs_the_against_column(results):
    with pytest.raises(ExplorerError, match="'truth'"):
        plots.rank_scatter(results, against="truth")


def test_empty_frame_is_refused():
    with pytest.raises(ExplorerError, match="empty"):
        plots.budget_heatmap(pd.DataFrame(columns=["lr", "budget", "spearman"]))


# --- write_html -------------------------------------------------------------------------------

def test_write_html_inlines_plotly_and_leaves_no_temporary_file(tmp_path, prices):
    path = tmp_path / "prices.html"
    assert plots.write_html(plots.price_bars(prices), path) == path
    assert [p.name for p in tmp_path.iterdir()] == ["prices.html"]
    html = path.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert "Prices of the candidate datasets" in html
    assert "plotly.js v" in html and "Plotly.newPlot" in html and len(html) > 1_000_000
    assert not re.search(r"<script[^>]*\bsrc=", html)  # nothing loaded from elsewhere
    # The inlined bundle names cdn.plot.ly once, as the default topojsonURL for geo maps
    # (never fetched without geo traces); no other reference may appear.
    for hit in re.finditer(r"cdn\.plot\.ly", html):
        assert "topojsonURL" in html[hit.start() - 80:hit.start()]


def test_write_html_refuses_a_missing_directory_and_non_figures(tmp_path):
    with pytest.raises(ExplorerError, match="does not exist"):
        plots.write_html(go.Figure(), tmp_path / "nowhere" / "f.html")
    with pytest.raises(ExplorerError, match="Figure"):
        plots.write_html({"data": []}, tmp_path / "f.html")
    assert list(tmp_path.iterdir()) == []
