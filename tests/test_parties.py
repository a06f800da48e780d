"""The two-terminal (or two-machine) run: each party started on its own with CrypTen's
environment variables, as the README shows."""

import os
import socket
import subprocess
import sys
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


def start_parties(tmp_path, roles):
    """Start each (rank, argv) as its own process; return their (code, stdout, stderr)."""
    env = {**os.environ, "RENDEZVOUS": f"tcp://127.0.0.1:{free_port()}", "WORLD_SIZE": "2"}
    procs = []
    try:
        for rank, argv in roles:
            procs.append(subprocess.Popen([EXE, "party", *argv], cwd=tmp_path,
                                          env={**env, "RANK": str(rank)}, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          start_new_session=True))
        outputs = [p.communicate(timeout=120) for p in procs]
        return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("parties")
    assert main(["export-encoding", "--task", "wdbc", "--out", str(d / "enc.json")]) == 0
    for i, level in enumerate([0.0, 0.6]):
        assert main(["sample-candidate", "--task", "wdbc", "--size", "25", "--corruption",
                     "label-noise", "--level", str(level), "--seed", str(i),
                     "--out", str(d / f"c{i}.csv")]) == 0
    return d


def test_three_separately_started_processes_agree_with_plaintext(files, capsys):
    capsys.readouterr()
    results = start_parties(files, [
        (0, ["model-owner", "--task", "wdbc", "--sizes", "25,25"]),
        (2, ["dealer"]),
        (1, ["data-owner", "--encoding", "enc.json", "--candidate-file", "c0.csv",
             "--candidate-file", "c1.csv"]),
    ])
    (c0, out0, err0), (c2, _, err2), (c1, out1, err1) = results
    assert (c0, c1, c2) == (0, 0, 0), err0 + err1 + err2
    values = [float(line.split()[-1]) for line in out1.splitlines() if line.startswith("value")]
    assert values == [float(line.split()[-1]) for line in out0.splitlines()
                      if line.startswith("value")]
    for i, v in enumerate(values):
        main(["appraise", "--task", "wdbc", "--candidate-file", str(files / f"c{i}.csv"),
              "--appraisers", "influence"])
        plain = float(capsys.readouterr().out.splitlines()[-1].split()[-1])
        assert v == pytest.approx(plain, rel=0.02, abs=1e-3)


def test_parties_that_disagree_both_stop_with_the_reason(files):
    results = start_parties(files, [
        (0, ["model-owner", "--task", "wdbc", "--sizes", "25,30", "--provider", "TFP",
             "--timeout", "30"]),
        (1, ["data-owner", "--encoding", "enc.json", "--candidate-file", "c0.csv",
             "--candidate-file", "c1.csv", "--provider", "TFP", "--timeout", "30"]),
    ])
    for code, _, err in results:
        assert code == 2
        assert "disagree on the session's public metadata (sizes" in err, err


def test_party_needs_its_environment(files, monkeypatch, capsys):
    monkeypatch.delenv("RENDEZVOUS", raising=False)
    code = main(["party", "data-owner", "--encoding", str(files / "enc.json"),
                 "--candidate-file", str(files / "c0.csv")])
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
