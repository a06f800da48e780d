"""Several data owners in one private session, between real processes: the values against
plaintext, what each process actually obtained, the model owner's inputs entered once, a data
owner that dies, and the command line."""

import os
import re

import mpc_parties
import numpy as np
import pytest
import torch
from appraising import configured, plaintext_values

from explorer.app.party_view import party_lanes
from explorer.cli import main
from explorer.errors import ExplorerError
from explorer.market import make_market
from explorer.mpc.launcher import run_parties
from explorer.mpc.session import launch_session, mpc_config, seller_batches, session_inputs

pytestmark = pytest.mark.usefixtures("party_functions_importable")

# the verified tolerance of influence between real parties (tests/test_private.py)
MAX_RELATIVE_ERROR = 0.01


def children_of_this_process():
    return [pid for pid, state in mpc_parties.children_of(os.getpid()).items() if state != "Z"]


@pytest.fixture(scope="module")
def pairs(wdbc):
    return [(c.X, c.y) for c in make_market(wdbc, "label-noise", 6, 30, max_level=0.6,
                                             random_state=4)]


@pytest.mark.parametrize("k", [2, 3])
def test_k_data_owners_give_the_plaintext_values(wdbc_seed, pairs, k):
    expected = plaintext_values(wdbc_seed, "influence", pairs)
    private, runner = configured("influence", "crypten", mode="parties", sellers=k)
    appraisal = runner.run(private.fit(wdbc_seed), pairs)
    assert np.abs(appraisal.values - expected).max() <= \
        MAX_RELATIVE_ERROR * np.abs(expected).max()
    account = appraisal.account
    blocks = np.array_split(np.arange(len(pairs)), k)  # consecutive, as even as they go
    assert [s.name for s in account.sellers] == [f"data owner {j}" for j in range(1, k + 1)]
    copies = account.spec.copies
    assert account.model_owner_learned == copies * len(pairs) * account.sessions
    for seller, block in zip(account.sellers, blocks, strict=True):
        # counted from what each data owner's process returned as received
        assert seller.candidates == seller.learned_candidates == tuple(block)
        assert seller.learned >= copies * len(block) and seller.bytes > 0
        features = next(v for name, v in seller.encrypted.items() if "features" in name)
        assert features[0] == len(block)
    lines = account.lines()
    assert f"revealed to data owner {k}: " in lines[-1] and "only" in lines[-1]
    # the dashboard's party view: a grouped lane, each data owner with what it learned
    lanes = party_lanes({"influence": account}, {"task": "wdbc"})
    assert f"Data owners ({k})" in lanes
    for seller in account.sellers:
        assert f"learns {seller.learned} values, of its candidates " \
            f"{', '.join(map(str, seller.candidates))} only" in lanes
    assert children_of_this_process() == []


@pytest.mark.parametrize("name, params, tolerance", [
    ("gradient-norm", {}, 0.01), ("newton", {"newton_steps": 2}, 0.05)])
def test_other_appraisers_with_two_data_owners(wdbc_seed, pairs, name, params, tolerance):
    """The features' transposed products (gradients) and newton's secret comparisons, with the
    tolerances of tests/test_private.py."""
    expected = plaintext_values(wdbc_seed, name, pairs, **params)
    private, runner = configured(name, "crypten", mode="parties", sellers=2, **params)
    got = runner.run(private.fit(wdbc_seed), pairs).values
    assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()


def audited_session(seed, pairs, k):
    """One session with k data owners of ``pairs`` (consecutive blocks) whose every process
    reports what it obtained in the clear: the results by rank, and the spec."""
    appraiser, runner = configured("influence", "crypten", sellers=k)
    blocks = [len(b) for b in np.array_split(np.arange(len(pairs)), k)]
    spec, mo, batch = session_inputs(appraiser.fit(seed), pairs, runner.options, blocks=blocks)
    data = seller_batches(spec, batch) if k > 1 else [batch]
    payloads = {0: {"spec": spec, "input": mo},
                **{j: {"spec": spec, "input": b} for j, b in enumerate(data, start=1)}}
    launched = run_parties(mpc_parties.audited_appraisal_party, payloads,
                           config=mpc_config(spec.precision_bits, "TTP"), timeout=300,
                           dealer_payload={"spec": spec})
    return launched.results, spec


@pytest.fixture(scope="module")
def audited(party_functions_importable, wdbc_seed, pairs):
    return {k: audited_session(wdbc_seed, pairs, k) for k in (1, 2, 3)}


@pytest.mark.parametrize("k", [2, 3])
def test_each_data_owner_obtains_its_own_values_and_no_others(audited, k):
    results, spec = audited[k]
    values = results[0]["report"].values  # the model owner's: every candidate, both copies
    assert values.shape == (spec.copies, spec.public.n_candidates)
    encoded = (values * 2 ** spec.precision_bits).round().long()
    assert encoded.abs().min() > 2 ** 8  # none a small integer that could appear by chance
    for j in range(1, k + 1):
        block = spec.block(j)
        report, obtained = results[j]["report"], results[j]["obtained"]
        assert torch.equal(report.values, values[:, block])  # its own values, exactly
        own = encoded[:, block].reshape(-1)
        others = torch.cat([encoded[:, :block.start], encoded[:, block.stop:]], dim=1)
        # its own values are among what it obtained (the audit can see a value) ...
        assert torch.isin(own, obtained).all()
        # ... and no other data owner's value is anywhere in it
        assert not torch.isin(others.reshape(-1), obtained).any()
    # the model owner obtained every value
    assert torch.isin(encoded.reshape(-1), results[0]["obtained"]).all()


def test_the_model_owner_enters_its_inputs_once(audited):
    entered = {k: results[0]["encrypted"] for k, (results, _) in audited.items()}
    # the same inputs, each once, whether one, two or three data owners hold the candidates
    assert entered[1] == entered[2] == entered[3] == [(31, 1), (1,), (31, 1)]
    # and opened once: the openings that do not span the batch (the masked product's right
    # operand [theta | W], the unscale's) are the same for every k
    spec = audited[1][1]
    batch = (spec.public.n_candidates, spec.copies * spec.public.n_candidates)
    own = {k: [s for s in results[0]["opened"] if not set(s) & set(batch)]
           for k, (results, _) in audited.items()}
    assert (31, 2) in own[1] and own[1] == own[2] == own[3]
    # its bytes on the same batch grow only as an opening's share of them does: the two
    # parties' exchange sends each share once, a ring all-reduce among P sends 2(P - 1)/P of
    # it (4/3 with three parties, 3/2 with four), nothing more per data owner
    sent = {k: results[0]["report"].bytes for k, (results, _) in audited.items()}
    assert sent[2] <= 1.4 * sent[1] and sent[3] <= 1.15 * sent[2], sent


def test_a_data_owner_that_dies_fails_the_session_clearly(wdbc_seed, pairs):
    appraiser, runner = configured("influence", "crypten", sellers=3)
    spec, mo, batch = session_inputs(appraiser.fit(wdbc_seed), pairs, runner.options,
                                     blocks=[2, 2, 2])
    with pytest.raises(ExplorerError, match=r"data owner 2 failed: its process ended with "
                                            r"exit code 3"):
        launch_session(mpc_parties.audited_appraisal_party, spec, mo,
                       seller_batches(spec, batch), mode="parties", provider="TTP",
                       timeout=120, cancel=None, on_wait=None, what="appraisal",
                       smaller="appraise fewer candidates", extra={"die": 2})
    assert children_of_this_process() == []


def test_appraise_splits_the_market_among_data_owners(capsys):
    code = main(["appraise", "--task", "wdbc", "--candidates", "4", "--size", "20",
                 "--appraisers", "influence", "--backend", "crypten", "--sellers", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 data owners)" in out
    assert "session influence: revealed to data owner 1: 4 values (its candidates 0-1 only)" \
        in out
    assert "session influence: revealed to data owner 2: 4 values (its candidates 2-3 only)" \
        in out


@pytest.mark.parametrize("argv, message", [
    (["--candidates", "2", "--backend", "crypten", "--sellers", "3"],
     "3 data owners .* need at least 3 candidates"),
    (["--candidates", "4", "--sellers", "2"], "--sellers applies only with --backend crypten"),
    (["--candidates", "4", "--backend", "crypten", "--sellers", "2", "--grid", "0.01"],
     "several data owners do not have"),
    (["--candidates", "4", "--backend", "crypten", "--sellers", "0"],
     "number of data owners must be a whole number between 1 and 32"),
    (["--candidates", "4", "--backend", "crypten", "--mode", "simulated", "--provider", "TFP",
      "--sellers", "2"], "simulated mode runs one process for every party"),
])
def test_bad_sellers_are_refused_in_one_sentence(capsys, argv, message):
    assert main(["appraise", "--task", "wdbc", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(message, err), err


def test_greedy_acquisition_refuses_several_data_owners(wdbc_seed, pairs):
    appraiser, runner = configured("influence", "crypten", sellers=2)
    with pytest.raises(ExplorerError, match="greedy acquisition runs with one data owner"):
        runner.acquire(appraiser.fit(wdbc_seed), pairs, 2)
    assert children_of_this_process() == []
