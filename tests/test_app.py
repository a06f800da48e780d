"""The dashboard driven from Python, as a notebook user (or Voila) drives it."""

import base64
import datetime
import html
import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from test_private import children_of_this_process

from explorer.app import ExplorerApp


def points(array):
    """Plotly 7 sends typed arrays base64-encoded."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def wait_for(predicate, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_run_fills_every_figure_and_the_table():
    app = ExplorerApp()
    assert "test accuracy" in app.seed_info.value
    app.controls["candidates"].value = 12
    app.controls["appraisers"].value = ("influence", "gradient-norm")
    start = time.perf_counter()
    app.run()
    assert wait_for(lambda: app.outputs["rank"].outputs, 30)
    first_figure = time.perf_counter() - start
    assert app.wait(120)
    assert app.error.value == "" and app.status.value.startswith("done")
    assert app.progress.value == app.progress.max and app.progress.bar_style == "success"
    assert set(app.results.appraiser) == {"influence", "gradient-norm"}
    assert len(app.results) == 24
    for name in ("rank", "acquisition", "runtime", "prices", "table"):
        assert len(app.outputs[name].outputs) == 1, name
    scatter = app.outputs["rank"].outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert len(points(scatter["data"][0]["x"])) == 12  # one point per candidate
    assert "results.csv" in app.downloads.value
    print(f"first figure {first_figure:.2f} s after Run")


def test_preview_follows_the_market_controls():
    app = ExplorerApp()
    app.controls["candidates"].value = 7
    assert app.preview.value.count("<tr") == 8  # header + one row per candidate
    app.controls["size"].value = app.controls["size"].max
    app.controls["candidates"].value = 5
    assert app.error.value == "" and len(app._market) == 5


def test_errors_are_shown_as_sentences():
    app = ExplorerApp()
    app.controls["appraisers"].value = ()
    app.run()
    assert app.wait(30)
    assert "choose at least one appraiser" in app.error.value
    assert app.progress.bar_style == "danger" and not app.run_button.disabled


def test_cancel_stops_a_long_crypten_job_and_its_parties():
    app = ExplorerApp()
    app.controls["task"].value = "digits"
    app.controls["candidates"].value = 10
    app.controls["size"].value = 100
    app.controls["appraisers"].value = ("finetune",)
    app.controls["steps"].value = 400
    app.controls["backend"].value = "parties"
    app.run()
    assert wait_for(lambda: "encrypted session" in app.status.value, 90)
    ticks = {app.status.value}
    assert wait_for(lambda: len(ticks | {app.status.value}) > 2 or ticks.add(app.status.value),
                    5)  # the heartbeat moves at least once a second
    app.cancel()
    assert app.wait(30)
    assert app.status.value == "cancelled" and app.progress.bar_style == "warning"
    assert wait_for(lambda: children_of_this_process() == [], 10)


NOW = datetime.datetime.now(datetime.timezone.utc)


def test_upload_appraises_a_users_file(tmp_path):
    from explorer.cli import main

    path = tmp_path / "mine.csv"
    assert main(["sample-candidate", "--task", "wdbc", "--size", "25", "--out", str(path)]) == 0
    app = ExplorerApp()
    content = path.read_bytes()
    app.upload.value = ({"name": "mine.csv", "type": "text/csv", "size": len(content),
                         "content": memoryview(content), "last_modified": NOW},)
    assert app.wait(60)
    assert "utility by retraining" in app.upload_result.value
    assert "influence" in app.upload_result.value and app.error.value == ""
    bad = b"a,b\n1,2\n"
    app.upload.value = ({"name": "bad.csv", "type": "text/csv", "size": len(bad),
                         "content": memoryview(bad), "last_modified": NOW},)
    assert app.wait(60)
    assert "bad.csv has no 'label' column" in html.unescape(app.error.value)
