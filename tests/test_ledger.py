"""The query ledger: counts per counterparty, budgets refused before computing, shared safely
between processes and a crash mid-write."""

import os
import signal
import subprocess
import sys

import pytest

from explorer.config import AppraiserConfig
from explorer.errors import ExplorerError
from explorer.ledger import Budget, Ledger, fingerprint
from explorer.market import make_market

SPEND_MANY = """
import sys
from explorer.ledger import Budget, Ledger
ledger = Ledger(sys.argv[1])
for _ in range(40):
    ledger.spend("model owner", "peer", Budget(), values=1)
"""


def test_budgets_are_refused_before_anything_is_counted(tmp_path):
    ledger = Ledger(tmp_path / "ledger.json")
    budget = Budget(sessions=2, values=50)
    assert ledger.spend("data owner", "abc", budget, values=30)["values"] == 30
    with pytest.raises(ExplorerError, match=r"would reveal 30 more values .* budget of 50 "
                                            r"\(30 already\); nothing was computed"):
        ledger.spend("data owner", "abc", budget, values=30)
    assert ledger.counts("data owner", "abc") == {"sessions": 1, "values": 30, "bits": 0}
    assert ledger.counts("data owner", "other") == {"sessions": 0, "values": 0, "bits": 0}
    ledger.spend("data owner", "abc", budget, values=20)
    with pytest.raises(ExplorerError, match="sessions"):
        ledger.spend("data owner", "abc", budget, bits=1)
    assert Ledger(tmp_path / "ledger.json").counts("data owner", "abc")["sessions"] == 2


def test_two_processes_never_lose_a_count(tmp_path):
    path = str(tmp_path / "ledger.json")
    workers = [subprocess.Popen([sys.executable, "-c", SPEND_MANY, path]) for _ in range(2)]
    assert [w.wait(120) for w in workers] == [0, 0]
    assert Ledger(path).counts("model owner", "peer") == {"sessions": 80, "values": 80,
                                                          "bits": 0}


def test_a_crash_mid_write_leaves_the_previous_ledger(tmp_path, monkeypatch):
    path = tmp_path / "ledger.json"
    Ledger(path).spend("model owner", "peer", Budget(), values=5)
    pid = os.fork()
    if pid == 0:  # the child dies inside the write, after half the new file is out
        import json

        def dying_dump(obj, f, **kw):
            f.write('{"model owner -> peer": {"sess')
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        json.dump = dying_dump
        Ledger(path).spend("model owner", "peer", Budget(), values=5)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert Ledger(path).counts("model owner", "peer")["values"] == 5
    Ledger(path).spend("model owner", "peer", Budget(), values=1)  # the lock was released


def test_private_runs_between_parties_count_and_refuse(tmp_path, monkeypatch, wdbc,
                                                       wdbc_seed):
    monkeypatch.setenv("APPRAISAL_EXPLORER_CACHE", str(tmp_path))
    market = [(c.X, c.y) for c in make_market(wdbc, "none", 3, 20, random_state=1)]
    config = AppraiserConfig.from_options(names=("influence",), backend="crypten",
                                          budget=Budget(values=8))
    first = config.appraise("influence", wdbc_seed, market)
    assert first.ledger_counts == {"sessions": 1, "values": 6, "bits": 0}
    with pytest.raises(ExplorerError, match="past the model owner's budget of 8"):
        config.appraise("influence", wdbc_seed, market)
    simulated = config.with_(mode="simulated", provider="TFP")
    taught = simulated.appraise("influence", wdbc_seed, market)  # teaching runs: no ledger
    assert taught.ledger_counts is None


def test_fingerprints_name_no_secret():
    key = bytes(range(32))
    assert len(fingerprint(key)) == 16 and key.hex() not in fingerprint(key)
    with pytest.raises(ExplorerError, match="whole number"):
        Budget(values=-1)
