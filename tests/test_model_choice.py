"""The seed model chosen everywhere: the command line's options, the layers above the seed that
work with a network (checked against the exact answers of their own definitions and against
retraining) and those that refuse it in one sentence, and reproduce with a network."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from explorer import network
from explorer.acquisition import budgeted_acquisition, market_acquisition
from explorer.appraisers import FAMILIES, PlaintextRunner
from explorer.appraisers.influence import influence_vector
from explorer.cli import main
from explorer.config import AppraiserConfig
from explorer.constraints import APPRAISER_NAMES, DEFAULTS
from explorer.errors import ConvergenceWarning, ExplorerError
from explorer.experiments import appraise_market, compare_seed_models
from explorer.jobs import RunSnapshot, buy_within_budget
from explorer.leakage.attack import Attack, run_attack
from explorer.market import make_market
from explorer.market_prices import priced_market
from explorer.metrics import model_correlations, rank_correlations, spearman
from explorer.model import per_sample_grads
from explorer.parties import encoding, read_encoding, write_encoding
from explorer.pricing import PricingRule, own_data_baseline, per_sample_influence
from explorer.seed import LastLayerSeed, NetworkSeed, SeedChoice, model_description
from explorer.tasks import load_task
from explorer.utility import absorb, ground_truth, retrain_network

MLP = SeedChoice("mlp", (8,))
LAST_LAYER = SeedChoice("last-layer", (8,))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def mlp_seed(wdbc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLP.fit(wdbc)


@pytest.fixture(scope="module")
def last_layer_seed(wdbc):
    return LAST_LAYER.fit(wdbc)


@pytest.fixture(scope="module")
def small_market(wdbc):
    return make_market(wdbc, "label-noise", 4, 20, 0.5, 0.0, random_state=1)


# -- the command line ---------------------------------------------------------------------


def test_appraise_an_mlp_on_wdbc_end_to_end(tmp_path, capsys):
    out_csv = tmp_path / "mlp.csv"
    code, out, err = run(capsys, "appraise", "--task", "wdbc", "--model", "mlp", "--hidden", "8",
                         "--corruption", "label-noise", "--candidates", "4", "--size", "20",
                         "--max-level", "0.5", "--random-state", "1", "--out", str(out_csv))
    assert code == 0, err
    assert "seed model: wdbc, mlp 30-8-2 silu, 57 training samples, lam 0.03," in out
    assert "damping delta 0.003 (= 0.1 x lam) in the network's (H + delta I)" in out
    frame = pd.read_csv(out_csv)
    # the defaults that the mlp family defines, whatever FAMILIES holds
    defined = [n for n in DEFAULTS["names"] if n in FAMILIES["mlp"]]
    assert list(dict.fromkeys(frame.appraiser)) == defined and set(frame.model) == {"mlp"}
    rho = {line.split()[1]: float(line.split()[2]) for line in out.splitlines()
           if line.startswith("spearman ")}
    assert set(rho) == set(defined)
    assert rho["influence"] == pytest.approx(
        rank_correlations(frame)["influence"], abs=1e-4)
    # the ground truth, its gradient norm included, is the network's own retraining from θ̂
    task = load_task("wdbc", random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seed = MLP.fit(task)
        first = make_market(task, "label-noise", 4, 20, 0.5, 0.0, random_state=1)[0]
        fit = retrain_network(seed, *seed.check_candidate(first.X, first.y))
    row = frame[(frame.candidate == 0) & (frame.appraiser == "influence")].iloc[0]
    assert row.truth_grad_norm == pytest.approx(fit.grad_norm, rel=1e-6)
    loss = network.mean_loss(seed.architecture, fit.theta, seed.X_test, seed.y_test)
    assert row.utility == pytest.approx(seed.test_loss - loss, rel=1e-9, abs=1e-12)


def test_appraise_a_last_layer_model(tmp_path, capsys):
    out_csv = tmp_path / "ll.csv"
    code, out, err = run(capsys, "appraise", "--task", "wdbc", "--model", "last-layer",
                         "--hidden", "8", "--activation", "relu", "--appraisers",
                         "influence,gradient-norm", "--candidates", "5", "--size", "20",
                         "--corruption", "label-noise", "--max-level", "0.5",
                         "--out", str(out_csv))
    assert code == 0, err
    assert "seed model: wdbc, last-layer 30-8-2 relu," in out
    frame = pd.read_csv(out_csv)
    assert set(frame.model) == {"last-layer"} and len(frame) == 10
    assert {line.split()[1] for line in out.splitlines() if line.startswith("spearman ")} \
        == {"influence", "gradient-norm"}


BAD_OPTIONS = [
    (["--model", "mlp", "--hidden", "0"], "each hidden width must be a whole number between 1 "
                                          "and 4096, got '0'"),
    (["--model", "mlp", "--hidden", "8,8,8"], "expected one or two hidden widths"),
    (["--model", "mlp", "--hidden", "8,x"], "expected one or two whole numbers"),
    (["--model", "cnn"], "invalid choice: 'cnn'"),
    (["--model", "mlp", "--lam", "cv"], "lam cv (cross-validation) is defined for the logistic "
                                        "seed model"),
    (["--hidden", "8"], "--hidden applies only with --model mlp or last-layer; drop it."),
    (["--activation", "relu", "--hidden", "8"], "--hidden, --activation apply only with --model "
                                                "mlp or last-layer; drop them."),
    (["--model", "last-layer", "--damping", "0.5"], "--damping damps the mlp seed model's "
                                                    "Hessian"),
    (["--model", "mlp", "--damping", "-1"], "the network damping must be a number within"),
]


@pytest.mark.parametrize(("options", "sentence"), BAD_OPTIONS)
def test_bad_seed_options_end_in_one_sentence_and_exit_2(capsys, options, sentence):
    code, out, err = run(capsys, "appraise", "--task", "wdbc", *options)
    assert code == 2 and out == ""
    assert sentence in err and len(err.strip().splitlines()) == 1


def test_an_appraiser_the_family_lacks_is_refused_with_its_sentence(capsys, monkeypatch):
    # forced: the mlp family without fine-tuning, as before its definition is registered
    monkeypatch.setitem(FAMILIES, "mlp", {k: v for k, v in FAMILIES["mlp"].items()
                                          if k != "finetune"})
    code, _, err = run(capsys, "appraise", "--task", "wdbc", "--model", "mlp",
                       "--appraisers", "influence,finetune")
    assert code == 2
    assert "the finetune appraiser is not defined for the mlp seed model; choose among" in err
    code, _, err = run(capsys, "reproduce", "table1", "--quick", "--model", "mlp",
                       "--out", "unused")
    assert code == 2 and "the finetune appraiser is not defined for the mlp seed model" in err


REFUSING_COMMANDS = [
    (["acquire", "--task", "wdbc", "--model", "last-layer", "--budget", "50", "--out", "x.csv"],
     "acquisition retrains the whole model; it is defined for the logistic and mlp seed "
     "models, not last-layer."),
    (["attack", "--task", "wdbc", "--model", "mlp", "--attacker", "data-owner", "--out",
      "x.csv"], "the leakage attacks reconstruct a logistic model's theta_hat and influence "
                "weights; they are defined for the logistic seed model, not mlp."),
    (["reproduce", "leakage", "--model", "mlp", "--out", "out"], "defined for the logistic "
                                                                 "seed model, not mlp"),
    (["reproduce", "fig8", "--model", "last-layer", "--out", "out"], "not last-layer"),
    (["reproduce", "pricing", "--runs", "2", "--out", "out"], "--runs applies to table2, fig6, "
                                                               "fig8, not pricing; drop it."),
    (["reproduce", "table2", "--candidates", "1", "--out", "out"], "--candidates must be a "
                                                                   "whole number from 2"),
]


@pytest.mark.parametrize(("argv", "sentence"), REFUSING_COMMANDS)
def test_commands_refuse_what_the_seed_model_cannot_do(tmp_path, monkeypatch, capsys, argv,
                                                       sentence):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2 and sentence in err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_reproduce_table2_with_an_mlp(tmp_path, capsys):
    code, out, err = run(capsys, "reproduce", "table2", "--quick", "--model", "mlp", "--hidden",
                         "4", "--runs", "1", "--candidates", "3", "--out", str(tmp_path))
    assert code == 0, err
    frame = pd.read_csv(tmp_path / "table2.csv")
    assert set(frame.model) == {"mlp"} and len(frame) == 4  # four settings, one run each
    lines = [line for line in out.splitlines() if line.startswith("table2 [mlp, hidden 4, ")]
    assert len(lines) == 4 and all("(1 run)" in line and "paper" in line for line in lines)
    assert (tmp_path / "table2.html").stat().st_size > 100_000
    # the clean setting's rho, by hand: the same task, seed model and market
    task = load_task("wdbc", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seed = SeedChoice("mlp", (4,)).fit(task)
        results = appraise_market(seed, make_market(task, "none", 3, 30, 0.0, 0.0,
                                                    random_state=0),
                                  AppraiserConfig(names=("influence",)))
    clean = frame[frame.setting == "none"].spearman.iloc[0]
    assert clean == pytest.approx(spearman(results.value, results.utility))


# -- the layers above the seed model --------------------------------------------------------


def test_experiments_build_each_appraiser_for_the_seed_models_family(mlp_seed, small_market):
    names = tuple(n for n in APPRAISER_NAMES if n in FAMILIES["mlp"])
    config = AppraiserConfig(names=names)
    frame = appraise_market(mlp_seed, small_market, config)
    assert set(frame.model) == {"mlp"}
    pairs = [(c.X, c.y) for c in small_market]
    for name in names:
        direct = config.appraise(name, mlp_seed, pairs).values
        assert np.array_equal(frame[frame.appraiser == name].value.to_numpy(), direct)


def test_compare_seed_models_gives_each_model_its_own_run(wdbc, small_market):
    config = AppraiserConfig(names=("influence", "gradient-norm"))
    choices = [SeedChoice(), MLP, LAST_LAYER]
    frame = compare_seed_models(wdbc, small_market, choices, config)
    assert list(dict.fromkeys(frame.model)) == ["logistic", "mlp", "last-layer"]
    rhos = model_correlations(frame).set_index(["model", "appraiser"]).spearman
    for choice in choices:
        seed = choice.fit(wdbc)
        alone = appraise_market(seed, small_market, config)
        mine = frame[frame.model == choice.model]
        assert set(mine.description) == {model_description(seed)}
        pd.testing.assert_frame_equal(
            mine[["candidate", "appraiser", "value", "utility"]].reset_index(drop=True),
            alone[["candidate", "appraiser", "value", "utility"]])
        for name, rho in rank_correlations(alone).items():
            assert rhos[(choice.model, name)] == pytest.approx(rho)
    with pytest.raises(ExplorerError, match="bits cannot"):
        compare_seed_models(wdbc, small_market, choices,
                            config.with_(backend="crypten", reveal="bit", mode="simulated",
                                         provider="TFP"))


def test_the_own_data_baseline_is_the_familys_influence_of_own_rows(wdbc_seed, mlp_seed,
                                                                    last_layer_seed, rng):
    # logistic: the closed form g_i · v / n_seed
    closed = (per_sample_grads(wdbc_seed.theta, wdbc_seed.X_train, wdbc_seed.y_train)
              @ influence_vector(wdbc_seed).reshape(-1)).numpy() / wdbc_seed.n_seed
    assert np.allclose(per_sample_influence(wdbc_seed), closed, rtol=1e-9, atol=1e-14)
    for seed in (mlp_seed, last_layer_seed):
        a = per_sample_influence(seed)
        assert a.shape == (seed.n_seed,)
        appraiser = AppraiserConfig().build("influence", seed.family).fit(seed)
        rows = rng.choice(seed.n_seed, 15, replace=False)
        subset = PlaintextRunner().run(
            appraiser, [(seed.X_train[rows], seed.y_train[rows])]).values[0]
        assert a[rows].sum() == pytest.approx(subset, rel=1e-9, abs=1e-12)  # a sum over rows
        n = seed.n_seed
        mean, sd = own_data_baseline(seed, 15)
        assert mean == pytest.approx(15 * a.mean())
        assert sd == pytest.approx(np.sqrt(15 * a.var() * (n - 15) / (n - 1)))


def test_a_network_is_priced_by_its_own_influence(wdbc, mlp_seed):
    damped = AppraiserConfig(names=("influence",), damping=0.5)
    rule = PricingRule.calibrated(mlp_seed, 20, rate=100.0,
                                  influence=damped.build("influence", "mlp"))
    mean, sd = own_data_baseline(mlp_seed, 20, damped.build("influence", "mlp"))
    assert rule.threshold == pytest.approx(mean + 3 * sd)
    assert rule.threshold != pytest.approx(PricingRule.calibrated(mlp_seed, 20, 100.0).threshold)
    frame = priced_market(mlp_seed, wdbc, rule, n_per_kind=2, size=20, config=damped)
    assert np.allclose(frame.price, rule.prices(frame.value))
    market = make_market(wdbc, "none", 2, 20, 0.0, 0.0, random_state=0)  # its first kind
    values = damped.appraise("influence", mlp_seed, [(c.X, c.y) for c in market]).values
    assert np.allclose(frame[frame.kind == "none"].value, values)


def test_buying_refits_an_mlp_and_refuses_a_last_layer_model(wdbc, mlp_seed, last_layer_seed,
                                                            small_market):
    bought = absorb(mlp_seed, small_market[0].X, small_market[0].y)
    assert isinstance(bought, NetworkSeed) and bought.n_seed == mlp_seed.n_seed + 20
    assert bought.test_loss == pytest.approx(
        mlp_seed.test_loss - ground_truth(mlp_seed, small_market[0].X, small_market[0].y).utility)
    sentence = "acquisition retrains the whole model; it is defined for the logistic and mlp"
    with pytest.raises(ExplorerError, match=sentence):
        absorb(last_layer_seed, small_market[0].X, small_market[0].y)
    with pytest.raises(ExplorerError, match=sentence):
        market_acquisition(last_layer_seed, small_market, 1)
    with pytest.raises(ExplorerError, match=sentence):
        budgeted_acquisition(last_layer_seed, small_market, np.ones(4), 2.0)
    snapshot = RunSnapshot.take("wdbc", wdbc, last_layer_seed, small_market,
                                AppraiserConfig(names=("influence",)), rate=1.0)
    assert snapshot.rounds == 0 and not snapshot.acquires  # the dashboard's run skips it
    with pytest.raises(ExplorerError, match=sentence):
        buy_within_budget(snapshot, 10.0)


def test_the_leakage_attacks_refuse_a_network(mlp_seed, last_layer_seed):
    for seed in (mlp_seed, last_layer_seed):
        with pytest.raises(ExplorerError, match=f"defined for the logistic seed model, not "
                                                f"{seed.family}"):
            run_attack(seed, Attack("data-owner"))


def test_the_encoding_carries_the_family(tmp_path, wdbc, wdbc_seed, mlp_seed, last_layer_seed):
    for seed, want in ((wdbc_seed, ("logistic", [], "")), (mlp_seed, ("mlp", [8], "silu")),
                       (last_layer_seed, ("last-layer", [8], "silu"))):
        write_encoding(tmp_path / "enc.json", encoding(wdbc, seed))
        enc = read_encoding(tmp_path / "enc.json")
        assert (enc["family"], enc["hidden"], enc["activation"]) == want
        assert enc["n_outputs"] == 1 and enc["lam"] == seed.lam
    enc = encoding(wdbc, wdbc_seed)
    for bad, field in (({"family": "cnn"}, "family"), ({"hidden": [0]}, "hidden"),
                       ({"activation": "tanh"}, "activation")):
        (tmp_path / "bad.json").write_text(json.dumps({**enc, **bad}))
        with pytest.raises(ExplorerError, match=f"inconsistent: {field} must be"):
            read_encoding(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({**enc, "hidden": [8], "activation": "relu"}))
    with pytest.raises(ExplorerError, match="a logistic seed model has no hidden widths"):
        read_encoding(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({**enc, "format": "appraisal-explorer "
                                                                     "encoding 1"}))
    with pytest.raises(ExplorerError, match="not an encoding file of this version"):
        read_encoding(tmp_path / "old.json")


def test_seed_choice_checks_itself(wdbc):
    assert SeedChoice("mlp", 16).hidden == (16,)
    assert SeedChoice().describe() == "logistic"
    assert MLP.describe() == "mlp, hidden 8, silu"
    for bad, sentence in (({"model": "cnn"}, "unknown seed model"),
                          ({"model": "mlp", "hidden": (8, 8, 8)}, "one or two hidden layers"),
                          ({"model": "mlp", "hidden": (0,)}, "each hidden width"),
                          ({"model": "mlp", "activation": "tanh"}, "unknown activation"),
                          ({"model": "last-layer", "lam": "cv"}, "lam cv"),
                          ({"lam": -1.0}, "L2 strength")):
        with pytest.raises(ExplorerError, match=sentence):
            SeedChoice(**bad)
    seed = SeedChoice("last-layer", (4,), lam=0.1).fit(wdbc)
    assert isinstance(seed, LastLayerSeed) and seed.lam == 0.1
    assert model_description(seed) == "last-layer 30-4-2 silu"


def test_private_greedy_acquisition_refits_an_mlp_as_plaintext_does(wdbc):
    """One private session (simulated) serves every round: the model owner refits the network
    in the clear between rounds and buys what plaintext buys."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seed = SeedChoice("mlp", (4,)).fit(wdbc)
        market = make_market(wdbc, "label-noise", 4, 20, 0.5, 0.0, random_state=2)
        private = AppraiserConfig.from_options(names=("influence",), backend="crypten",
                                               mode="simulated", provider="TFP")
        mine = market_acquisition(seed, market, 2, random_orders=1, config=private)
        plain = market_acquisition(seed, market, 2, random_orders=1)
    greedy = [f[f.strategy == "influence"] for f in (mine, plain)]
    assert greedy[0].candidate.tolist() == greedy[1].candidate.tolist()
    assert np.allclose(greedy[0].test_loss, greedy[1].test_loss)
