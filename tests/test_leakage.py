"""What the revealed values leak: both reconstruction attacks, under plaintext and CrypTen, bit
mode against value mode, each defence's direction, and the attack command."""

import numpy as np
import pandas as pd
import pytest
import torch

from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.logistic import gradient_sums
from explorer.cli import main
from explorer.leakage import (
    COLUMNS,
    Defence,
    Policy,
    Refused,
    build_service,
    data_owner_attack,
    make_defence,
    queries_to_reach,
    relative_error,
    run_attack,
)
from explorer.market import make_market


@pytest.fixture(scope="module")
def five_rows(wdbc):
    (c,) = make_market(wdbc, "none", 1, 5, seed=0)
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
    result = run_attack(wdbc_seed, "data-owner", "value", backend=backend, mode=mode)
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
        bits = run_attack(wdbc_seed, "data-owner", "bit", backend=backend, queries=2 * d1,
                          depth=6)
        assert bits.unit == "bits" and bits.queries == 2 * d1
        assert bits.error > 0.5
    # with many more bits the bisection gets there: about 8 bits a row to 10%
    full = run_attack(wdbc_seed, "data-owner", "bit", depth=9)
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
    values = run_attack(wdbc_seed, "model-owner", "value", backend=backend,
                        candidate=five_rows)
    assert values.queries == d1
    assert values.error < (1e-12 if backend == "plaintext" else 1e-2)
    bits = run_attack(wdbc_seed, "model-owner", "bit", backend=backend, queries=d1,
                      candidate=five_rows)
    assert bits.queries == d1 and bits.error > 0.5


def test_model_owner_bisects_any_value_in_about_20_bits(wdbc_seed, five_rows):
    d1 = wdbc_seed.n_features + 1
    bits = run_attack(wdbc_seed, "model-owner", "bit", candidate=five_rows)
    assert bits.queries == 20 * d1 and bits.error < 1e-3
    assert queries_to_reach(bits.frame, "G") <= 8 * d1


# -- defences ----------------------------------------------------------------------------------


@pytest.mark.parametrize("attacker", ["data-owner", "model-owner"])
def test_each_defence_raises_the_error_at_the_value_mode_budget(wdbc_seed, five_rows, attacker):
    d1 = wdbc_seed.n_features + 1
    budget = 2 * d1 if attacker == "data-owner" else d1
    target = "theta" if attacker == "data-owner" else "G"
    base = run_attack(wdbc_seed, attacker, "value", "none", candidate=five_rows)
    assert at(base, budget, target) < 1e-6
    for defence in ("bit-only", "policy", "rounding", "noise"):
        defended = run_attack(wdbc_seed, attacker, "value", defence, candidate=five_rows,
                              queries=budget, depth=6)
        assert at(defended, budget, target) > at(base, budget, target) + 1e-3, defence
        assert set(defended.frame.defence) == {defence}
        assert defended.frame.simulated_defence.all() == (defence in ("rounding", "noise"))
    # the policy's budget is what binds: 4 sessions of 8 candidates, or 4 sessions in all
    policy = run_attack(wdbc_seed, attacker, "value", "policy", candidate=five_rows)
    assert policy.queries == (32 if attacker == "data-owner" else 4)
    assert policy.error > 0.5


def test_noise_is_averaged_away_with_more_queries(wdbc_seed):
    d1 = wdbc_seed.n_features + 1
    few = run_attack(wdbc_seed, "data-owner", "value", "noise")
    many = run_attack(wdbc_seed, "data-owner", "value", "noise", queries=2 * d1 * 64)
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
