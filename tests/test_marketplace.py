"""The blog's table, measured: each column against something exact (explorer.leakage's attacks,
the surrogate's reveal, influence's values, Spearman's rho by scipy), the level rules at their
boundaries, and the figure."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from explorer import plots
from explorer.appraisers import Influence, Surrogate, appraise
from explorer.cli import main
from explorer.leakage.attack import Attack, run_attack
from explorer.leakage.surrogate import surrogate_reveal
from explorer.market import make_market
from explorer.marketplace import (
    APPROACHES,
    BLOG_RATINGS,
    CRITERIA,
    SIZE,
    TARGET_ROWS,
    fairness_level,
    leak_level,
    measure_marketplace,
    practicality_level,
    table_lines,
)
from explorer.tasks import load_task

RANDOM_STATE = 0


@pytest.fixture(scope="module")
def measured():
    return measure_marketplace(quick=True, random_state=RANDOM_STATE)


@pytest.fixture(scope="module")
def rows(measured):
    return measured.table.set_index("approach")


def market_of(measured):
    first = measured.prices[measured.prices.approach == APPROACHES[0][0]]
    return first.sort_values("candidate")


def test_every_approach_sits_beside_the_blogs_row_and_ratings(measured, rows):
    assert list(measured.table.approach) == [a for a, _ in APPROACHES]
    # the blog's table, as the post prints it
    assert BLOG_RATINGS["Giving up data"] == ("High", "Low", "High", "Low")
    assert BLOG_RATINGS["Giving up model"] == ("Low", "High", "High", "Low")
    assert BLOG_RATINGS["Escrow smart contract"] == ("Medium", "Medium", "Low", "High")
    assert BLOG_RATINGS["Model-Data Efficacy"] == ("Low", "Low", "Medium", "High")
    for approach, blog in APPROACHES:
        assert rows.loc[approach, "blog_row"] == blog
        assert tuple(rows.loc[approach, [f"blog {c}" for c in CRITERIA]]) == BLOG_RATINGS[blog]
    market = market_of(measured)
    assert measured.queries == len(market) == 35
    assert market.kind.value_counts().to_dict() == {"label-noise": 30, "duplicates": 5}


def test_giving_up_leaks_everything_of_what_is_given_up_exactly(rows):
    assert rows.loc["give up the data", "data_error"] == 0.0
    assert rows.loc["give up the model", "model_error"] == 0.0
    assert rows.loc["give up the model", "model_cosine"] == 1.0
    # what is handed over: 35 candidates of 30 rows x (30 features + label); theta and v
    assert rows.loc["give up the data", "bytes"] == 35 * SIZE * 31 * 8
    assert rows.loc["give up the model", "bytes"] == 2 * 31 * 8


def test_the_attacks_are_explorer_leakages_with_the_markets_budget(measured, rows):
    task = load_task("wdbc", random_state=RANDOM_STATE)
    (target,) = make_market(task, "none", 1, TARGET_ROWS, random_state=RANDOM_STATE + 2)
    q = measured.queries
    model_side = run_attack(measured.seed, Attack("data-owner", queries=q), (target.X, target.y))
    data_side = run_attack(measured.seed, Attack("model-owner", queries=q), (target.X, target.y))
    assert rows.loc["give up the data", "model_error"] == model_side.error
    assert rows.loc["give up the model", "data_error"] == data_side.error
    assert data_side.error < 1e-12  # the model owner's crafted weights read G exactly
    assert rows.loc["MPC, value revealed", "data_error"] < 0.05  # fixed point's error only
    assert rows.loc["MPC, bit revealed", "data_revealed"] <= q


@pytest.mark.parametrize("approach, kind", [("surrogate: tree", "tree"),
                                            ("surrogate: logistic", "logistic")])
def test_the_surrogates_reveal_is_computed_as_directly(measured, rows, approach, kind):
    surrogate = Surrogate(kind).fit(measured.seed)
    task = load_task("wdbc", random_state=RANDOM_STATE)
    noisy = make_market(task, "label-noise", 30, SIZE, 0.5, 0.0, random_state=RANDOM_STATE)
    copies = make_market(task, "duplicates", 5, SIZE, 1.0, 1.0, random_state=RANDOM_STATE + 1)
    probe = np.vstack([c.X for c in [*noisy, *copies]])
    direct = surrogate_reveal(measured.seed, surrogate, probe)
    assert rows.loc[approach, "model_error"] == pytest.approx(direct["relative_error"],
                                                              rel=1e-9)
    assert rows.loc[approach, "model_cosine"] == pytest.approx(direct["cosine"], rel=1e-9)
    assert rows.loc[approach, "model_test_agreement"] == direct["test_agreement"]
    assert rows.loc[approach, "bytes"] == surrogate.handed_bytes()
    values = measured.prices[measured.prices.approach == approach].sort_values("candidate")
    direct_values = appraise(surrogate, [(c.X, c.y) for c in [*noisy, *copies]]).values
    assert values.value.to_numpy() == pytest.approx(direct_values, rel=1e-12)


def test_fairness_columns_are_scipys_rho_and_the_duplicates_prices(measured, rows):
    market = market_of(measured)
    influence = appraise(Influence().fit(measured.seed), [
        (c.X, c.y) for c in make_market(load_task("wdbc", random_state=RANDOM_STATE),
                                        "label-noise", 30, SIZE, 0.5, 0.0,
                                        random_state=RANDOM_STATE)]).values
    assert market[market.kind == "label-noise"].value.to_numpy() == pytest.approx(influence,
                                                                                 rel=1e-12)
    for approach, _ in APPROACHES:
        part = measured.prices[measured.prices.approach == approach]
        noisy = part[part.kind == "label-noise"]
        expected = spearmanr(noisy.value, noisy.utility).statistic
        assert rows.loc[approach, "rho_values"] == pytest.approx(expected, rel=1e-12)
        copies = part[part.kind == "duplicates"]
        assert rows.loc[approach, "duplicate_price"] == copies.price.mean() == 0.0
        assert rows.loc[approach, "duplicates_paid"] == 0
        if part[part.kind == "label-noise"].price.nunique() > 1:
            assert rows.loc[approach, "rho_prices"] == pytest.approx(
                spearmanr(noisy.price, noisy.utility).statistic, rel=1e-12)
        else:
            assert math.isnan(rows.loc[approach, "rho_prices"])
    value = measured.prices[measured.prices.approach == "MPC, value revealed"]
    assert value.value.to_numpy() == pytest.approx(market.value.to_numpy(), abs=0.01 * np.abs(
        market.value).max())


def test_simulated_mpc_measures_no_wire(rows):
    for approach in ("MPC, value revealed", "MPC, bit revealed"):
        assert math.isnan(rows.loc[approach, "bytes"])
        assert rows.loc[approach, "practicality"] == "not measured"


def test_levels_and_disagreements_follow_the_rules(rows):
    for approach, row in rows.iterrows():
        assert row["data leakage"] == leak_level(row.data_error)
        assert row["model leakage"] == leak_level(row.model_error)
        assert row["fairness"] == fairness_level(row.rho_prices, row.duplicates_paid)
        differ = [c for c in CRITERIA if row[c] != row[f"blog {c}"]]
        assert row.disagree == ", ".join(differ), approach


def test_level_rules_at_their_boundaries():
    assert [leak_level(e) for e in (0.0, 0.1, 0.1000001, 0.5, 0.51, 7.0, math.nan)] == [
        "High", "High", "Medium", "Medium", "Low", "Low", "not measured"]
    assert practicality_level(10.0, 1e6) == "High"
    assert practicality_level(10.01, 10.0) == practicality_level(0.1, 1.1e6) == "Medium"
    assert practicality_level(601.0, 10.0) == practicality_level(1.0, 2e9) == "Low"
    assert practicality_level(0.1, math.nan) == "not measured"
    assert fairness_level(0.7, 0) == "High" and fairness_level(0.7, 1) == "Medium"
    assert fairness_level(0.4, 0) == "Medium" and fairness_level(0.39, 0) == "Low"
    assert fairness_level(math.nan, 0) == "Low" and fairness_level(0.1, 3) == "Low"


def test_the_lines_and_the_figures(measured):
    lines = table_lines(measured)
    assert len(lines) == len(APPROACHES)
    for line, (approach, blog) in zip(lines, APPROACHES, strict=True):
        assert line.startswith(f"marketplace {approach} (blog row {blog})")
        assert all(f"{c} " in line for c in CRITERIA)
    fig = plots.marketplace_table(measured.table)
    (heat,) = fig.data
    assert list(heat.y) == [a for a, _ in APPROACHES] and list(heat.x) == list(CRITERIA)
    give_up_data = list(heat.y).index("give up the data")
    assert heat.z[give_up_data][0] == 0.0  # all its data leaks: as bad as it gets
    assert heat.z[give_up_data][2] == 1.0  # practicality High: as good as it gets
    for r, (_, row) in enumerate(measured.table.iterrows()):
        for c, criterion in enumerate(CRITERIA):
            assert ("≠" in heat.text[r][c]) == (criterion in row.disagree.split(", "))
    prices = plots.marketplace_prices(measured.prices)
    assert [a.text for a in prices.layout.annotations if a.name != "caption"] == \
        [a for a, _ in APPROACHES]


def test_the_figures_refuse_frames_without_their_columns():
    from explorer.errors import ExplorerError

    with pytest.raises(ExplorerError, match="'blog_row'"):
        plots.marketplace_table(pd.DataFrame({"approach": ["x"]}))
    with pytest.raises(ExplorerError, match="'price'"):
        plots.marketplace_prices(pd.DataFrame({"approach": ["x"], "kind": ["none"],
                                               "utility": [0.1]}))


def test_reproduce_refuses_a_private_configuration_it_cannot_run(tmp_path, capsys):
    code = main(["reproduce", "marketplace", "--quick", "--backend", "crypten", "--mode",
                 "simulated", "--provider", "TTP", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "no dealer" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
