"""Every bad input to a public entry point ends in one sentence: on the command line one line
``appraisal-explorer: error: ...`` and exit status 2, from Python an ExplorerError; never a
traceback, never a wrong answer, and nothing written."""

import json
import os
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from appraising import configured
from appraising import value as value_of

from explorer.appraisers import appraise
from explorer.cli import main
from explorer.config import AppraiserConfig
from explorer.constraints import MAX_CANDIDATE_FILE_BYTES
from explorer.errors import ExplorerError
from explorer.loaders.user import read_candidate_file, write_candidate_file
from explorer.market import make_market
from explorer.parties import encoding, run_model_owner, write_encoding
from explorer.seed import fit_seed_model
from explorer.tasks import load_task

PREFIX = "appraisal-explorer: error: "
ENV = {"RENDEZVOUS": "tcp://127.0.0.1:9", "WORLD_SIZE": "2"}  # nothing listens there


@pytest.fixture(scope="module")
def files(tmp_path_factory, wdbc, wdbc_seed):
    """A directory of good and broken candidate and encoding files for task wdbc."""
    d = tmp_path_factory.mktemp("inputs")
    (c,) = make_market(wdbc, "label-noise", 1, 30, 0.3, 0.3, random_state=1)
    write_candidate_file(d / "good.csv", wdbc.to_raw(c.X), c.y, wdbc.feature_names)
    good = pd.read_csv(d / "good.csv")
    names = list(wdbc.feature_names)
    header = ",".join([*names, "label"]) + "\n"

    def csv(name, frame, **kw):
        frame.to_csv(d / name, index=False, **kw)

    csv("reordered.csv", good[good.columns[::-1]])
    csv("renamed.csv", good.set_axis([*(f"f{i}" for i in range(30)), "label"], axis=1))
    csv("one_unknown.csv", good.set_axis([*names[:-1], "bogus", "label"], axis=1))
    csv("extra.csv", good.assign(extra=1.0))
    csv("missing.csv", good.drop(columns=names[0]))
    csv("headerless.csv", good, header=False)
    good.to_csv(d / "index.csv")  # an unnamed index column
    for name, row, col, value in [("huge.csv", 3, 5, 1e300), ("big.csv", 0, 0, 1e12)]:
        frame = good.copy()
        frame.iloc[row, col] = value
        csv(name, frame)
    frame = good.astype({"label": float})
    frame.loc[2, "label"] = 1.5
    csv("fractional.csv", frame)
    csv("text.csv", good.astype({names[4]: object}).assign(**{names[4]: "abc"}))
    (d / "empty.csv").write_text("")
    (d / "header_only.csv").write_text(header)
    (d / "latin1.csv").write_bytes(header.encode() + "é".encode("latin-1") + b"," * 30 + b"0\n")
    (d / "binary.csv").write_bytes(bytes(range(256)) * 10)
    (d / "utf16.csv").write_bytes((d / "good.csv").read_text().encode("utf-16"))
    (d / "folder.csv").mkdir()
    with open(d / "oversized.csv", "wb") as f:  # sparse: no disk used
        f.write(header.encode())
        f.truncate(MAX_CANDIDATE_FILE_BYTES + 1)
    X, y = wdbc.to_raw(c.X), c.y
    (d / "notzip.npz").write_text("hello")
    np.savez(d / "good.npz", X=X, y=y)
    (d / "truncated.npz").write_bytes((d / "good.npz").read_bytes()[:300])
    with zipfile.ZipFile(d / "members.npz", "w") as z:
        z.writestr("X.npy", b"not an array")
        z.writestr("y.npy", b"not an array")
    np.savez(d / "noy.npz", X=X)
    np.savez(d / "complex.npz", X=X + 1j, y=y)
    np.savez(d / "strings.npz", X=X.astype(str), y=y)
    np.savez(d / "y2d.npz", X=X, y=y[:, None])
    np.savez(d / "yshort.npz", X=X, y=y[:-1])
    np.savez(d / "ybool.npz", X=X, y=y.astype(bool))
    np.savez(d / "yfrac.npz", X=X, y=y + 0.5)
    np.savez(d / "Xhuge.npz", X=np.where(np.arange(30) == 2, 1e300, X), y=y)
    np.savez(d / "object.npz", X=np.array([X], dtype=object), y=y)

    enc = encoding(wdbc, wdbc_seed)
    write_encoding(d / "enc.json", enc)
    (d / "enc_malformed.json").write_text("{not json")
    (d / "enc_list.json").write_text("[1, 2]")
    (d / "enc_empty.json").write_text("")
    for name, key, value in [("enc_fnstr", "feature_names", "abc"),
                             ("enc_meanstr", "mean", ["x"] * 30),
                             ("enc_scale0", "scale", [0.0] * 30),
                             ("enc_meanlen", "mean", [1.0] * 3),
                             ("enc_nout", "n_outputs", 2),
                             ("enc_ntrain", "n_train", 0),
                             ("enc_lam", "lam", -1),
                             ("enc_classes", "class_names", ["only"]),
                             ("enc_none", "scale", None)]:
        (d / f"{name}.json").write_text(json.dumps({**enc, key: value}))
    (d / "enc_nolam.json").write_text(json.dumps({k: v for k, v in enc.items() if k != "lam"}))
    os.mkfifo(d / "fifo")
    return d


def snapshot(*dirs):
    return {p: p.stat().st_mtime_ns for d in dirs for p in d.rglob("*")}


W = ["--task", "wdbc"]
FAST = [*W, "--appraisers", "influence"]
CAND = [*FAST, "--candidate-file"]
DO = ["party", "data-owner", "--encoding"]

# (argv, reason, environment): {d} is the directory of input files, {o} an empty output
# directory that must stay empty
CLI_CASES = [
    # numbers and choices
    (["appraise", *W, "--random-state", "-1"],
     r"random state must be a whole number between 0 and", None),
    (["appraise", *W, "--random-state", "1.5"], "expected a whole number", None),
    (["appraise", *W, "--random-state", str(2**64)], "random state must be a whole number", None),
    (["appraise", *W, "--candidates", "0"], "number of candidates must be", None),
    (["appraise", *W, "--candidates", "-3"], "number of candidates must be", None),
    (["appraise", *W, "--size", "-1"], "positive integer", None),
    (["appraise", *W, "--size", "1e2"], "expected a whole number", None),
    (["appraise", *W, "--size", "5000"], "larger than the pool", None),
    (["appraise", *W, "--min-level", "inf"], "finite number", None),
    (["appraise", *W, "--max-level", "x"], "expected a number", None),
    (["appraise", *W, "--corruption", "label-noise", "--min-level", "0.8", "--max-level",
      "0.2"], "min-level 0.8 is above the max-level", None),
    (["appraise", *W, "--corruption", "label-noise", "--flip", "0,5"],
     "two different classes", None),
    (["appraise", *W, "--corruption", "label-noise", "--flip", "a,b"], "two classes", None),
    (["appraise", *W, "--flip", "0,1"], "--flip applies only with --corruption label-noise",
     None),
    (["appraise", *W, "--corruption", "imbalance", "--target-class", "5"], "not a class",
     None),
    (["appraise", *W, "--corruption", "imbalance", "--target-class", "-1"],
     "target class must be", None),
    (["appraise", *W, "--target-class", "1"], "--target-class applies only with --corruption "
     "imbalance", None),
    (["appraise", *W, "--drop-features", "30"], "drop_features must be between 0 and 29",
     None),
    (["appraise", *W, "--drop-features", "-1"], "drop_features must be a whole number", None),
    (["appraise", *W, "--lam", "1e308"], "positive number or cv", None),
    (["appraise", *W, "--lam", "0"], "positive number or cv", None),
    (["appraise", *W, "--lr", "nan"], "finite number", None),
    (["appraise", *W, "--steps", "0"], "steps must be a whole number", None),
    (["appraise", *W, "--batch-size", "0"], "batch size must be a positive integer", None),
    (["appraise", *W, "--precision-bits", "64"], "precision bits must be", None),
    (["appraise", *W, "--timeout", "0"], "timeout must be a number above 0", None),
    (["appraise", *W, "--timeout", "-5", "--backend", "crypten"], "timeout must be", None),
    (["appraise", *FAST, "--timeout", "100"], "--timeout applies only with --backend crypten",
     None),
    (["appraise", *FAST, "--reveal", "bit"], "--reveal applies only with --backend crypten",
     None),
    (["appraise", *FAST, "--backend", "crypten", "--threshold", "0.5"],
     "--threshold applies only with --reveal bit", None),
    (["appraise", *FAST, "--lr", "0.5"], "--lr applies only to the finetune appraiser", None),
    (["appraise", *W, "--backend", "crypten", "--mode", "simulated"], "no dealer", None),
    (["appraise", *W, "--appraisers", ",,"], "name at least one appraiser", None),
    (["appraise", *W, "--appraisers", "shapley"], "unknown appraiser 'shapley'", None),
    (["appraise", "--task", "WDBC"], "unknown task 'WDBC'", None),
    (["appraise", *W, "--corruption", ""], "unknown corruption ''", None),
    (["appraise", *W, "--data-dir", "{d}"], "takes no data directory", None),
    (["appraise", "--task", "mnist", "--data-dir", "{d}/good.csv"], "does not exist", None),
    (["appraise", "--task", "cifar-planecar", "--data-dir", "{d}/folder.csv"],
     "no CIFAR-10 python batches", None),
    (["appraise", *W, "--bogus"], "unrecognized arguments: --bogus", None),
    (["tasks", "extra"], "unrecognized arguments: extra", None),
    ([], "required: command", None),
    # output paths
    (["appraise", *FAST, "--out", "{o}"], "is a directory; name a file", None),
    (["appraise", *FAST, "--out", ""], "expected a path, got an empty string", None),
    (["appraise", *FAST, "--out", "{o}/missing/r.csv"], "does not exist; create it", None),
    (["appraise", *FAST, "--out", "{d}/good.csv/r.csv"], "is a file, not a directory", None),
    (["appraise", *FAST, "--out", "{d}/fifo"], "not a regular file", None),
    (["appraise", *CAND, "{d}/good.csv", "--out", "{d}/good.csv"],
     "would overwrite the candidate file", None),
    (["sample-candidate", *W, "--out", "{o}"], "is a directory", None),
    (["sample-candidate", *W, "--out", "{o}/missing/c.csv"], "does not exist", None),
    (["sample-candidate", *W, "--random-state", "-1", "--out", "{o}/c.csv"],
     "random state must be", None),
    (["sample-candidate", *W, "--size", "0", "--out", "{o}/c.csv"], "positive integer", None),
    (["sample-candidate", *W, "--level", "2", "--out", "{o}/c.csv"],
     r"level must be a number within \[0, 1\]", None),
    (["sample-candidate", *W, "--corruption", "rot", "--out", "{o}/c.csv"],
     "unknown corruption 'rot'", None),
    (["export-encoding", *W, "--out", "{o}"], "is a directory", None),
    (["export-encoding", *W, "--out", "{o}/missing/e.json"], "does not exist", None),
    (["export-encoding", *W, "--random-state", "-1", "--out", "{o}/e.json"],
     "random state must be", None),
    (["export-encoding", *W, "--lam", "x", "--out", "{o}/e.json"], "positive number or cv",
     None),
    (["reproduce", "fig99", "--out", "{o}/r"], "invalid choice: 'fig99'", None),
    (["reproduce", "table2", "--out", "{d}/good.csv"], "is a file", None),
    (["reproduce", "table2", "--out", "{d}/good.csv/sub"], "is a file", None),
    (["reproduce", "table2", "--out", ""], "empty string", None),
    (["reproduce", "table2", "--random-state", "-1", "--out", "{o}/r"],
     "random state must be", None),
    (["reproduce", "table2", "--timeout", "0", "--out", "{o}/r"], "timeout must be", None),
    (["reproduce", "fig6", "--quick", "--data-dir", "{d}/folder.csv", "--out", "{o}/r"],
     "no CIFAR-10 python batches", None),
    # candidate files
    (["appraise", *CAND, "{d}/renamed.csv"],
     r"feature columns are not the task's \(missing 'mean radius', 'mean texture', "
     r"'mean perimeter' and 27 more; unknown 'f0', 'f1', 'f2' and 27 more\)", None),
    (["appraise", *CAND, "{d}/one_unknown.csv"],
     r"missing 'worst fractal dimension'; unknown 'bogus'", None),
    (["appraise", *CAND, "{d}/extra.csv"], r"31 feature columns but the task has 30 "
     r"\(unknown 'extra'\)", None),
    (["appraise", *CAND, "{d}/missing.csv"], r"29 feature columns .*missing 'mean radius'",
     None),
    (["appraise", *CAND, "{d}/index.csv"], "unknown 'Unnamed: 0'", None),
    (["appraise", *CAND, "{d}/headerless.csv"], "no 'label' column.*header", None),
    (["appraise", "--task", "digits", "--appraisers", "influence", "--candidate-file",
      "{d}/good.csv"], "30 feature columns but the task has 64", None),
    (["appraise", *FAST, "--drop-features", "3", "--candidate-file", "{d}/good.csv"],
     "30 feature columns but the task has 27", None),
    (["appraise", *CAND, "{d}/huge.csv"], r"'mean compactness' = 1e\+300 in data row 4, which "
     r"is 2\.\d+e\+301 seed-set standard deviations .*limit of 1e\+06", None),
    (["appraise", *CAND, "{d}/big.csv"], r"'mean radius' = 1e\+12 in data row 1", None),
    (["appraise", *CAND, "{d}/fractional.csv"], r"label 1\.5 in data row 3; labels must be "
     r"whole class indices or class names", None),
    (["appraise", *CAND, "{d}/text.csv"], "non-numeric feature values in column 'mean "
     "smoothness'", None),
    (["appraise", *CAND, "{d}/empty.csv"], "not a readable CSV file", None),
    (["appraise", *CAND, "{d}/header_only.csv"], "holds no samples", None),
    (["appraise", *CAND, "{d}/latin1.csv"], "not UTF-8 text", None),
    (["appraise", *CAND, "{d}/utf16.csv"], "not UTF-8 text", None),
    (["appraise", *CAND, "{d}/binary.csv"], "not a readable CSV file", None),
    (["appraise", *CAND, "{d}/folder.csv"], "is a directory; name a candidate file", None),
    (["appraise", *CAND, "{d}/absent.csv"], "does not exist", None),
    (["appraise", *CAND, ""], "empty string", None),
    (["appraise", *CAND, "{d}/oversized.csv"], "above the 512 MB limit", None),
    (["appraise", *CAND, "{d}/notzip.npz"], r"not a \.npz file \(not a zip archive\)", None),
    (["appraise", *CAND, "{d}/truncated.npz"], r"not a \.npz file", None),
    (["appraise", *CAND, "{d}/members.npz"], "not (a readable .npz file|numpy arrays)", None),
    (["appraise", *CAND, "{d}/object.npz"], "not a readable .npz file", None),
    (["appraise", *CAND, "{d}/noy.npz"], "arrays named X and y", None),
    (["appraise", *CAND, "{d}/complex.npz"], "complex128 values; features must be real", None),
    (["appraise", *CAND, "{d}/strings.npz"], "features must be real numbers", None),
    (["appraise", *CAND, "{d}/y2d.npz"], r"y has shape \(30, 1\)", None),
    (["appraise", *CAND, "{d}/yshort.npz"], "30 rows of features but 29 labels", None),
    (["appraise", *CAND, "{d}/ybool.npz"], "true/false labels", None),
    (["appraise", *CAND, "{d}/yfrac.npz"], "labels must be whole class indices", None),
    (["appraise", *CAND, "{d}/Xhuge.npz"], r"'mean perimeter' = 1e\+300", None),
    (["appraise", *CAND, "{d}/good.csv", "--size", "5"],
     "--size applies only to a synthetic market", None),
    # the parties: everything refused before any networking
    (["party"], "required: role", None),
    (["party", "dealer"], "needs the session key shared out of band", {**ENV, "RANK": "2"}),
    (["party", "dealer", "--session-key-file", "{d}/good.csv"], "is not a session key",
     {**ENV, "RANK": "2"}),
    (["party", "dealer", "--session-key-file", "{d}/absent.key"], "cannot read the session key",
     {**ENV, "RANK": "2"}),
    (["party", "dealer"], "set RANK", {"RENDEZVOUS": "tcp://127.0.0.1:9", "WORLD_SIZE": "2"}),
    (["party", "dealer"], "RENDEZVOUS must be .*tcp://host:port",
     {"RENDEZVOUS": "localhost:29500", "WORLD_SIZE": "2", "RANK": "2"}),
    (["party", "dealer"], "WORLD_SIZE=3", {**ENV, "WORLD_SIZE": "3", "RANK": "2"}),
    (["party", "model-owner", *W, "--sizes", "30", "--budget-values", "-1"],
     "a ledger budget must be a whole number", None),
    (["party", "model-owner", *W, "--sizes", ""], "whole numbers separated by commas", None),
    (["party", "model-owner", *W, "--sizes", "30,,30"], "separated by commas", None),
    (["party", "model-owner", *W, "--sizes", "0"], "each size to be a whole number", None),
    (["party", "model-owner", *W, "--sizes", "1.5"], "separated by commas", None),
    (["party", "model-owner", *W, "--sizes", str(10**12)], "each size to be", None),
    (["party", "model-owner", *W, "--sizes", "30", "--random-state", "-1"],
     "random state must be", None),
    (["party", "model-owner", *W, "--sizes", "30", "--precision-bits", "4"],
     "precision bits must be", None),
    (["party", "model-owner", *W, "--sizes", "30", "--appraiser", "x"], "invalid choice", None),
    (["party", "model-owner", *W, "--sizes", "30"], "set RENDEZVOUS", {}),
    (["party", "model-owner", *W, "--sizes", "30"], "RENDEZVOUS must be",
     {**ENV, "RENDEZVOUS": "tcp://127.0.0.1", "RANK": "0"}),
    (["party", "model-owner", *W, "--sizes", "30"], "RENDEZVOUS must be",
     {**ENV, "RENDEZVOUS": "tcp://127.0.0.1:99999", "RANK": "0"}),
    (["party", "model-owner", *W, "--sizes", "30"], "runs as RANK=0", {**ENV, "RANK": "1"}),
    (["party", "model-owner", *W, "--sizes", "30"], "WORLD_SIZE=two",
     {**ENV, "WORLD_SIZE": "two", "RANK": "0"}),
    (["party", "data-owner", "--encoding", "{d}/enc.json", "--candidate-file", "{d}/good.csv",
      "--timeout", "5"], "unrecognized arguments: --timeout", ENV),
    ([*DO, "{d}/enc.json", "--candidate-file", "{d}/good.csv"], "set RENDEZVOUS", {}),
    ([*DO, "{d}/enc.json", "--candidate-file", "{d}/huge.csv"],
     r"'mean compactness' = 1e\+300", {**ENV, "RANK": "1"}),
    ([*DO, "{d}/enc.json", "--candidate-file", "{d}/renamed.csv"],
     "feature columns are not the task's", {**ENV, "RANK": "1"}),
    ([*DO, "{d}/enc.json", "--candidate-file", "{d}/notzip.npz"], "not a zip archive",
     {**ENV, "RANK": "1"}),
    ([*DO, "{d}/enc.json", "--candidate-file", "{d}/fractional.csv"],
     "whole class indices", {**ENV, "RANK": "1"}),
    ([*DO, "{d}/enc.json", "--candidate-file", "{d}/absent.csv"], "does not exist",
     {**ENV, "RANK": "1"}),
    ([*DO, "{d}/absent.json", "--candidate-file", "{d}/good.csv"],
     "encoding file .* does not exist", {**ENV, "RANK": "1"}),
    ([*DO, "{d}/folder.csv", "--candidate-file", "{d}/good.csv"], "is a directory",
     {**ENV, "RANK": "1"}),
    *[([*DO, f"{{d}}/{name}.json", "--candidate-file", "{d}/good.csv"], reason,
       {**ENV, "RANK": "1"}) for name, reason in [
        ("enc_malformed", "not an encoding file"),
        ("enc_empty", "not an encoding file"),
        ("enc_list", "not an encoding file of this version"),
        ("enc_nolam", r"not an encoding file of this version \(no lam\)"),
        ("enc_fnstr", "inconsistent: feature_names must be"),
        ("enc_meanstr", "inconsistent: mean must be a list of one finite number"),
        ("enc_scale0", "inconsistent: scale must be a list of one positive number"),
        ("enc_meanlen", "inconsistent: mean must be"),
        ("enc_nout", "inconsistent: n_outputs must be 1 for two classes"),
        ("enc_ntrain", "inconsistent: n_train must be a positive integer"),
        ("enc_lam", "inconsistent: lam must be"),
        ("enc_classes", "inconsistent: class_names must be"),
        ("enc_none", "inconsistent: scale must be"),
    ]],
]


def case_id(case):
    argv = case[0]
    return " ".join(a.replace("{d}/", "").replace("{o}", "OUT") for a in argv)[:70] or "none"


@pytest.mark.parametrize("argv, reason, env", CLI_CASES, ids=[case_id(c) for c in CLI_CASES])
def test_command_line_refuses_with_one_line(files, tmp_path, monkeypatch, capsys, argv, reason,
                                            env):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    for key in ("RENDEZVOUS", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    before = snapshot(files, tmp_path)
    code = main([a.replace("{d}", str(files)).replace("{o}", str(out)) for a in argv])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith(PREFIX) and err.count("\n") == 1, err
    assert re.search(reason, err), err
    assert snapshot(files, tmp_path) == before  # nothing written, nothing half-written


def test_root_cannot_write_everywhere(tmp_path, capsys):
    if not os.path.isdir("/proc"):
        pytest.skip("no /proc here")
    code = main(["sample-candidate", "--task", "wdbc", "--out", "/proc/candidate.csv"])
    err = capsys.readouterr().err
    assert code == 2 and re.search(r"cannot write to /proc .*choose another place", err), err


def test_a_reordered_header_gives_the_same_answer(files, wdbc, capsys):
    X, y = read_candidate_file(files / "good.csv", wdbc.feature_names, wdbc.class_names)
    Xr, yr = read_candidate_file(files / "reordered.csv", wdbc.feature_names, wdbc.class_names)
    assert np.array_equal(X, Xr) and np.array_equal(y, yr)
    outputs = []
    for name in ("good.csv", "reordered.csv"):
        assert main(["appraise", *CAND, str(files / name)]) == 0
        # everything but the run's timeline (its seconds differ from run to run)
        outputs.append([line for line in capsys.readouterr().out.splitlines()
                        if not line.startswith("seconds ")])
    assert outputs[0] == outputs[1] and any(line.startswith("value ") for line in outputs[0])


def test_sample_candidate_output_is_read_back(tmp_path, wdbc):
    path = tmp_path / "c.csv"
    assert main(["sample-candidate", "--task", "wdbc", "--size", "12", "--out", str(path)]) == 0
    X, y = read_candidate_file(path, wdbc.feature_names, wdbc.class_names, mean=wdbc.mean,
                               scale=wdbc.scale)
    assert X.shape == (12, 30) and len(y) == 12


@pytest.fixture(scope="module")
def market(wdbc):
    (c,) = make_market(wdbc, "none", 1, 10, random_state=0)
    return c


@pytest.fixture(scope="module")
def influence(wdbc_seed):
    return configured("influence")[0].fit(wdbc_seed)


def private_influence(seed):
    """A fitted private influence appraiser and its runner (real parties)."""
    appraiser, runner = configured("influence", "crypten")
    return appraiser.fit(seed), runner


def one_at(X, value):
    X = np.array(X, dtype=object if isinstance(value, str) else np.float64)
    X[0, 0] = value
    return X


# (call, reason): each call receives (task, seed model, fitted influence, candidate, files)
API_CASES = [
    (lambda t, s, a, c, f: load_task("nope"), "unknown task 'nope'"),
    (lambda t, s, a, c, f: load_task(3), "unknown task 3"),
    (lambda t, s, a, c, f: load_task("wdbc", random_state=-1),
     "random state .* must be a whole number"),
    (lambda t, s, a, c, f: load_task("wdbc", random_state=1.5),
     "random state .* must be a whole number"),
    (lambda t, s, a, c, f: load_task("wdbc", random_state=True),
     "random state .* must be a whole number"),
    (lambda t, s, a, c, f: load_task("wdbc", lam=float("nan")), "L2 strength"),
    (lambda t, s, a, c, f: load_task("wdbc", lam=-1), "L2 strength"),
    (lambda t, s, a, c, f: load_task("wdbc", drop_features=1.5), "drop_features"),
    (lambda t, s, a, c, f: load_task("wdbc", drop_features=True), "drop_features"),
    (lambda t, s, a, c, f: load_task("wdbc", seed_size=-0.1), "seed-set size must be"),
    (lambda t, s, a, c, f: load_task("wdbc", seed_size="a"), "seed-set size must be"),
    (lambda t, s, a, c, f: load_task("mnist", data_dir=123), "data_dir must be a directory"),
    (lambda t, s, a, c, f: make_market(None, "none", 2, 10), "takes a Task"),
    (lambda t, s, a, c, f: make_market(t, "none", -1, 10), "number of candidates"),
    (lambda t, s, a, c, f: make_market(t, "none", True, 10), "number of candidates"),
    (lambda t, s, a, c, f: make_market(t, "none", 2, True), "candidate size"),
    (lambda t, s, a, c, f: make_market(t, "label-noise", 2, 10, "a"), "max-level"),
    (lambda t, s, a, c, f: make_market(t, "label-noise", 2, 10, None), "max-level"),
    (lambda t, s, a, c, f: make_market(t, ["none"], 2, 10), "unknown corruption"),
    (lambda t, s, a, c, f: make_market(t, "none", 2, 10, random_state=-1), "random state"),
    (lambda t, s, a, c, f: make_market(t, "label-noise", 2, 10, flip="ab"), "flip must be"),
    (lambda t, s, a, c, f: make_market(t, "label-noise", 2, 10, flip=(0, 1, 2)),
     "flip must be"),
    (lambda t, s, a, c, f: make_market(t, "label-noise", 2, 10, flip=(0.5, 1)),
     "flip must be"),
    (lambda t, s, a, c, f: make_market(t, "imbalance", 2, 10, target_class=1.5),
     "target class"),
    (lambda t, s, a, c, f: make_market(t, "imbalance", 2, 10, target_class=True),
     "target class"),
    (lambda t, s, a, c, f: fit_seed_model("wdbc"), "takes a Task"),
    (lambda t, s, a, c, f: fit_seed_model(t, lam=True), "L2 strength"),
    (lambda t, s, a, c, f: fit_seed_model(t, lam=1e308), "L2 strength"),
    (lambda t, s, a, c, f: fit_seed_model(t, tol=-1), "tolerance"),
    (lambda t, s, a, c, f: fit_seed_model(t, max_iter=0), "iteration limit"),
    (lambda t, s, a, c, f: read_candidate_file(None, 30, ("a", "b")), "by a path"),
    (lambda t, s, a, c, f: read_candidate_file(f / "good.csv", 0, ("a", "b")),
     "feature names .* or their number"),
    (lambda t, s, a, c, f: read_candidate_file(f / "good.csv", ("a", "a"), ("a", "b")),
     "distinct strings"),
    (lambda t, s, a, c, f: read_candidate_file(f / "renamed.csv", t.feature_names,
                                               t.class_names), "not the task's"),
    (lambda t, s, a, c, f: read_candidate_file(f / "huge.csv", t.feature_names, t.class_names,
                                               mean=t.mean, scale=t.scale),
     "standard deviations"),
    (lambda t, s, a, c, f: read_candidate_file(f / "notzip.npz", 30, t.class_names),
     "not a zip archive"),
    (lambda t, s, a, c, f: read_candidate_file(f / "folder.csv", 30, t.class_names),
     "is a directory"),
    (lambda t, s, a, c, f: AppraiserConfig(names=3), "name the appraisers"),
    (lambda t, s, a, c, f: AppraiserConfig(names=[3]), "name the appraisers"),
    (lambda t, s, a, c, f: AppraiserConfig(names="influence,bogus"), "unknown appraiser"),
    (lambda t, s, a, c, f: AppraiserConfig.from_options(bogus=1),
     "unknown AppraiserConfig option 'bogus'"),
    (lambda t, s, a, c, f: AppraiserConfig(steps=True), "steps"),
    (lambda t, s, a, c, f: AppraiserConfig(lr="x"), "learning rate"),
    (lambda t, s, a, c, f: AppraiserConfig.from_options(timeout=0), "timeout"),
    (lambda t, s, a, c, f: AppraiserConfig(extra=5), "extra must map"),
    (lambda t, s, a, c, f: AppraiserConfig(extra={"influence": {"bogus": 1}}),
     "extra options of influence"),
    (lambda t, s, a, c, f: configured(None), "name the appraisers"),
    (lambda t, s, a, c, f: configured("influence", bogus=1), "unknown AppraiserConfig"),
    (lambda t, s, a, c, f: configured("influence", "crypten", timeout=0), "timeout"),
    (lambda t, s, a, c, f: configured("influence")[0].fit("x"), "takes a logistic seed model"),
    (lambda t, s, a, c, f: value_of(configured("influence")[0], c.X, c.y), "not fitted"),
    (lambda t, s, a, c, f: value_of(a, c.X[0], c.y[:1]), "shape"),
    (lambda t, s, a, c, f: value_of(a, c.X[:, :5], c.y), "shape"),
    (lambda t, s, a, c, f: value_of(a, one_at(c.X, np.nan), c.y), "NaN or infinite"),
    (lambda t, s, a, c, f: value_of(a, one_at(c.X, 1e300), c.y),
     r"feature 0 of sample 0 .* 1e\+300 seed-set standard deviations"),
    (lambda t, s, a, c, f: value_of(a, one_at(c.X, -2e6), c.y), "limit of 1e"),
    (lambda t, s, a, c, f: value_of(a, c.X.astype(str), c.y), "array of real numbers"),
    (lambda t, s, a, c, f: value_of(a, "abc", c.y), "array of real numbers"),
    (lambda t, s, a, c, f: value_of(a, c.X + 1j, c.y), "array of real numbers"),
    (lambda t, s, a, c, f: value_of(a, [[1.0, 2.0], [3.0]], c.y), "array of real numbers"),
    (lambda t, s, a, c, f: value_of(a, torch.tensor(c.X, requires_grad=True)[:, :3], c.y),
     "shape"),
    (lambda t, s, a, c, f: value_of(a, c.X, c.y + 0.5), r"label \d\.5 .* not a whole number"),
    (lambda t, s, a, c, f: value_of(a, c.X, c.y.astype(bool)), "true/false"),
    (lambda t, s, a, c, f: value_of(a, c.X, np.array(["benign"] * 10)), "whole class indices"),
    (lambda t, s, a, c, f: value_of(a, c.X, -np.ones(10, dtype=int)), r"labels \[-1\]"),
    (lambda t, s, a, c, f: value_of(a, c.X, c.y[:, None]), "needs 10 labels"),
    (lambda t, s, a, c, f: value_of(a, c.X, c.y[:-1]), "needs 10 labels"),
    (lambda t, s, a, c, f: value_of(a, c.X[:0], c.y[:0]), "empty"),
    (lambda t, s, a, c, f: appraise(a, 5), r"list of \(X, y\) pairs"),
    (lambda t, s, a, c, f: appraise(a, None), r"list of \(X, y\) pairs"),
    (lambda t, s, a, c, f: appraise(a, [c]), r"pass \(c\.X, c\.y\)"),
    (lambda t, s, a, c, f: appraise(a, [(c.X,)]), r"pair \(X, y\)"),
    (lambda t, s, a, c, f: run_model_owner(*private_influence(s), "30", bytes(32)),
     "sizes as a list"),
    (lambda t, s, a, c, f: run_model_owner(*private_influence(s), (30, 0), bytes(32)),
     "each candidate size"),
]


@pytest.mark.parametrize("call, reason", API_CASES, ids=[f"api{i}" for i in range(len(API_CASES))])
def test_python_api_refuses_with_one_sentence(files, wdbc, wdbc_seed, influence, market, call,
                                              reason):
    with pytest.raises(ExplorerError, match=reason) as info:
        call(wdbc, wdbc_seed, influence, market, files)
    assert "\n" not in str(info.value)


def test_whole_float_labels_and_tensors_are_data(influence, market):
    expected = value_of(influence, market.X, market.y)
    assert value_of(influence, market.X, market.y.astype(float)) == expected
    assert value_of(influence, torch.tensor(market.X), torch.tensor(market.y)) == expected
    assert value_of(influence, market.X.tolist(), market.y.tolist()) == expected
