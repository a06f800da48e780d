"""The two-terminal (or two-machine) run: each party started on its own with CrypTen's
environment variables, as the README shows."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.errors import ExplorerError
from explorer.parties import read_encoding

EXE = str(Path(sys.executable).with_name("appraisal-explorer"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_parties(tmp_path, roles, key_env=None, timeout=150, world_size=2):
    """Start each (rank, argv) as its own process; return their (code, stdout, stderr, seconds)
    in the order given."""
    env = {**os.environ, "RENDEZVOUS": f"tcp://127.0.0.1:{free_port()}",
           "WORLD_SIZE": str(world_size)}
    env.pop("APPRAISAL_SESSION_KEY", None)
    if key_env is not None:
        env["APPRAISAL_SESSION_KEY"] = key_env
    procs, start = [], time.monotonic()
    try:
        for rank, argv in roles:
            procs.append(subprocess.Popen([EXE, "party", *argv], cwd=tmp_path,
                                          env={**env, "RANK": str(rank)}, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          start_new_session=True))
        results = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err, time.monotonic() - start))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("parties")
    assert main(["export-encoding", "--task", "wdbc", "--out", str(d / "enc.json"),
                 "--session-key-out", str(d / "session.key")]) == 0
    assert oct((d / "session.key").stat().st_mode & 0o777) == "0o600"
    for i, level in enumerate([0.0, 0.6, 0.3]):
        assert main(["sample-candidate", "--task", "wdbc", "--size", "25", "--corruption",
                     "label-noise", "--level", str(level), "--random-state", str(i),
                     "--out", str(d / f"c{i}.csv")]) == 0
    return d


KEY = ["--session-key-file", "session.key"]
DATA_OWNER = ["data-owner", "--encoding", "enc.json", "--candidate-file", "c0.csv",
              "--candidate-file", "c1.csv"]


def test_three_separately_started_processes_agree_with_plaintext(files, capsys):
    capsys.readouterr()
    results = start_parties(files, [
        (0, ["model-owner", "--task", "wdbc", "--sizes", "25,25", *KEY]),
        (2, ["dealer", *KEY]),
        (1, [*DATA_OWNER, *KEY]),
    ])
    (c0, out0, err0, _), (c2, _, err2, _), (c1, out1, err1, _) = results
    assert (c0, c1, c2) == (0, 0, 0), err0 + err1 + err2
    values = [float(line.split()[-1]) for line in out1.splitlines() if line.startswith("value")]
    assert values == [float(line.split()[-1]) for line in out0.splitlines()
                      if line.startswith("value")]
    # the dealer, started on its own, rehearsed the spec the model owner sent and dealt the
    # session ahead: the model owner waited through the exchanges only, as the data owner did
    rounds = [int(re.search(r"(\d+) rounds it waited through", out).group(1))
              for out in (out0, out1)]
    assert rounds[0] == rounds[1] > 0
    for i, v in enumerate(values):
        main(["appraise", "--task", "wdbc", "--candidate-file", str(files / f"c{i}.csv"),
              "--appraisers", "influence"])
        (plain,) = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines()
                    if line.startswith("value influence")]
        assert v == pytest.approx(plain, rel=0.02, abs=1e-3)


def test_two_data_owners_each_started_on_its_own_learn_their_own_values(files):
    """WORLD_SIZE=3: the model owner, data owner 1 (two candidates), data owner 2 (one) and the
    dealer (RANK=3), as the README's two-machines section shows."""
    sizes = ["--sizes", "25,25", "--sizes", "25"]
    results = start_parties(files, [
        (0, ["model-owner", "--task", "wdbc", *sizes, *KEY]),
        (3, ["dealer", *KEY]),
        (1, [*DATA_OWNER, *sizes, *KEY]),
        (2, ["data-owner", "--encoding", "enc.json", "--candidate-file", "c2.csv", *sizes,
             *KEY]),
    ], world_size=3)
    assert [r[0] for r in results] == [0, 0, 0, 0], "".join(r[2] for r in results)
    values = [[float(line.split()[-1]) for line in out.splitlines() if line.startswith("value")]
              for _, out, _, _ in results]
    assert len(values[0]) == 3 and values[1] == []  # the dealer learns nothing
    assert values[2] == values[0][:2] and values[3] == values[0][2:]


def test_a_data_owner_whose_files_differ_from_the_agreed_sizes_is_refused(files, monkeypatch,
                                                                           capsys):
    monkeypatch.setenv("RENDEZVOUS", "tcp://127.0.0.1:1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    code = main(["party", "data-owner", "--encoding", str(files / "enc.json"),
                 "--candidate-file", str(files / "c2.csv"), "--sizes", "25,25", "--sizes",
                 "30", "--session-key-file", str(files / "session.key")])
    err = capsys.readouterr().err
    assert code == 2 and "data owner 2's candidate files hold (25,) samples, but the agreed " \
        "sizes give it (30,)" in err, err
    monkeypatch.setenv("RANK", "3")
    assert main(["party", "data-owner", "--encoding", str(files / "enc.json"),
                 "--candidate-file", str(files / "c2.csv"), "--sizes", "25,25", "--sizes",
                 "25", "--session-key-file", str(files / "session.key")]) == 2
    assert "a data owner among 2 runs as RANK=1 to 2 with WORLD_SIZE=3" in \
        capsys.readouterr().err


def test_parties_that_disagree_all_stop_with_the_reason(files):
    results = start_parties(files, [
        (0, ["model-owner", "--task", "wdbc", "--sizes", "25,30", "--provider", "TFP", *KEY]),
        (1, [*DATA_OWNER, "--provider", "TFP", *KEY]),
    ])
    for code, _, err, seconds in results:
        assert code == 2 and seconds < 60
        assert "disagree before computing (sizes: model owner" in err, err
        assert err.count("\n") == 1, err


def test_a_provider_mismatch_stops_all_three_within_a_minute(files):
    results = start_parties(files, [
        (0, ["model-owner", "--task", "wdbc", "--sizes", "25,25", "--provider", "TFP", *KEY]),
        (2, ["dealer", *KEY]),
        (1, [*DATA_OWNER, *KEY]),
    ])
    for code, _, err, seconds in results:
        assert code == 2 and seconds < 60, (code, seconds, err)
        assert "provider" in err and err.count("\n") == 1, err


def test_a_party_with_the_wrong_key_stops_every_genuine_party(files, tmp_path):
    """The data owner's process holds another key (a stranger in its place): the model owner
    and the dealer refuse to share anything, each with a sentence about the session key."""
    (files / "other.key").write_text("ab" * 32 + "\n")
    results = start_parties(files, [
        (0, ["model-owner", "--task", "wdbc", "--sizes", "25,25", *KEY]),
        (2, ["dealer", *KEY]),
        (1, [*DATA_OWNER, "--session-key-file", "other.key"]),
    ])
    (c0, out0, err0, t0), (c2, _, err2, t2), (c1, out1, _err1, t1) = results
    assert (c0, c1, c2) == (2, 2, 2) and max(t0, t1, t2) < 60
    for err in (err0, err2):
        assert "the data owner (rank 1) did not prove it holds the session key" in err, err
    assert "value" not in out0 and "value" not in out1  # nothing was revealed


def test_a_party_needs_a_session_key(files, monkeypatch, capsys):
    monkeypatch.setenv("RENDEZVOUS", "tcp://127.0.0.1:1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("APPRAISAL_SESSION_KEY", raising=False)
    assert main(["party", *[str(files / a) if a.endswith((".json", ".csv")) else a
                            for a in DATA_OWNER]]) == 2
    assert "needs the session key shared out of band" in capsys.readouterr().err
    monkeypatch.setenv("APPRAISAL_SESSION_KEY", "not hex")
    monkeypatch.setenv("RANK", "2")
    assert main(["party", "dealer"]) == 2
    assert "is not a session key" in capsys.readouterr().err


def test_party_needs_its_environment(files, monkeypatch, capsys):
    monkeypatch.delenv("RENDEZVOUS", raising=False)
    code = main(["party", "data-owner", "--encoding", str(files / "enc.json"),
                 "--candidate-file", str(files / "c0.csv"), "--session-key-file",
                 str(files / "session.key")])
    assert code == 2 and "set RENDEZVOUS" in capsys.readouterr().err


def test_bad_encoding_files(tmp_path):
    with pytest.raises(ExplorerError, match="does not exist"):
        read_encoding(tmp_path / "none.json")
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(ExplorerError, match="not an encoding file"):
        read_encoding(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(ExplorerError, match="not an encoding file"):
        read_encoding(tmp_path / "y.json")


def test_separately_started_parties_reveal_only_multiples_of_the_agreed_grid(files):
    step = 0.005
    grid = ["--provider", "TFP", "--grid", str(step), *KEY]
    results = start_parties(files, [
        (0, ["model-owner", "--task", "wdbc", "--sizes", "25,25", *grid]),
        (1, [*DATA_OWNER, *grid]),
    ])
    (c0, out0, err0, _), (c1, out1, err1, _) = results
    assert (c0, c1) == (0, 0), err0 + err1
    seen = [[float(line.split()[-1]) for line in out.splitlines() if line.startswith("value")]
            for out in (out0, out1)]
    assert seen[0] == seen[1] and len(seen[0]) == 2
    for v in seen[0]:  # printed to 6 significant digits
        assert abs(v / step - round(v / step)) < 1e-4 * max(1.0, abs(v / step)), v
    assert "defences: grid 0.005" in out0 and "defences: grid 0.005" in out1


def test_parties_that_disagree_on_a_defence_stop_before_computing(files):
    noise = ["--noise", "0.01", "--weight-bound", "0.0156", "--row-bound", "16"]
    results = start_parties(files, [
        (0, ["model-owner", "--task", "wdbc", "--sizes", "25,25", "--provider", "TFP", *noise,
             *KEY]),
        (1, [*DATA_OWNER, "--provider", "TFP", *KEY]),
    ])
    for code, _, err, seconds in results:
        assert code == 2 and seconds < 60, (code, seconds, err)
        assert "disagree before computing" in err and "noise" in err, err
        assert err.count("\n") == 1, err


def test_an_mlp_seed_model_between_separately_started_processes(tmp_path, capsys):
    """The encoding carries the family: the data owner rebuilds the mlp's definition from it
    alone, and the values agree with plaintext."""
    model = ["--model", "mlp", "--hidden", "4"]
    assert main(["export-encoding", "--task", "wdbc", *model, "--out", str(tmp_path / "enc.json"),
                 "--session-key-out", str(tmp_path / "session.key")]) == 0
    assert read_encoding(tmp_path / "enc.json")["family"] == "mlp"
    assert main(["sample-candidate", "--task", "wdbc", "--size", "25", "--corruption",
                 "label-noise", "--level", "0.5", "--out", str(tmp_path / "c0.csv")]) == 0
    capsys.readouterr()
    results = start_parties(tmp_path, [
        (0, ["model-owner", "--task", "wdbc", *model, "--sizes", "25", *KEY]),
        (2, ["dealer", *KEY]),
        (1, ["data-owner", "--encoding", "enc.json", "--candidate-file", "c0.csv", *KEY]),
    ])
    (c0, out0, err0, _), (c2, _, err2, _), (c1, out1, err1, _) = results
    assert (c0, c1, c2) == (0, 0, 0), err0 + err1 + err2
    (value,) = [float(line.split()[-1]) for line in out1.splitlines() if line.startswith("value")]
    assert [float(line.split()[-1]) for line in out0.splitlines()
            if line.startswith("value")] == [value]
    main(["appraise", "--task", "wdbc", *model, "--candidate-file", str(tmp_path / "c0.csv"),
          "--appraisers", "influence"])
    (plain,) = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines()
                if line.startswith("value influence")]
    assert value == pytest.approx(plain, rel=0.02, abs=1e-3)
    # a model owner whose network differs from the encoding's is stopped before computing
    results = start_parties(tmp_path, [
        (0, ["model-owner", "--task", "wdbc", "--model", "mlp", "--hidden", "5", "--sizes", "25",
             "--provider", "TFP", *KEY]),
        (1, ["data-owner", "--encoding", "enc.json", "--candidate-file", "c0.csv", "--provider",
             "TFP", *KEY]),
    ])
    for code, _, err, _ in results:
        assert code == 2 and "disagree before computing (hidden: model owner" in err, err
