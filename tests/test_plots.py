"""The figure layer: each figure drawn from a small synthetic frame of its schema."""

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
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


def by_model(results):
    """The same candidates under two seed models: run 0 as the logistic model's, run 1 as an
    mlp's with influence only (a family without finetune)."""
    logistic = results[results.run == 0].assign(model="logistic", description="logistic 30-2")
    mlp = results[(results.run == 1) & (results.appraiser == "influence")].assign(
        model="mlp", description="mlp 30-8-2 silu")
    return pd.concat([logistic, mlp], ignore_index=True).drop(columns="run")


def test_model_correlation_bars_are_each_models_rho(results):
    frame = by_model(results)
    fig = plots.model_correlation_bars(frame)
    assert [t.name for t in fig.data] == ["logistic 30-2", "mlp 30-8-2 silu"]
    for trace, model in zip(fig.data, ("logistic", "mlp"), strict=True):
        assert list(trace.x) == ["influence", "finetune"]
        for appraiser, height in zip(trace.x, trace.y, strict=True):
            rows = frame[(frame.model == model) & (frame.appraiser == appraiser)]
            if rows.empty:
                assert height is None or np.isnan(height)
            else:
                assert height == pytest.approx(stats.spearmanr(rows.value, rows.utility)
                                               .statistic)
    assert "no bar: finetune (mlp 30-8-2 silu)" in plots.caption(fig)
    with pytest.raises(ExplorerError, match="model"):
        plots.model_correlation_bars(frame.drop(columns="model"))


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
    assert fig.layout.height > plots.HEIGHT  # the plot area's height plus the caption's
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
        for strategy, slope in (("influence", 0.2), ("random", 0.05)):
            for rnd in range(6):
                change = 0.0 if rnd == 0 else slope * rnd + rng.normal(0, 0.05)
                rows.append({"run": run, "strategy": strategy, "round": rnd,
                             "relative_reduction": change})
    return pd.DataFrame(rows)


def test_acquisition_curves_mean_lines_and_sd_bands(curves):
    fig = plots.acquisition_curves(curves)
    assert title_of(fig) == "Greedy acquisition by influence vs random"
    assert fig.layout.xaxis.title.text == "round (candidates acquired)"
    assert fig.layout.yaxis.title.text == ("test-loss reduction (% of the seed model's test "
                                           "loss)")
    assert "Higher is better" in plots.caption(fig)
    lines = [t for t in fig.data if t.showlegend is not False]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [t.name for t in lines] == ["greedy by influence", "random"]
    assert len(bands) == 2 and all(t.showlegend is False for t in bands)
    for line, band in zip(lines, bands, strict=True):
        strategy = line.legendgroup
        values = np.array([curves[(curves["strategy"] == strategy) & (curves["round"] == r)]
                           ["relative_reduction"].to_numpy() for r in range(6)])  # rounds x runs
        mean, sd = 100 * values.mean(axis=1), 100 * values.std(axis=1, ddof=1)  # percent
        assert "lines" in line.mode and "markers" in line.mode
        np.testing.assert_array_equal(line.x, np.arange(6))
        np.testing.assert_allclose(line.y, mean)
        band_y = np.asarray(band.y, float)
        np.testing.assert_allclose(band_y[:6], mean + sd)
        np.testing.assert_allclose(band_y[6:], (mean - sd)[::-1])
        np.testing.assert_array_equal(band.x, np.r_[np.arange(6), np.arange(6)[::-1]])
        colour = plots.APPRAISER_COLOURS[strategy]
        assert line.line.color == colour
        rgb = ", ".join(str(int(colour[i:i + 2], 16)) for i in (1, 3, 5))
        assert band.fillcolor == f"rgba({rgb}, 0.2)"
    assert sd[1:].min() > 0  # the bands have width
    # higher is better: the strategy that reduces the loss more is drawn above
    influence, random = lines
    assert np.all(np.asarray(influence.y)[1:] > np.asarray(random.y)[1:])


def test_acquisition_curves_oracle_is_dashed_and_named_ground_truth(curves):
    oracle = curves[curves["strategy"] == "influence"].assign(strategy="oracle")
    fig = plots.acquisition_curves(pd.concat([curves, oracle]))
    (line,) = [t for t in fig.data if t.legendgroup == "oracle" and t.showlegend is not False]
    assert line.line.dash == "dash" and "ground truth" in line.name
    assert "only a simulation can know this" in plots.caption(fig)


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


def test_runtime_bars_linear_axis_labels_facets_and_parts(breakdown):
    fig = plots.runtime_bars(breakdown)
    axes = [fig.layout[k] for k in fig.layout if k.startswith("yaxis")]
    assert len(axes) == 2 and all(a.type in (None, "linear") for a in axes)
    assert fig.layout.yaxis.title.text == "seconds"
    assert fig.layout.yaxis.range[1] > 6.16  # room above the tallest bar for its label
    assert fig.layout.barmode == "group"
    assert all(t.type == "bar" for t in fig.data)
    # plaintext panel: only a plaintext part (no empty encrypted bars labelled 0 s)
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
    assert list(encrypted.text) == ["0.19 s", "0.55 s", "6.16 s"]  # readable however short
    assert encrypted.textposition == "outside"
    assert "sent on the wire" in encrypted.hovertemplate
    assert "rounds on the critical path" in encrypted.hovertemplate
    # the encrypted panel names each appraiser's communication under it; plaintext sends none
    assert list(fig.layout.xaxis2.ticktext) == ["influence<br>2.3 MB sent<br>105 rounds",
                                                "gradient-norm<br>2.4 MB sent<br>293 rounds",
                                                "finetune<br>109 MB sent<br>3513 rounds"]
    assert fig.layout.xaxis.ticktext is None
    assert "bytes sent on the wire" in plots.caption(fig)
    assert encrypted.marker.color != by_panel["x2"][0].marker.color
    assert [t.showlegend for t in fig.data] == [True, False, True]
    titles = [a.text for a in fig.layout.annotations if a.name != "caption"]
    assert titles == ["backend: plaintext", "backend: crypten"]


def test_runtime_bars_sums_shares_and_works_without_costs(breakdown):
    shares = pd.concat([breakdown, breakdown]).drop(columns=["bytes", "rounds"])
    fig = plots.runtime_bars(shares[shares["backend"] == "crypten"])
    assert len(fig.data) == 2
    np.testing.assert_allclose(fig.data[1].y, [0.38, 1.10, 12.32])
    assert fig.layout.xaxis.ticktext is None and "on the wire" not in plots.caption(fig)
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
    assert [t.name for t in fig.data] == ["gradient norm", "utility (ground truth)"] * 2
    assert "surprises the model, not how much it helps" in plots.caption(fig)
    titles = [a.text for a in fig.layout.annotations if a.name != "caption"]
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
    assert fig.layout.yaxis4.title.text == "utility (nats, ground truth)"
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
                         "value": rng.normal(0, 0.1, 7), "threshold": 0.05,
                         "accepted": [True, False, True, True, False, True, False]})


def test_price_bars_order_colours_and_utility(prices):
    fig = plots.price_bars(prices.drop(columns="threshold"))
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
    value, utility = [t for t in fig.data if t.type == "scatter"]
    assert utility.yaxis == value.yaxis == "y2" and utility.name == "utility (ground truth)"
    np.testing.assert_allclose(utility.y, prices.loc[[2, 4, 3, 6, 0, 1, 5], "utility"])
    np.testing.assert_allclose(value.y, prices.loc[[2, 4, 3, 6, 0, 1, 5], "value"])
    assert fig.layout.yaxis2.title.text == "nats of test-loss reduction"
    assert not [s for s in fig.layout.shapes if s.name == "threshold"]  # none given


def test_price_bars_draw_the_threshold_on_the_value_axis(prices):
    for fig in (plots.price_bars(prices), plots.price_bars(prices.drop(columns="threshold"),
                                                           threshold=0.05)):
        (line,) = [s for s in fig.layout.shapes if s.name == "threshold"]
        assert line.yref == "y2" and line.y0 == line.y1 == 0.05
        assert (line.xref, line.x0, line.x1) == ("x domain", 0, 1)  # across the whole plot
        assert any(t.name == "threshold 0.05 nats" for t in fig.data)  # named in the legend
        assert "threshold (0.05 nats)" in plots.caption(fig)
    with pytest.raises(ExplorerError, match="one value"):
        plots.price_bars(prices.assign(threshold=np.arange(7.0)))


def test_price_bars_without_optional_columns(prices):
    fig = plots.price_bars(prices.drop(columns=["utility", "accepted", "value", "threshold"]))
    assert all(t.type == "bar" for t in fig.data) and len(fig.data) == 3
    assert all(t.marker.pattern.shape is None for t in fig.data)


# --- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize(("function", "frame", "missing"), [
    (plots.rank_scatter, pd.DataFrame({"candidate": [0], "level": [0.0], "appraiser": ["a"]}),
     ["utility", "value"]),
    (plots.acquisition_curves, pd.DataFrame({"run": [0], "round": [0]}),
     ["strategy", "relative_reduction"]),
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


# --- captions ---------------------------------------------------------------------------------

@pytest.fixture
def bits():
    """Bit-mode results: 6 candidates, two appraisers on different scales, each its threshold."""
    utility = [0.3, -0.2, 0.1, 0.5, -0.4, 0.0]
    rows = []
    for appraiser, threshold, accepted in (("influence", 0.02, [1, 0, 1, 1, 0, 0]),
                                           ("gradient-norm", 9.1, [0, 1, 0, 0, 1, 1])):
        for candidate, (u, bit) in enumerate(zip(utility, accepted, strict=True)):
            rows.append({"candidate": candidate, "appraiser": appraiser, "value": float(bit),
                         "utility": u, "threshold": threshold, "accepted": bool(bit),
                         "price": 50.0 if bit else 0.0})
    return pd.DataFrame(rows)


@pytest.fixture
def figures(results, curves, breakdown, grid, norms, prices, bits):
    """Every figure function's output, by function name."""
    leak = pd.DataFrame({"attacker": ["data-owner"] * 3, "reveal": "value", "defence": "none",
                         "queries": [1, 10, 100], "relative_error": [1.0, 0.1, 1e-7]})
    budget = pd.DataFrame({"lr": [0.1, 0.1], "budget": [1, 4], "steps": [1, 2],
                           "spearman": [0.5, 0.9]})
    paper = pd.DataFrame({"setting": ["none"], "mean": [0.8], "sd": [0.1], "paper_mean": [0.88]})
    buying = pd.DataFrame({
        "strategy": ["greedy"] * 2 + ["random"] * 4 + ["oracle"] * 2,
        "method": ["influence value per price"] * 2 + ["uniform among affordable"] * 4
        + ["knapsack: every affordable subset"] * 2,
        "run": [0, 0, 0, 0, 1, 1, 0, 0], "round": [0, 1, 0, 1, 0, 1, 0, 1],
        "candidate": [-1, 2, -1, 0, -1, 1, -1, 2],
        "price": [0.0, 20.0, 0.0, 30.0, 0.0, 25.0, 0.0, 20.0],
        "spent": [0.0, 20.0, 0.0, 30.0, 0.0, 25.0, 0.0, 20.0],
        "test_loss": [0.2, 0.15, 0.2, 0.25, 0.2, 0.22, 0.2, 0.15], "budget": 50.0})
    market = pd.DataFrame({"approach": ["give up the data", "surrogate: tree"],
                           "blog_row": ["Giving up data", "Model-Data Efficacy"],
                           **{c: ["High", "not measured"] for c in plots.MARKET_CRITERIA},
                           **{f"blog {c}": ["High", "Low"] for c in plots.MARKET_CRITERIA},
                           **{f"{c} measured": ["error 0", "-"] for c in plots.MARKET_CRITERIA}})
    market_prices = pd.DataFrame({"approach": ["a", "a", "b"], "kind": ["none", "duplicates",
                                                                        "none"],
                                  "utility": [0.1, 0.2, 0.1], "price": [3.0, 0.0, 1.0]})
    return {
        "rank_scatter": plots.rank_scatter(results),
        "correlation_table": plots.correlation_table(results),
        "model_correlation_bars": plots.model_correlation_bars(by_model(results)),
        "acquisition_curves": plots.acquisition_curves(curves),
        "budget_curves": plots.budget_curves(buying),
        "leakage_curves": plots.leakage_curves(leak),
        "runtime_bars": plots.runtime_bars(breakdown),
        "run_timeline": plots.run_timeline(pd.DataFrame({
            "phase": ["ground truth", "appraisal", "other"], "appraiser": ["", "influence", ""],
            "part": ["ground truth", "encrypted computation", "other"],
            "seconds": [1.0, 2.0, 0.1]})),
        "finetune_grid_heatmaps": plots.finetune_grid_heatmaps(grid),
        "gradient_norm_panels": plots.gradient_norm_panels(norms),
        "budget_heatmap": plots.budget_heatmap(budget),
        "price_bars": plots.price_bars(prices),
        "bit_decisions": plots.bit_decisions(bits),
        "flat_price_bars": plots.flat_price_bars(bits),
        "paper_comparison_bars": plots.paper_comparison_bars(paper),
        "placeholder": plots.placeholder("Press Run to appraise the market."),
        "marketplace_table": plots.marketplace_table(market),
        "marketplace_prices": plots.marketplace_prices(market_prices),
    }


def test_every_figure_function_is_covered(figures):
    """A new figure function must join the caption checks below."""
    made = {name for name, f in vars(plots).items() if callable(f) and not name.startswith("_")
            and getattr(f, "__module__", "") == plots.__name__
            and f.__annotations__.get("return") == "go.Figure"}
    assert made == set(figures)


def test_every_figure_carries_its_caption_under_the_plot(figures, tmp_path):
    for name, fig in figures.items():
        text = plots.caption(fig)
        assert len(text) > 10, name
        (note,) = [a for a in fig.layout.annotations if a.name == "caption"]
        assert note.text.replace("<br>", " ") == " ".join(text.split()), name  # wrapped only
        assert note.yref == "paper" and note.y == 0 and note.yshift < 0, name  # below the plot
        # the bottom margin holds the axis, the legend and every caption line
        lines = note.text.count("<br>") + 1
        assert fig.layout.margin.b >= lines * plots.CAPTION_LINE_PX, name
        assert all(len(line) <= plots.CAPTION_CHARS for line in note.text.split("<br>")), name
        html = plots.write_html(fig, tmp_path / f"{name}.html").read_text(encoding="utf-8")
        # the caption's first plain-ASCII words (the HTML escapes ρ, quotes and the like)
        words = re.match(r"[A-Za-z0-9 ,:;()=+-]*", note.text).group(0)
        assert len(words) >= 8 and words in html, name
    assert plots.caption(go.Figure()) == ""


def test_captions_say_which_way_is_better(figures):
    for name in ("rank_scatter", "correlation_table", "acquisition_curves", "budget_curves",
                 "finetune_grid_heatmaps", "budget_heatmap", "paper_comparison_bars",
                 "marketplace_table", "marketplace_prices", "model_correlation_bars"):
        assert "better" in plots.caption(figures[name]), name
    for name in ("runtime_bars", "leakage_curves"):
        assert "lower" in plots.caption(figures[name]).lower(), name


def test_utility_is_ground_truth_wherever_it_appears(figures):
    for name in ("rank_scatter", "correlation_table", "model_correlation_bars",
                 "finetune_grid_heatmaps",
                 "gradient_norm_panels", "budget_heatmap", "price_bars", "bit_decisions",
                 "flat_price_bars", "paper_comparison_bars", "marketplace_table",
                 "marketplace_prices"):
        assert plots.GROUND_TRUTH in plots.caption(figures[name]), name
    assert plots.GROUND_TRUTH in figures["rank_scatter"].layout.xaxis.title.text


def test_gradient_norm_sign_is_explained_in_scatter_and_table(results):
    frame = results.replace({"appraiser": {"finetune": "gradient-norm"}})
    fig = plots.rank_scatter(frame, appraiser="gradient-norm")
    assert plots.GRADIENT_NORM_TEXT in plots.caption(fig)
    assert plots.GRADIENT_NORM_TEXT not in plots.caption(plots.rank_scatter(frame))
    table = plots.correlation_table(frame)
    assert plots.GRADIENT_NORM_TEXT in plots.caption(table)
    appraisers, rhos, readings = table.data[0].cells["values"]
    assert list(appraisers) == ["influence", "gradient-norm"]
    assert "surprise, not helpfulness" in readings[1]
    kept = frame[frame["appraiser"] == "gradient-norm"]
    assert rhos[1] == f"{stats.spearmanr(kept['value'], kept['utility']).statistic:+.3f}"


def test_rank_scatter_explains_tied_ranks_of_bits(results):
    as_bits = results.assign(value=(results["value"] > 0).astype(float))
    assert plots.TIES_TEXT in plots.caption(plots.rank_scatter(as_bits))
    assert plots.TIES_TEXT not in plots.caption(plots.rank_scatter(results))


# --- bit mode ---------------------------------------------------------------------------------

def test_bit_decisions_per_appraiser_thresholds_and_order(bits):
    fig = plots.bit_decisions(bits)
    utility, accepted, rejected = fig.data
    assert utility.type == "bar" and "ground truth" in utility.name
    assert list(utility.x) == ["3", "0", "2", "5", "1", "4"]  # highest utility first
    labels = list(fig.layout.yaxis2.categoryarray)
    assert labels[1].startswith("influence > 0.02<br>3 of 6 accepted")
    assert labels[0].startswith("gradient-norm > 9.1<br>3 of 6 accepted")
    # influence accepted exactly candidates 0, 2 and 3; gradient-norm 1, 4 and 5
    got = {(x, y.split(" >")[0]) for x, y in zip(accepted.x, accepted.y, strict=True)}
    assert got == {("0", "influence"), ("2", "influence"), ("3", "influence"),
                   ("1", "gradient-norm"), ("4", "gradient-norm"), ("5", "gradient-norm")}
    assert len(rejected.x) == 6 and accepted.name == "accepted" and rejected.name == "rejected"
    assert plots.TIES_TEXT in plots.caption(fig)
    # the same from an argument instead of the column
    again = plots.bit_decisions(bits.drop(columns="threshold"),
                                {"influence": 0.02, "gradient-norm": 9.1})
    assert list(again.layout.yaxis2.categoryarray) == labels


def test_bit_views_refuse_one_missing_threshold_and_values(bits):
    with pytest.raises(ExplorerError, match=r"threshold per appraiser.*gradient-norm"):
        plots.bit_decisions(bits.drop(columns="threshold"), {"influence": 0.02})
    with pytest.raises(ExplorerError, match="threshold per appraiser"):
        plots.flat_price_bars(bits.drop(columns="threshold"))
    with pytest.raises(ExplorerError, match="bits"):
        plots.bit_decisions(bits.assign(value=bits["value"] * 0.3))


def test_flat_price_bars_tie_the_accepted_and_name_each_threshold(bits):
    fig = plots.flat_price_bars(bits)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["influence (threshold 0.02): 3 of 6 bought",
                                      "gradient-norm (threshold 9.1): 3 of 6 bought"]
    for t in bars:
        assert set(t.y) == {0.0, 50.0}  # one flat price: every accepted candidate ties
        assert [s == "" for s in t.marker.pattern.shape] == [y > 0 for y in t.y]
    (utility,) = [t for t in fig.data if t.type == "scatter"]
    assert utility.yaxis == "y2" and list(utility.x) == ["3", "0", "2", "5", "1", "4"]
    assert "tie" in plots.caption(fig)


def test_value_axes_beside_prices_have_their_own_round_ticks(prices, bits):
    """plotly.js 3 would sync a secondary axis' ticks to the price gridlines (odd values, no
    tick at 0); the nats axes ask for their own."""
    for fig in (plots.price_bars(prices), plots.flat_price_bars(bits)):
        assert fig.layout.yaxis2.tickmode == "auto"


def test_correlation_table_rows_fit_in_its_plot_area(results):
    """Header and rows, each allowed to wrap once, fit between the title's margin and the
    bottom gap: a taller table would scroll and hide its last rows."""
    for frame in (results, results.replace({"appraiser": {"finetune": "gradient-norm"}})):
        fig = plots.correlation_table(frame)
        n = frame["appraiser"].nunique()
        area = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
        assert area >= plots.TABLE_ROW_PX * (n + 1) + plots.TABLE_WRAP_PX * n


# --- notebooks --------------------------------------------------------------------------------

def test_notebook_renderer_also_writes_html(prices):
    before = pio.renderers.default
    try:
        assert plots.use_notebook_renderer() == pio.renderers.default
        bundle = pio.renderers._build_mime_bundle(plots.price_bars(prices).to_dict())
    finally:
        pio.renderers.default = before
    assert "application/vnd.plotly.v1+json" in bundle  # JupyterLab, Voila, VS Code
    assert "plotly-graph-div" in bundle["text/html"]  # nbconvert --to html, nbviewer
