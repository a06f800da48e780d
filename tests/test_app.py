"""The dashboard driven from Python, as a notebook user (or Voila) drives it."""

import base64
import datetime
import functools
import html
import http.server
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from test_loaders import fake_mnist
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


def ready_app(**kwargs) -> ExplorerApp:
    """A dashboard whose seed model (fitted in the background) is ready."""
    app = ExplorerApp(**kwargs)
    assert app.wait_for_task(60)
    return app


def test_run_fills_every_figure_and_the_table():
    app = ExplorerApp()
    assert "fitting the seed model" in app.seed_info.value.lower()  # busy, in the background
    assert app.wait_for_task(60) and "test accuracy" in app.seed_info.value
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
    assert "results.csv" in app.figures.downloads.value
    app.figures.figures_button.click()
    app.figures.figures_button.click()  # pressed twice: the same links, not twice as many
    assert app.figures.downloads.value.count("download=") == 1 + 4
    assert "wdbc, 12 candidates" in app.figures.run_label.value
    print(f"first figure {first_figure:.2f} s after Run")


def test_preview_follows_the_market_controls():
    app = ready_app()
    app.controls["candidates"].value = 7
    assert app.preview.value.count("<tr") == 8  # header + one row per candidate
    app.controls["size"].value = app.controls["size"].max
    app.controls["candidates"].value = 5
    assert app.error.value == "" and len(app.loader.market) == 5


def test_errors_are_shown_as_sentences():
    app = ready_app()
    app.controls["appraisers"].value = ()
    app.run()
    assert app.wait(30)
    assert "choose at least one appraiser" in app.error.value
    assert app.progress.bar_style == "danger" and not app.run_button.disabled


def test_cancel_stops_a_long_crypten_job_and_its_parties():
    app = ready_app()
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
    app = ready_app()
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


def task_labels(app):
    dropdown = app.controls["task"]
    return dict(zip(dropdown._options_values, dropdown._options_labels, strict=True))


@pytest.fixture
def nothing_on_disk(tmp_path, monkeypatch):
    """An empty cache and no shared MNIST folder: every file-based task needs a download."""
    monkeypatch.setenv("APPRAISAL_EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("explorer.loaders.mnist.default_dirs", lambda: [])
    return tmp_path / "cache"


def test_a_task_whose_data_cannot_be_had_is_shown_unavailable(nothing_on_disk, tmp_path,
                                                              monkeypatch):
    offline = (tmp_path / "offline").as_uri()  # every download fails at once, no network used
    monkeypatch.setenv("APPRAISAL_EXPLORER_MNIST_URL", offline + "/")
    monkeypatch.setenv("APPRAISAL_EXPLORER_CIFAR_URL", offline + "/cifar-10-python.tar.gz")
    app = ExplorerApp()
    assert task_labels(app) == {"wdbc": "wdbc", "digits": "digits",
                                "mnist": "mnist (12 MB to download)",
                                "mnist-3v5": "mnist-3v5 (12 MB to download)",
                                "cifar-planecar": "cifar-planecar (163 MB to download)"}
    start = time.perf_counter()
    app.controls["task"].value = "mnist"
    assert time.perf_counter() - start < 1.0  # the attempt runs in the background
    assert wait_for(lambda: "unavailable" in app.seed_info.value, 30)
    sentence = ("mnist is unavailable: MNIST is not on this server and could not be downloaded; "
                "choose another task.")
    assert sentence in html.unescape(app.seed_info.value)
    assert "--" not in app.seed_info.value and app.error.value == ""
    assert app.controls["task"].value == "mnist" and app.preview.value == ""
    labels = task_labels(app)
    assert labels["mnist"] == "mnist (unavailable)"
    assert labels["mnist-3v5"] == "mnist-3v5 (unavailable)"  # the same data
    assert labels["cifar-planecar"] == "cifar-planecar (163 MB to download)"  # not tried yet
    app.run()
    assert app.wait(30)
    assert sentence in html.unescape(app.error.value)

    app.controls["task"].value = "wdbc"  # the others still work
    assert app.wait_for_task(60)
    assert "test accuracy" in app.seed_info.value and app.error.value == ""
    app.controls["task"].value = "mnist-3v5"  # known unavailable: said at once
    assert "mnist-3v5 is unavailable" in app.seed_info.value
    assert list(nothing_on_disk.rglob("*")) in ([], [nothing_on_disk / "mnist"])


class SlowHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.5)  # a slow network: four files take two seconds at least
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_mnist_server(tmp_path):
    """A loopback server with small MNIST-format files (1,000 digits) behind a slow link."""
    root = tmp_path / "served"
    root.mkdir()
    fake_mnist(root, n=800, prefix="train")
    fake_mnist(root, n=200, prefix="t10k", seed=1)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(SlowHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_missing_mnist_is_downloaded_into_the_cache_without_holding_up_the_interface(
        nothing_on_disk, slow_mnist_server, monkeypatch):
    monkeypatch.setenv("APPRAISAL_EXPLORER_MNIST_URL", slow_mnist_server)
    app = ExplorerApp()
    start = time.perf_counter()
    app.controls["task"].value = "mnist"
    assert time.perf_counter() - start < 1.0
    assert "Downloading MNIST (12 MB) into the cache" in app.seed_info.value
    app.run()  # too early: Run says why
    assert app.wait(30) and "still" in app.error.value
    assert wait_for(lambda: "test accuracy" in app.seed_info.value, 120)
    assert time.perf_counter() - start > 2.0  # it did wait for the slow download
    assert wait_for(lambda: len(app.loader.market) == app.controls["candidates"].value, 10)
    assert sorted(p.name for p in (nothing_on_disk / "mnist").iterdir()) == sorted(
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
    labels = task_labels(app)
    assert labels["mnist"] == "mnist" and labels["mnist-3v5"] == "mnist-3v5"
    assert app.controls["task"].value == "mnist" and app.error.value == ""
