"""The command line end to end, and every bad input ending in one sentence and exit 2."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorer.cli import main
from explorer.tasks import load_task

REQUIRED = {"candidate", "level", "utility", "accuracy_change", "appraiser", "backend", "value",
            "seconds"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def spearman_lines(out):
    return {line.split()[1]: float(line.split()[2]) for line in out.splitlines()
            if line.startswith("spearman ")}


def test_appraise_wdbc_end_to_end(tmp_path, capsys):
    out_csv = tmp_path / "results.csv"
    code, out, err = run(capsys, "appraise", "--task", "wdbc", "--corruption", "label-noise",
                         "--candidates", "12", "--size", "30", "--max-level", "0.5",
                         "--appraisers", "influence,gradient-norm,finetune", "--random-state", "3",
                         "--out", str(out_csv))
    assert code == 0, err
    frame = pd.read_csv(out_csv)
    assert set(frame.columns) >= REQUIRED and len(frame) == 36
    assert set(frame.backend) == {"plaintext"}
    assert np.allclose(sorted(frame.level.unique()), np.linspace(0, 0.5, 12))
    rho = spearman_lines(out)
    assert set(rho) == {"influence", "gradient-norm", "finetune"}
    assert rho["influence"] > 0.7 and rho["gradient-norm"] < 0  # the paper's Figure 5 point


def test_same_seed_same_numbers(tmp_path, capsys):
    args = ["appraise", "--task", "digits", "--corruption", "label-noise", "--candidates", "5",
            "--size", "80", "--appraisers", "influence", "--random-state", "7"]
    run(capsys, *args, "--out", str(tmp_path / "a.csv"))
    run(capsys, *args, "--out", str(tmp_path / "b.csv"))
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    cols = ["candidate", "level", "utility", "accuracy_change", "value"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_digits_imbalance(capsys):
    code, out, err = run(capsys, "appraise", "--task", "digits", "--corruption", "imbalance",
                         "--candidates", "6", "--size", "60", "--appraisers",
                         "influence,gradient-norm", "--target-class", "3")
    assert code == 0, err
    assert set(spearman_lines(out)) == {"influence", "gradient-norm"}


def test_own_candidate_file(tmp_path, capsys):
    path = tmp_path / "mine.csv"
    code, out, err = run(capsys, "sample-candidate", "--task", "wdbc", "--size", "30",
                         "--corruption", "label-noise", "--level", "0.2", "--out", str(path))
    assert code == 0, err
    frame = pd.read_csv(path)
    assert frame.shape == (30, 31) and frame.columns[-1] == "label"
    code, out, err = run(capsys, "appraise", "--task", "wdbc", "--candidate-file", str(path),
                         "--appraisers", "influence,gradient-norm")
    assert code == 0, err
    lines = dict(line.rsplit(" ", 1) for line in out.splitlines()[1:])
    timed = {k for k in lines if k.startswith("seconds ")}  # the run's timeline
    assert "seconds wall" in timed
    assert set(lines) - timed == {"utility", "accuracy_change", "value influence",
                                  "value gradient-norm"}
    assert all(np.isfinite(float(v)) for v in lines.values())


def test_tasks_lists_every_task(capsys):
    code, out, _ = run(capsys, "tasks")
    assert code == 0 and all(t in out for t in ("wdbc", "digits", "mnist", "cifar-planecar"))


def write(tmp_path, text, name="bad.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


WDBC_HEADER = ",".join(load_task("wdbc").feature_names)  # a header is matched by name


@pytest.mark.parametrize("argv, message", [
    (["--task", "imagenet"], "unknown task 'imagenet'"),
    (["--task", "wdbc", "--corruption", "rot"], "unknown corruption 'rot'"),
    (["--task", "wdbc", "--appraisers", "influence,shapley"], "unknown appraiser 'shapley'"),
    (["--task", "wdbc", "--size", "0"], "positive integer"),
    (["--task", "wdbc", "--size", "5000"], "larger than the pool"),
    (["--task", "wdbc", "--max-level", "1.5"], r"within \[0, 1\]"),
    (["--task", "wdbc", "--max-level", "-0.1"], r"within \[0, 1\]"),
    (["--task", "wdbc", "--max-level", "nan"], "finite number"),
    (["--task", "wdbc", "--candidates", "x"], "whole number"),
    (["--task", "mnist", "--data-dir", "/nonexistent/mnist"], "does not exist.*--data-dir"),
    (["--task", "wdbc", "--candidate-file", "/nonexistent.csv"], "does not exist"),
    (["--task", "wdbc", "--lr", "-1", "--appraisers", "finetune"], "learning rate"),
    (["--task", "wdbc", "--out", "/nonexistent/dir/r.csv"], "output directory"),
    (["--task"], "expected one argument"),
])
def test_bad_input_is_one_sentence(capsys, argv, message):
    code, _, err = run(capsys, "appraise", *argv)
    assert code == 2
    assert err.startswith("appraisal-explorer: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert "Traceback" not in err


@pytest.mark.parametrize("body, message", [
    (WDBC_HEADER + ",label\n" + ",".join(["1"] * 29 + ["nan", "0"]), "NaN or infinite"),
    (WDBC_HEADER + ",label\n" + ",".join(["1"] * 29 + ["inf", "0"]), "NaN or infinite"),
    (WDBC_HEADER + "\n" + ",".join(["1"] * 30), "no 'label' column"),
    ("a,b,label\n1,2,0", "2 feature columns but the task has 30"),
    (WDBC_HEADER + ",label\n" + ",".join(["1"] * 30 + ["5"]), "label 5 .*does not know"),
])
def test_bad_candidate_files(tmp_path, capsys, body, message):
    code, _, err = run(capsys, "appraise", "--task", "wdbc", "--candidate-file",
                         write(tmp_path, body))
    assert code == 2 and re.search(message, err), err
    assert err.count("\n") == 1


def test_failure_leaves_no_output_file(tmp_path, capsys):
    out_csv = tmp_path / "r.csv"
    code, _, _ = run(capsys, "appraise", "--task", "wdbc", "--size", "0", "--out", str(out_csv))
    assert code == 2 and list(tmp_path.iterdir()) == []


def test_console_script_runs():
    exe = Path(sys.executable).with_name("appraisal-explorer")
    proc = subprocess.run([str(exe), "appraise", "--task", "nope"], capture_output=True,
                          text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("appraisal-explorer: error: unknown task 'nope'; choose one "
                                   "of wdbc, digits, mnist, mnist-3v5, cifar-planecar.")


def test_lam_by_cross_validation_and_newton(capsys, tmp_path):
    out = tmp_path / "r.csv"
    code, stdout, _ = run(capsys, "appraise", "--task", "wdbc", "--lam", "cv", "--candidates",
                          "6", "--size", "30", "--corruption", "label-noise", "--max-level",
                          "0.5", "--appraisers", "influence,newton", "--newton-steps", "3",
                          "--out", str(out))
    assert code == 0
    assert re.search(r"lam 0\.0316 \(chosen by cross-validation\)", stdout)
    assert re.search(r"spearman newton [-0-9.]+", stdout)
    frame = pd.read_csv(out)
    assert {"truth_grad_norm", "diagnostic"} <= set(frame.columns)
    assert set(frame.appraiser) == {"influence", "newton"}


@pytest.mark.parametrize("argv, message", [
    (["--lam", "-1"], "positive number or cv"),
    (["--lam", "auto"], "positive number or cv"),
    (["--backend", "gpu"], "invalid choice: 'gpu'"),
    (["--preconditioner", "lbfgs"], "invalid choice: 'lbfgs'"),
    (["--newton-steps", "0", "--appraisers", "newton"], "newton steps"),
])
def test_new_options_are_validated(capsys, argv, message):
    code, _, err = run(capsys, "appraise", "--task", "wdbc", *argv)
    assert code == 2 and re.search(message, err), err


def test_a_private_appraisal_says_who_encrypted_and_learned_what(capsys):
    """The dashboard's party lanes, on the command line: each party's encrypted inputs with
    their shapes, the bytes, the provider actually used, and what was revealed."""
    code, out, err = run(capsys, "appraise", "--task", "wdbc", "--candidates", "3", "--size",
                         "20", "--appraisers", "influence", "--backend", "crypten", "--mode",
                         "simulated", "--provider", "TFP")
    assert code == 0, err
    session = [line for line in out.splitlines() if line.startswith("session influence: ")]
    assert session == [
        "session influence: model owner encrypts theta (31, 1), unscale (1,), weights (31, 1)",
        "session influence: data owner encrypts candidate features A ×2 (3, 20, 31), "
        "candidate labels Y ×2 (3, 20, 1)",
        "session influence: sent: both (one process) 0.00 MB, 0 rounds (simulated, 1 session)",
        "session influence: provider TFP: the model owner's process generates every triple "
        "itself: fast, but it could then recover the data owner's inputs, so use it only for "
        "teaching and testing",
        "session influence: revealed to both: 6 values"]


def test_the_account_lists_each_partys_noise_among_what_it_encrypted(capsys):
    code, out, err = run(capsys, "appraise", "--task", "wdbc", "--candidates", "3", "--size",
                         "20", "--appraisers", "influence", "--backend", "crypten", "--mode",
                         "simulated", "--provider", "TFP", "--noise", "0.01", "--weight-bound",
                         "0.0156", "--row-bound", "16")
    assert code == 0, err
    encrypts = [line for line in out.splitlines() if " encrypts " in line]
    assert len(encrypts) == 2 and all(line.endswith(", noise (3,)") for line in encrypts)
