"""What the revealed values leak: both reconstruction attacks, under plaintext and CrypTen, bit
mode against value mode, each defence's direction, and the attack command."""

import math
import os
import time
from pathlib import Path

import mpc_parties
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import special

from explorer.appraisers import Influence
from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.logistic import gradient_sums
from explorer.appraisers.reveal import (
    Defences,
    WeightBoundRefused,
    compute_defended,
    gaussian_epsilon,
    stochastic_round,
    value_sensitivity,
    weight_bound_bit,
    weight_margin,
)
from explorer.cli import main
from explorer.config import AppraiserConfig
from explorer.errors import ExplorerError
from explorer.leakage.attack import COLUMNS, Attack, queries_to_reach, run_attack
from explorer.leakage.data_owner import data_owner_attack
from explorer.leakage.defences import Defence, Policy, Refused, make_defence, public_weight_bound
from explorer.leakage.parties import build_service
from explorer.leakage.trace import relative_error
from explorer.market import make_market
from explorer.mpc.launcher import run_parties
from explorer.mpc.protocol import SessionSpec, public_settings
from explorer.mpc.session import mpc_config
from explorer.mpc.simulated import run_simulated


@pytest.fixture(scope="module")
def five_rows(wdbc):
    (c,) = make_market(wdbc, "none", 1, 5, random_state=0)
    return c.X, c.y


def at(result, queries, target):
    """The error of ``target`` after at most ``queries`` revealed values or bits."""
    f = result.frame
    f = f[(f.target == target) & (f.queries <= queries)]
    return float(f.sort_values("queries").relative_error.iloc[-1])


# -- the data owner steals the model -----------------------------------------------------------


@pytest.mark.parametrize("backend, mode", [("plaintext", "simulated"),
                                           ("crypten", "simulated"),
                                           ("crypten", "parties")])
def test_data_owner_recovers_the_model_from_2_d_plus_1_values(wdbc_seed, backend, mode):
    """One batched session of 2(d+1) crafted candidates: θ̂ and v up to fixed point (16 bits;
    CrypTen's sigmoid approximation dominates)."""
    result = run_attack(wdbc_seed, Attack("data-owner", "value", backend=backend, mode=mode))
    d1 = wdbc_seed.n_features + 1
    assert result.queries == 2 * d1 and result.unit == "values"
    assert list(result.frame.columns[:6]) == COLUMNS
    tolerance = 1e-10 if backend == "plaintext" else 1e-2
    assert result.error < tolerance
    assert at(result, 2 * d1, "v") < tolerance
    assert at(result, 0, "theta") == 1.0  # nothing revealed, nothing known


def test_data_owner_bits_leave_the_error_high_for_the_same_queries(wdbc_seed):
    d1 = wdbc_seed.n_features + 1
    for backend in ("plaintext", "crypten"):
        bits = run_attack(wdbc_seed, Attack("data-owner", "bit", backend=backend,
                                            queries=2 * d1, depth=6))
        assert bits.unit == "bits" and bits.queries == 2 * d1
        assert bits.error > 0.5
    # with many more bits the bisection gets there: about 8 bits a row to 10%
    full = run_attack(wdbc_seed, Attack("data-owner", "bit", depth=9))
    assert full.queries == 10 * d1 and full.error < 0.05
    assert 4 * d1 < queries_to_reach(full.frame, "theta") <= 10 * d1


def test_the_attacker_needs_only_the_revealed_values():
    """A softmax model behind a stub service that reveals only values: v from C labels a row,
    θ̂ from one more value per extra row (fitted)."""
    rng = np.random.default_rng(0)
    d, C = 4, 3
    theta = torch.as_tensor(rng.normal(size=(d + 1, C)))
    W = rng.normal(size=(d + 1, C)) * 0.01
    W -= W.mean(axis=1, keepdims=True)  # v is orthogonal to the softmax's shift

    class Stub:
        reveal, threshold, defence = "value", 0.0, Defence()

        def appraise(self, candidates):
            batch = candidate_batch([(torch.as_tensor(X), torch.as_tensor(y))
                                     for X, y in candidates], C)
            G = gradient_sums(batch.A, batch.Y, theta).numpy()
            return (G * W).sum(axis=(1, 2))

    trace = data_owner_attack(Stub(), d, C, copies=1)
    theta_hat = trace.points[-1][1]["theta"]
    truth = theta.numpy() - theta.numpy().mean(axis=1, keepdims=True)
    assert relative_error(theta_hat, truth) < 1e-6
    assert relative_error(trace.points[-1][1]["v"], W) < 1e-10


# -- the model owner learns the data -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["plaintext", "crypten"])
def test_model_owner_recovers_the_candidates_gradient(wdbc_seed, five_rows, backend):
    """d+1 sessions with weights e_j give G(D_a) of a 5-row candidate; 31 bits do not."""
    d1 = wdbc_seed.n_features + 1
    values = run_attack(wdbc_seed, Attack("model-owner", "value", backend=backend), five_rows)
    assert values.queries == d1
    assert values.error < (1e-12 if backend == "plaintext" else 1e-2)
    bits = run_attack(wdbc_seed, Attack("model-owner", "bit", backend=backend, queries=d1),
                      five_rows)
    assert bits.queries == d1 and bits.error > 0.5


def test_model_owner_bisects_any_value_in_about_20_bits(wdbc_seed, five_rows):
    d1 = wdbc_seed.n_features + 1
    bits = run_attack(wdbc_seed, Attack("model-owner", "bit"), five_rows)
    assert bits.queries == 20 * d1 and bits.error < 1e-3
    assert queries_to_reach(bits.frame, "G") <= 8 * d1


# -- defences ----------------------------------------------------------------------------------


@pytest.mark.parametrize("attacker", ["data-owner", "model-owner"])
def test_each_defence_raises_the_error_at_the_value_mode_budget(wdbc_seed, five_rows, attacker):
    d1 = wdbc_seed.n_features + 1
    budget = 2 * d1 if attacker == "data-owner" else d1
    target = "theta" if attacker == "data-owner" else "G"
    base = run_attack(wdbc_seed, Attack(attacker, "value", "none"), five_rows)
    assert at(base, budget, target) < 1e-6
    for defence in ("bit-only", "policy", "rounding", "noise"):
        defended = run_attack(wdbc_seed, Attack(attacker, "value", defence, queries=budget,
                                                depth=6), five_rows)
        assert at(defended, budget, target) > at(base, budget, target) + 1e-3, defence
        assert set(defended.frame.defence) == {defence}
    # the policy's budget is what binds: 4 sessions of 8 candidates, or 4 sessions in all
    policy = run_attack(wdbc_seed, Attack(attacker, "value", "policy"), five_rows)
    assert policy.queries == (32 if attacker == "data-owner" else 4)
    assert policy.error > 0.5


def test_noise_is_averaged_away_with_more_queries(wdbc_seed):
    d1 = wdbc_seed.n_features + 1
    few = run_attack(wdbc_seed, Attack("data-owner", "value", "noise"))
    many = run_attack(wdbc_seed, Attack("data-owner", "value", "noise", queries=2 * d1 * 64))
    assert many.error < few.error / 2


def test_the_model_owner_enforces_the_public_policy(wdbc_seed, rng):
    service = build_service(wdbc_seed, "value", make_defence("policy"))
    d = wdbc_seed.n_features
    row = rng.normal(size=(1, d))
    with pytest.raises(Refused, match="at least 10 rows"):
        service.appraise([(np.repeat(row, 5, axis=0) + rng.normal(size=(5, d)), np.zeros(5))])
    with pytest.raises(Refused, match="repeated rows"):
        service.appraise([(np.repeat(row, 12, axis=0), np.zeros(12, dtype=int))])
    distinct = (rng.normal(size=(12, d)), np.zeros(12, dtype=int))
    with pytest.raises(Refused, match="8 candidates"):
        service.appraise([distinct] * 9)
    small = build_service(wdbc_seed, "value", Defence("policy", policy=Policy(max_sessions=1)))
    small.appraise([distinct])
    with pytest.raises(Refused, match="spent"):
        small.appraise([distinct])


# -- command line ------------------------------------------------------------------------------


def test_attack_command(tmp_path, capsys):
    out = tmp_path / "attack.csv"
    code = main(["attack", "--task", "wdbc", "--attacker", "data-owner", "--out", str(out)])
    text, err = capsys.readouterr()
    assert code == 0, err
    last = text.strip().splitlines()[-1].split()
    assert last[:3] == ["relative", "reconstruction", "error"]
    assert float(last[3]) < 1e-10 and last[5:] == ["62", "revealed", "values"]
    frame = pd.read_csv(out)
    assert list(frame.columns[:6]) == COLUMNS and frame.queries.max() == 62

    code = main(["attack", "--task", "wdbc", "--attacker", "model-owner", "--reveal", "bit",
                 "--queries", "40", "--out", str(out)])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert text.strip().splitlines()[-1].endswith("after 40 revealed bits")


@pytest.mark.parametrize("argv, message", [
    (["--attacker", "thief"], "invalid choice"),
    (["--attacker", "data-owner", "--defence", "bit-only", "--reveal", "value"], "reveals bits"),
    (["--attacker", "data-owner", "--queries", "0"], "expected a positive number"),
    (["--attacker", "data-owner", "--defence", "rounding", "--grid", "-1"], "positive"),
])
def test_attack_bad_input_is_one_sentence(tmp_path, capsys, argv, message):
    code = main(["attack", "--task", "wdbc", *argv, "--out", str(tmp_path / "a.csv")])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.csv").exists()


@pytest.mark.parametrize("settings, message", [
    ({"attacker": "thief"}, "unknown attacker"),
    ({"attacker": "data-owner", "reveal": "both"}, "unknown reveal"),
    ({"attacker": "data-owner", "queries": 0}, "at least 1"),
    ({"attacker": "data-owner", "queries": True}, "at least 1"),
])
def test_an_attacks_settings_are_checked_when_made(settings, message):
    with pytest.raises(ExplorerError, match=message):
        Attack(**settings)


# -- the reveal defences inside the protocol ---------------------------------------------------


@pytest.fixture(scope="module")
def market(wdbc):
    return [(c.X, c.y) for c in make_market(wdbc, "label-noise", 12, 30, max_level=0.6,
                                            random_state=4)]


@pytest.fixture(scope="module")
def plain_values(wdbc_seed, market):
    return values_of(influence(), wdbc_seed, market)


def influence(backend: str = "plaintext", **options) -> AppraiserConfig:
    """The influence appraiser's configuration on ``backend`` with these flat options."""
    return AppraiserConfig.from_options(names=("influence",), backend=backend, **options)


def values_of(config: AppraiserConfig, seed, candidates) -> np.ndarray:
    return config.appraise("influence", seed, candidates).values


@pytest.mark.parametrize("backend, mode", [("plaintext", None), ("crypten", "simulated"),
                                           ("crypten", "parties")])
def test_a_grid_reveals_only_multiples_of_its_step(wdbc_seed, market, plain_values, backend,
                                                   mode):
    """Plaintext, simulated and real parties agree: a multiple of the step within one step
    of the plaintext value (plus MPC's own error)."""
    step = 0.05 * np.ptp(plain_values)
    options = {} if backend == "plaintext" else {
        "mode": mode, "provider": "TFP" if mode == "simulated" else "TTP"}
    appraisal = influence(backend, grid=step, **options).appraise("influence", wdbc_seed, market)
    got = appraisal.values
    units = got / step
    assert np.abs(units - np.round(units)).max() < 1e-9
    slack = 0.0 if backend == "plaintext" else 0.01 * np.abs(plain_values).max()
    assert np.abs(got - plain_values).max() <= step + slack
    assert len(np.unique(np.round(units))) >= 8  # a grid, not one value
    if mode == "parties":  # what each party saw: the very same multiples
        owner, data = appraisal.last_session.reports
        assert torch.equal(owner.values, data.values)
        both = owner.values.numpy() / step
        assert np.abs(both - np.round(both)).max() < 1e-9


def test_two_party_truncation_is_stochastic_rounding(monkeypatch):
    """The grid's rounding: CrypTen's local truncation between two real parties rounds 0.3 up
    in 30% of draws and -2.75 up in 25%, unbiased (4000 draws each: 5 standard errors)."""
    # party processes start with `python -m`: they find mpc_parties through PYTHONPATH
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (here, os.environ.get("PYTHONPATH")) if p))
    y = torch.tensor([0.3] * 4000 + [-2.75] * 4000, dtype=torch.float64)
    run = run_parties(mpc_parties.truncation_party, {0: y, 1: torch.zeros_like(y)},
                      config=mpc_config(16, "TTP"), timeout=120)
    k = run.results[0].double()
    assert torch.equal(run.results[0], run.results[1])
    for part, value, low in ((k[:4000], 0.3, 0.0), (k[4000:], -2.75, -3.0)):
        assert set(part.unique().tolist()) == {low, low + 1}
        p = value - low
        assert abs(float(part.mean()) - value) < 5 * math.sqrt(p * (1 - p) / 4000)


def test_plaintext_stochastic_round_is_unbiased():
    y = torch.full((20000,), 0.3, dtype=torch.float64)
    k = stochastic_round(y)
    assert set(k.unique().tolist()) == {0.0, 1.0}
    assert abs(float(k.mean()) - 0.3) < 5 * math.sqrt(0.21 / 20000)
    assert not torch.equal(k, stochastic_round(y))  # fresh randomness every time


def noise_ratio(revealed: np.ndarray, noiseless: np.ndarray, tau: float) -> float:
    """The spread of the revealed values around the noiseless ones, over τ√2 (two parties)."""
    diff = revealed - noiseless
    return float(np.sqrt(np.mean(diff ** 2)) / (tau * math.sqrt(2)))


@pytest.mark.parametrize("backend, mode, n", [("plaintext", None, 2000),
                                              ("crypten", "simulated", 400),
                                              ("crypten", "parties", 200)])
def test_each_party_adds_its_own_noise(wdbc, wdbc_seed, backend, mode, n):
    """Revealed minus noiseless spreads as τ√2: both parties' noise, not one's (0.71) nor
    none. Bounds: 4 standard errors of a sample spread (1 / sqrt(2n))."""
    candidates = [(c.X, c.y) for c in make_market(wdbc, "none", n, 5, random_state=3)]
    honest = Influence().fit(wdbc_seed)
    noiseless = values_of(influence(), wdbc_seed, candidates)
    tau = 0.02
    options = {"noise": tau, "weight_bound": public_weight_bound(honest), "row_bound": 32.0}
    if backend == "crypten":
        options.update(mode=mode, provider="TFP" if mode == "simulated" else "TTP")
    got = values_of(influence(backend, **options), wdbc_seed, candidates)
    ratio = noise_ratio(got, noiseless, tau)
    assert abs(ratio - 1) < 4 / math.sqrt(2 * n), ratio


def test_the_weight_bound_refuses_before_any_value(wdbc_seed, market):
    honest = Influence().fit(wdbc_seed)
    norm = float(honest.weights_.norm())
    for backend, options in (("plaintext", {}),
                             ("crypten", {"mode": "simulated", "provider": "TFP"}),
                             ("crypten", {"mode": "parties", "provider": "TTP"})):
        tight = influence(backend, weight_bound=norm * 0.9, **options)
        with pytest.raises(ExplorerError, match="refused before any value is revealed"):
            tight.appraise("influence", wdbc_seed, market[:2])
        loose = influence(backend, weight_bound=norm * 1.1, **options)
        assert len(loose.appraise("influence", wdbc_seed, market[:2])) == 2


@pytest.mark.parametrize("weights, unscale, within", [
    (1.0, 0.97, True),   # ||w|| = 0.97 W: passes
    (1.0, 1.01, False),  # ||w|| = 1.01 W
    (4.0, 0.125, False),  # ||w|| = W / 2, but an entry beyond 1 (could wrap the ring)
    (2.0 ** -4, 8.0, False),  # ||w|| = W / 2, but unscale beyond 4 W
])
def test_the_weight_check_is_one_bit_on_the_inputs(wdbc_seed, weights, unscale, within):
    """The check itself, in plaintext and on CrypTensors: one entry of weights, W = 0.01."""
    appraiser = Influence().fit(wdbc_seed)
    public = appraiser.public([5])
    bound = 0.01
    w = torch.zeros(public.d1, 1, dtype=torch.float64)
    w[3, 0] = weights
    inputs = {"theta": wdbc_seed.theta, "weights": w,
              "unscale": torch.tensor([unscale * bound], dtype=torch.float64)}
    assert bool(weight_bound_bit(appraiser, inputs, public, bound)) == within

    def party(rank, world_size, payload):
        from explorer.mpc.crypten_compat import load_crypten

        crypten = load_crypten()
        encrypted = {k: crypten.cryptensor(v) for k, v in inputs.items()}
        return weight_bound_bit(appraiser, encrypted, public, bound).get_plain_text().item()

    assert run_simulated(party, None, config=mpc_config(16, "TFP")) == (1 if within else 0)
    assert 0.97 ** 2 < 1 - weight_margin(public.d1) < 1.0


def test_plaintext_refusal_is_a_weight_bound_refusal(wdbc_seed):
    appraiser = Influence().fit(wdbc_seed)
    public = appraiser.public([5])
    batch = candidate_batch([(torch.zeros(5, wdbc_seed.n_features), torch.zeros(5))], 1)
    with pytest.raises(WeightBoundRefused):
        compute_defended(appraiser, appraiser.model_owner_inputs(public), batch.A, batch.Y,
                         public, Defences(weight_bound=1e-9))


def test_the_data_owner_attack_error_grows_with_noise(wdbc_seed):
    errors = [run_attack(wdbc_seed, Attack("data-owner", "value", "noise", noise=tau)).error
              for tau in (1e-4, 1e-3, 1e-2)]
    assert errors[0] < errors[1] < errors[2], errors
    assert errors[0] > 1e-6  # noise at all: the undefended attack reaches 1e-14


def test_stochastic_rounding_is_averaged_away_like_noise(wdbc_seed):
    d1 = wdbc_seed.n_features + 1
    few = run_attack(wdbc_seed, Attack("data-owner", "value", "rounding"))
    many = run_attack(wdbc_seed, Attack("data-owner", "value", "rounding", queries=2 * d1 * 64))
    assert many.error < few.error / 2


def test_the_defences_are_public_settings(wdbc_seed):
    public = Influence().fit(wdbc_seed).public([5])
    settings = public_settings(SessionSpec(public, defences=Defences(0.01, 0.02, 0.5, 8.0)))
    assert {k: settings[k] for k in ("grid", "noise", "weight_bound", "row_bound")} == \
        {"grid": 0.01, "noise": 0.02, "weight_bound": 0.5, "row_bound": 8.0}


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """τ: the smallest noise standard deviation that makes one release of a value with this
    sensitivity (ε, δ)-DP, by bisection on δ(ε, Δ/τ) of the analytic Gaussian mechanism
    (Balle & Wang 2018, Theorem 8), written out here so gaussian_epsilon is checked against
    the theorem rather than against itself."""
    def delta_of(mu: float) -> float:
        a, b = mu / 2 - epsilon / mu, -mu / 2 - epsilon / mu
        return float(special.ndtr(a) - math.exp(epsilon + special.log_ndtr(b)))

    lo, hi = 1e-6 * sensitivity, sensitivity
    while delta_of(sensitivity / hi) > delta:
        hi *= 2
    while hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if delta_of(sensitivity / mid) <= delta else (mid, hi)
    return hi


def test_the_gaussian_mechanism_helpers():
    sensitivity = value_sensitivity(0.01, 8.0, 1)
    assert sensitivity == pytest.approx(2 * 0.01 * math.sqrt(65))
    assert value_sensitivity(0.01, 8.0, 3) == pytest.approx(sensitivity * math.sqrt(2))
    tau = gaussian_sigma(0.5, 1e-5, sensitivity)
    classical = sensitivity * math.sqrt(2 * math.log(1.25 / 1e-5)) / 0.5
    assert 0.5 * classical < tau < classical  # the analytic mechanism is tighter
    assert gaussian_epsilon(tau, 1e-5, sensitivity) == pytest.approx(0.5, rel=1e-6)
    # k releases compose exactly into one of sensitivity sqrt(k) Δ
    assert gaussian_epsilon(tau, 1e-5, sensitivity, count=16) == \
        pytest.approx(gaussian_epsilon(tau, 1e-5, 4 * sensitivity), rel=1e-9)
    assert gaussian_epsilon(tau, 1e-5, sensitivity, count=16) > 2


@pytest.mark.parametrize("argv, message", [
    (["appraise", "--task", "wdbc", "--appraisers", "influence", "--noise", "0.01"],
     "needs a weight bound"),
    (["appraise", "--task", "wdbc", "--appraisers", "influence", "--grid", "-1"],
     "rounding grid must be"),
    (["appraise", "--task", "wdbc", "--appraisers", "influence", "--weight-bound", "0"],
     "weight bound must be a positive number"),
    (["appraise", "--task", "wdbc", "--weight-bound", "0.1"], "influence appraiser only"),
    (["appraise", "--task", "wdbc", "--appraisers", "influence", "--backend", "crypten",
      "--reveal", "bit", "--grid", "0.01"], "bit mode reveals bits"),
    (["appraise", "--task", "wdbc", "--appraisers", "influence", "--backend", "crypten",
      "--grid", "1e-9"], "finer than 16-bit fixed point"),
    (["party", "model-owner", "--task", "wdbc", "--sizes", "5", "--row-bound", "nan"],
     "expected a finite number"),
    (["attack", "--task", "wdbc", "--attacker", "data-owner", "--grid", "0.1"],
     "--grid applies only with --defence rounding"),
    (["attack", "--task", "wdbc", "--attacker", "data-owner", "--defence", "rounding",
      "--reveal", "bit"], "rounds revealed values"),
])
def test_bad_defence_flags_exit_2_with_one_sentence(tmp_path, capsys, argv, message):
    code = main([*argv, "--out", str(tmp_path / "a.csv")] if argv[0] != "party" else argv)
    _, err = capsys.readouterr()
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a.csv").exists()


def test_attack_command_with_a_real_defence(tmp_path, capsys):
    out = tmp_path / "attack.csv"
    start = time.perf_counter()
    code = main(["attack", "--task", "wdbc", "--attacker", "model-owner", "--defence", "noise",
                 "--noise", "0.05", "--out", str(out)])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "simulated" not in text and time.perf_counter() - start < 60
    assert float(text.strip().splitlines()[-1].split()[3]) > 0.5
