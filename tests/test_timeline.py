"""A run's timeline: every phase's wall seconds, adding up to the run's wall time with what no
phase measured in an explicit "other" row, drawn by plots.run_timeline and printed by the CLI."""

import time

import numpy as np
import pandas as pd
import pytest

from explorer import plots
from explorer.cli import main
from explorer.config import AppraiserConfig
from explorer.errors import AppraisalWarning, ExplorerError
from explorer.jobs import RunSnapshot, run_appraisal
from explorer.market import make_market
from explorer.timeline import (
    ENCRYPTED,
    FIT,
    OFFLINE,
    OTHER,
    STARTUP,
    WIND,
    Timeline,
    wall_seconds,
)

# what the measured phases may leave to "other": the bookkeeping between them
OTHER_SHARE, OTHER_SECONDS = 0.03, 0.05
# the timeline's clock starts just inside run_appraisal, the caller's just outside
CALL_SECONDS = 0.05


def timed_run(task, seed, config, candidates=5, rounds=3):
    market = make_market(task, "label-noise", candidates, 30, 1.0, 0.0, random_state=1)
    snapshot = RunSnapshot.take("wdbc", task, seed, market, config, rate=1000.0)
    snapshot = RunSnapshot(snapshot.task_name, task, seed, snapshot.market, config, 1000.0,
                           acquisition_rounds=rounds)
    start = time.perf_counter()
    outcome = run_appraisal(snapshot)
    return outcome, time.perf_counter() - start


def check_adds_up(timeline: pd.DataFrame, wall: float, outside: float = CALL_SECONDS) -> None:
    """The rows add up to the measured wall time, and "other" holds only what lies between
    the phases: a phase left out would land there and exceed the bound."""
    assert list(timeline.columns) == ["phase", "appraiser", "part", "seconds", "count"]
    assert timeline["phase"].iloc[-1] == OTHER
    total = wall_seconds(timeline)
    assert total <= wall + 1e-6 and wall - total < outside, (total, wall)
    other = float(timeline[timeline.phase == OTHER].seconds.sum())
    assert abs(other) <= OTHER_SHARE * wall + OTHER_SECONDS, timeline.to_string()
    parts = timeline[timeline.phase == "appraisal"]
    assert (parts.seconds > -0.01).all(), parts.to_string()


def phases(timeline):
    return list(dict.fromkeys(timeline.phase))


def test_a_plaintext_run_adds_up(wdbc, wdbc_seed):
    config = AppraiserConfig(names=("influence", "gradient-norm", "finetune"))
    outcome, wall = timed_run(wdbc, wdbc_seed, config)
    timeline = outcome.timeline
    check_adds_up(timeline, wall)
    assert phases(timeline) == ["ground truth", "appraisal", "prices", "acquisition", "other"]
    for name in config.names:
        mine = timeline[(timeline.appraiser == name) & (timeline.phase == "appraisal")]
        assert list(mine.part) == [FIT, "computation", OTHER]
    acquired = timeline[timeline.phase == "acquisition"]
    assert list(acquired.part) == ["greedy rounds", "random orders"]
    assert list(acquired["count"]) == [3, 15] and (acquired.seconds > 0).all()


def test_a_simulated_private_run_adds_up_with_its_sessions_split(wdbc, wdbc_seed):
    config = AppraiserConfig.from_options(names=("influence", "gradient-norm"),
                                          backend="crypten", mode="simulated", provider="TFP")
    outcome, wall = timed_run(wdbc, wdbc_seed, config, rounds=1)
    timeline = outcome.timeline
    check_adds_up(timeline, wall)
    influence = timeline[(timeline.appraiser == "influence")
                         & (timeline.phase == "appraisal")].set_index("part")
    assert list(influence.index) == [FIT, "session inputs", STARTUP, OFFLINE, ENCRYPTED, WIND,
                                     OTHER]
    assert influence.seconds[ENCRYPTED] > 0 and influence.seconds[STARTUP] == 0  # one process
    assert influence["count"][ENCRYPTED] == 1  # one session


def test_a_run_between_real_parties_splits_each_session(wdbc, wdbc_seed):
    from test_private import children_of_this_process

    config = AppraiserConfig.from_options(names=("influence",), backend="crypten",
                                          mode="parties")
    outcome, wall = timed_run(wdbc, wdbc_seed, config, candidates=3, rounds=1)
    timeline = outcome.timeline
    check_adds_up(timeline, wall)
    assert phases(timeline) == ["party processes", "ground truth", "appraisal", "prices",
                                "acquisition", "other"]
    influence = timeline[timeline.appraiser == "influence"]
    session = influence[influence.phase == "appraisal"].set_index("part").seconds
    assert session[STARTUP] > 0 and session[ENCRYPTED] > 0 and session[OFFLINE] >= 0
    assert session[WIND] > 0  # CrypTen's set-up and the results sent back
    assert children_of_this_process() == []


def test_a_phase_left_out_shows_as_other_and_overlap_is_said():
    timeline = Timeline().start()
    with timeline.phase("measured"):
        time.sleep(0.05)
    time.sleep(0.1)  # no phase measures this
    timeline.stop()
    frame = timeline.frame()
    assert frame.part.iloc[-1] == OTHER and frame.seconds.iloc[-1] >= 0.1
    assert wall_seconds(frame) == pytest.approx(timeline.wall)

    overlapping = Timeline().start()
    overlapping.add("counted twice", 1.0)
    overlapping.stop()
    with pytest.warns(AppraisalWarning, match="overlap"):
        frame = overlapping.frame()
    assert frame.seconds.iloc[-1] < 0 and wall_seconds(frame) == pytest.approx(overlapping.wall)
    with pytest.raises(ExplorerError, match="stopped"):
        Timeline().start().frame()


TIMELINE = pd.DataFrame({
    "phase": ["ground truth", "appraisal", "appraisal", "appraisal", "appraisal", "prices",
              "acquisition", "other"],
    "appraiser": ["", "influence", "influence", "finetune", "finetune", "", "influence", ""],
    "part": ["ground truth", "set-up", "encrypted computation", "set-up", "other", "prices",
             "greedy rounds", "other"],
    "seconds": [1.0, 0.5, 2.0, 0.25, 0.25, 0.5, 3.5, 0.5],
    "count": [5, 1, 1, 1, 1, 1, 3, 1],
})


def test_the_runtime_figure_is_a_waterfall_ending_at_the_wall_time():
    fig = plots.run_timeline(TIMELINE)
    spans = sorted((b, b + x, y) for t in fig.data
                   for b, x, y in zip(t.base, t.x, t.y, strict=True))
    starts, ends = [s[0] for s in spans], [s[1] for s in spans]
    assert starts[0] == 0  # each starts where the one before ended
    assert starts[1:] == pytest.approx(ends[:-1])
    assert ends[-1] == pytest.approx(8.5)
    assert len(spans) == len(TIMELINE)
    assert {y for *_, y in spans} == {"ground truth", "appraisal: influence",
                                      "appraisal: finetune", "prices", "acquisition", "other"}
    encrypted = next(t for t in fig.data if t.name == "encrypted computation")
    assert list(encrypted.marker.color) == [plots.APPRAISER_COLOURS["influence"]]
    text = plots.caption(fig)
    assert "took 8.5 s of wall time" in text and '"Other" (0.5 s)' in text
    assert "8.5 s" in fig.layout.title.text
    with pytest.raises(ExplorerError, match="other"):
        plots.run_timeline(TIMELINE[TIMELINE.phase != "other"])
    negative = TIMELINE.assign(seconds=np.where(TIMELINE.phase == "other", -0.5,
                                                TIMELINE.seconds))
    assert "overlap" in plots.caption(plots.run_timeline(negative))


def test_the_dashboard_shows_and_offers_the_timeline(wdbc, wdbc_seed):
    pytest.importorskip("ipywidgets")
    from explorer.app.figures import Figures

    outcome, _ = timed_run(wdbc, wdbc_seed, AppraiserConfig(names=("influence",)), rounds=1)
    figures = Figures()
    figures.show(outcome, final=True)
    shown = figures._figures["timeline"]
    assert f"took {wall_seconds(outcome.timeline):.3g} s" in plots.caption(shown)
    assert figures.outputs["timeline"] in figures.tab("runtime").children
    assert "timeline.csv" in figures.downloads.value


def test_appraise_prints_and_writes_its_timeline(tmp_path, capsys):
    path = tmp_path / "timeline.csv"
    start = time.perf_counter()
    code = main(["appraise", "--task", "wdbc", "--candidates", "4", "--size", "30",
                 "--appraisers", "influence,finetune", "--timeline-out", str(path)])
    wall = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line.rsplit(" ", 1) for line in out.splitlines()
             if line.startswith("seconds ")]
    printed = sum(float(v) for _, v in lines[:-1])
    said = float(lines[-1][1])
    assert lines[-1][0] == "seconds wall" and printed == pytest.approx(said, abs=0.01)
    frame = pd.read_csv(path, keep_default_na=False)
    check_adds_up(frame, wall, outside=0.5)  # parsing the options, writing the files
    assert said == pytest.approx(wall_seconds(frame), abs=1e-3)
    assert phases(frame) == ["task and seed model", "ground truth", "appraisal", "other"]
    assert "seconds appraisal influence set-up " in out


def test_timeline_out_must_differ_from_out(tmp_path, capsys):
    path = str(tmp_path / "same.csv")
    code = main(["appraise", "--task", "wdbc", "--out", path, "--timeline-out", path])
    assert code == 2 and "file of its own" in capsys.readouterr().err
