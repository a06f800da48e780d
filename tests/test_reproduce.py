"""Every artefact reproduces at --quick size: CSV and standalone HTML, headlines beside the
paper's figures. The MNIST artefacts read ../shared/data/mnist."""

import pandas as pd
import pytest

from explorer.cli import main
from explorer.reproduce import ARTEFACTS
from explorer.tasks import load_task


def mnist_available():
    try:
        load_task("mnist", allow_download=False)
    except Exception:
        return False
    return True


NEEDS_MNIST = {"table1", "fig3", "fig4", "fig5", "fig6"}


@pytest.mark.parametrize("artefact", list(ARTEFACTS))
def test_reproduce_quick_writes_csv_and_html(tmp_path, capsys, artefact):
    if artefact in NEEDS_MNIST and not mnist_available():
        pytest.skip("MNIST files are not on this machine")
    code = main(["reproduce", artefact, "--quick", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    frame = pd.read_csv(tmp_path / f"{artefact}.csv")
    assert len(frame) > 0
    htmls = sorted(tmp_path.glob("*.html"))
    assert htmls and all(p.stat().st_size > 100_000 for p in htmls)  # plotly.js inlined
    assert all('<script src=' not in p.read_text() for p in htmls)  # nothing from a CDN
    headlines = [line for line in out.splitlines() if line.startswith(artefact)]
    assert headlines and all("paper" in line or "blog" in line for line in headlines)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_reproduce_rejects_unknown_artefacts_and_directories(tmp_path, capsys):
    assert main(["reproduce", "fig99", "--out", str(tmp_path)]) == 2
    assert "invalid choice: 'fig99'" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main(["reproduce", "fig8", "--out", str(tmp_path / "a-file" / "out")]) == 2
    assert "cannot create the output directory" in capsys.readouterr().err


def test_reproduce_creates_its_output_directory_and_takes_a_seed(tmp_path, capsys):
    out = tmp_path / "new" / "nested"
    assert main(["reproduce", "pricing", "--quick", "--random-state", "7", "--out", str(out)]) == 0
    assert (out / "pricing.csv").is_file() and (out / "pricing.html").is_file()


def test_table1_is_the_same_for_the_same_seed():
    """Table 1's fine-tuning budget is counted from public sizes, not timed: two runs with the
    same seed give identical numbers, steps included."""
    if not mnist_available():
        pytest.skip("MNIST files are not on this machine")
    from explorer.reproduce import Options, reproduce
    from explorer.sweeps import finetune_steps

    first, second = (reproduce("table1", Options(quick=True, random_state=3)) for _ in range(2))
    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert first.headlines == second.headlines
    n_seed = len(load_task("mnist", random_state=3).X_train)
    steps = first.frame.groupby("budget").steps.first()
    assert steps.to_dict() == {b: finetune_steps(b, n_seed, 200) for b in steps.index}
    assert first.headlines[1].count("steps of") == 1
