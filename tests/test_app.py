"""The dashboard driven from Python, as a notebook user (or Voila) drives it."""

import base64
import datetime
import functools
import html
import http.server
import re
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

import mpc_parties
from test_loaders import fake_mnist
from test_private import children_of_this_process

from explorer import plots
from explorer.app import ExplorerApp
from explorer.app.dashboard import TABS
from explorer.app.runner import ProgressPlan, describe
from explorer.config import AppraiserConfig
from explorer.jobs import RANDOM_ORDERS, RunSnapshot, buy_within_budget, run_appraisal
from explorer.market_prices import own_data_thresholds
from explorer.mpc.launcher import kept_parties
from explorer.pricing import PricingRule
from explorer.progress import ACQUISITION, ENCRYPTED, ProgressEvent


def points(array):
    """Plotly 7 sends typed arrays base64-encoded."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def figure(app, name):
    """The plotly JSON an Output shows."""
    return app.outputs[name].outputs[0]["data"]["application/vnd.plotly.v1+json"]


def caption(fig) -> str:
    return fig["layout"]["meta"]["caption"]


def tab_texts(widget) -> list[str]:
    """The text of every HTML widget inside a tab."""
    import ipywidgets as w

    if isinstance(widget, w.HTML):
        return [text(widget.value)]
    return [t for child in getattr(widget, "children", ()) for t in tab_texts(child)]


def wait_for(predicate, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def wait_for_task(app, timeout=60.0) -> bool:
    """Block until the chosen task's seed model is fitted (or failed); True if in time."""
    return app.loader._ready.wait(timeout)


def ready_app(**kwargs) -> ExplorerApp:
    """A dashboard whose seed model (fitted in the background) is ready."""
    app = ExplorerApp(**kwargs)
    assert wait_for_task(app, 60)
    return app


def test_run_fills_every_figure_and_the_table():
    app = ready_app()
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
    for name in ("rank", "correlations", "acquisition", "timeline", "runtime", "prices",
                 "table"):
        assert len(app.outputs[name].outputs) == 1, name
    for name in ("decisions", "flat_prices"):  # bit mode's views
        assert not app.outputs[name].outputs, name
    scatter = figure(app, "rank")
    assert len(points(scatter["data"][0]["x"])) == 12  # one point per candidate
    table = figure(app, "correlations")["data"][0]
    assert table["cells"]["values"][0] == ["influence", "gradient-norm"]
    assert "results.csv" in app.figures.downloads.value
    assert "timeline.csv" in app.figures.downloads.value
    app.figures.figures_button.click()
    app.figures.figures_button.click()  # pressed twice: the same links, not twice as many
    assert app.figures.downloads.value.count("download=") == 2 + 6  # CSVs, figures
    assert "wdbc, logistic 30-2, 12 candidates" in app.figures.run_label.value
    print(f"first figure {first_figure:.2f} s after Run")


def test_prices_draw_the_calibrated_threshold_and_each_reading_is_said_once():
    app = ready_app()
    app.controls["candidates"].value = 8
    app.controls["appraisers"].value = ("influence", "gradient-norm")
    app.run()
    assert app.wait(120) and app.error.value == "", app.error.value
    snapshot = app.figures.outcome.snapshot
    threshold = PricingRule.calibrated(snapshot.seed, 30, snapshot.rate).threshold
    prices = figure(app, "prices")
    line = [shape for shape in prices["layout"]["shapes"] if shape.get("name") == "threshold"]
    assert len(line) == 1 and line[0]["y0"] == pytest.approx(threshold)
    assert f"threshold {threshold:.4g} nats" in {trace["name"] for trace in prices["data"]}
    assert (app.figures.outcome.priced.threshold == threshold).all()

    # each figure says its own reading; the tabs add only what a caption cannot say
    titles = {key: i for i, (key, _) in enumerate(TABS)}
    for name in ("rank", "acquisition", "runtime", "prices"):
        said = " ".join(tab_texts(app.tabs.children[titles[name]]))
        assert caption(figure(app, name))[:60] not in said, name
        assert plots.UTILITY_TEXT not in said and plots.GRADIENT_NORM_TEXT not in said, name
    assert plots.UTILITY_TEXT in caption(figure(app, "rank"))
    assert "own data" in " ".join(tab_texts(app.tabs.children[titles["prices"]]))
    app.figures.scatter_choice.value = "gradient-norm"
    assert plots.GRADIENT_NORM_TEXT in caption(figure(app, "rank"))


def test_the_seed_model_is_fitted_in_the_background_and_run_waits_for_it():
    app = ready_app()
    app.controls["candidates"].value = 6
    app.controls["appraisers"].value = ("gradient-norm",)
    app.controls["task"].value = "digits"
    assert "Fitting the seed model of digits" in app.seed_info.value  # busy, not blocking
    assert app.preview.value == ""  # WDBC's candidates are not shown as the digits market
    app.run()  # before the seed model is there: the run waits for it
    assert app.wait(120) and app.error.value == "", app.error.value
    assert app.figures.outcome.snapshot.task_name == "digits"
    assert not app.outputs["prices"].outputs  # no influence, no prices: the tab says why
    assert "choose influence" in app.figures.notes_of["prices"].value
    assert "test accuracy" in app.seed_info.value and "10 classes" in app.seed_info.value


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


@pytest.fixture(autouse=True)
def no_kept_parties():
    """A Run with real parties keeps party processes for the process's life (a kernel's):
    each test closes them."""
    yield
    kept = kept_parties()
    if kept is not None:
        kept.close()


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
    cancelled = time.perf_counter()
    assert app.wait(30), f"still running {time.perf_counter() - cancelled:.0f} s after cancel"
    assert app.status.value == "cancelled" and app.progress.bar_style == "warning"
    # the cancelled session's processes are gone; the kernel keeps only its party set's
    # forker, and the forker only the set's processes
    kept = kept_parties()
    assert kept is not None and kept.forker is not None
    forker = kept.forker.pid
    assert wait_for(lambda: set(children_of_this_process()) <= {forker}, 10)
    assert wait_for(lambda: {p for p, state in mpc_parties.children_of(forker).items()
                             if state != "Z"} <= set(kept.pids), 10)
    kept.close()
    assert wait_for(lambda: children_of_this_process() == [], 10)


NOW = datetime.datetime.now(datetime.timezone.utc)


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
    assert wait_for_task(app, 60)
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


def text(markup: str) -> str:
    """What an HTML widget reads as, without its tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def upload(app, name: str, content: bytes) -> None:
    app.upload.value = ({"name": name, "type": "text/csv", "size": len(content),
                         "content": memoryview(content), "last_modified": NOW},)


def test_uploads_can_be_appraised_again_and_a_failure_clears_the_old_result(tmp_path):
    from explorer.cli import main

    path = tmp_path / "mine.csv"
    assert main(["sample-candidate", "--task", "wdbc", "--size", "25", "--out", str(path)]) == 0
    content = path.read_bytes()
    app = ready_app()
    app.controls["appraisers"].value = ("influence",)
    upload(app, "mine.csv", content)
    assert app.wait(60) and app.error.value == ""
    first = text(app.upload_result.value)
    assert "task wdbc" in first and "plaintext backend" in first and "influence" in first
    assert "ground truth: only a simulation can know this" in first
    assert app.upload.value == ()  # cleared: choosing the same file again is a change

    app.controls["appraisers"].value = ("gradient-norm",)
    upload(app, "mine.csv", content)  # the very same file
    assert app.wait(60) and app.error.value == ""
    assert "gradient-norm" in app.upload_result.value
    assert "influence" not in app.upload_result.value

    app.controls["appraisers"].value = ("finetune",)
    app.again_button.click()  # without choosing it again
    assert app.wait(60) and "finetune" in app.upload_result.value

    upload(app, "bad.csv", b"a,b\n1,2\n")
    assert app.wait(60)
    assert "bad.csv has no 'label' column" in html.unescape(app.error.value)
    assert app.upload_result.value == ""  # the previous file's values are gone


def test_a_task_switch_during_a_run_changes_nothing_in_its_results():
    def settings(app):
        app.controls["candidates"].value = 20
        app.controls["appraisers"].value = ("influence", "gradient-norm")

    reference = ready_app()
    settings(reference)
    reference.run()
    assert reference.wait(120) and reference.error.value == ""
    expected = reference.figures.outcome

    app = ready_app()
    settings(app)
    app.run()
    assert wait_for(lambda: "Results of" in app.figures.run_label.value, 30)  # snapshot taken
    app.controls["task"].value = "digits"
    app.controls["rate"].value = 5.0  # a price per nat changed mid-run as well
    assert app.runner.running, "the run ended before the task was switched"
    assert app.wait(120) and app.error.value == ""
    got = app.figures.outcome
    assert got.snapshot.task_name == "wdbc" and "wdbc" in app.figures.run_label.value
    assert got.results.drop(columns=["seconds", "plaintext_seconds", "truth_seconds",
                                     "setup_seconds"]).equals(
        expected.results.drop(columns=["seconds", "plaintext_seconds", "truth_seconds",
                                       "setup_seconds"]))
    assert np.array_equal(got.priced.price, expected.priced.price)  # WDBC's rule and rate
    assert np.array_equal(got.priced.accepted, expected.priced.accepted)
    assert got.acquisition.equals(expected.acquisition)
    assert wait_for_task(app, 60) and app.loader.task.name == "digits"  # the new choice stands


def test_a_task_that_fails_to_load_clears_the_shown_results(nothing_on_disk, tmp_path,
                                                           monkeypatch):
    offline = (tmp_path / "offline").as_uri()
    monkeypatch.setenv("APPRAISAL_EXPLORER_MNIST_URL", offline + "/")
    app = ready_app()
    app.controls["candidates"].value = 8
    app.run()
    assert app.wait(120) and app.outputs["rank"].outputs and app.preview.value
    app.controls["task"].value = "mnist"
    assert wait_for(lambda: "unavailable" in app.seed_info.value, 30)
    assert app.preview.value == "" and app.results is None
    assert all(not app.outputs[name].outputs for name in ("rank", "runtime", "table"))
    assert app.figures.run_label.value == ""


def test_mpc_controls_follow_the_backend():
    app = ready_app()
    c = app.controls
    mpc = ("precision_bits", "provider", "reveal", "threshold_sd")
    assert all(c[name].disabled for name in mpc)
    assert c["flat"].disabled and not c["rate"].disabled
    assert "no MPC" in app.provider_info.value and app.threshold_info.value == ""
    c["backend"].value = "simulated"
    assert c["provider"].value == "TFP" and c["provider"].disabled
    assert "TFP" in app.provider_info.value and "TTP" not in app.provider_info.value
    assert not c["precision_bits"].disabled and c["threshold_sd"].disabled  # values revealed
    c["reveal"].value = "bit"
    assert not c["threshold_sd"].disabled and not c["flat"].disabled and c["rate"].disabled
    assert "A threshold per appraiser" in app.threshold_info.value
    c["threshold_sd"].value = 1.5
    assert "plus 1.5 sd" in app.threshold_info.value
    c["backend"].value = "parties"
    assert not c["provider"].disabled
    assert c["provider"].value == "TTP"  # the real parties' provider comes back
    assert "dealer" in app.provider_info.value
    c["backend"].value = "plaintext"
    assert all(c[name].disabled for name in mpc)


def test_every_control_has_a_tooltip_and_presets_set_a_lesson():
    from explorer.app.controls import PRESETS

    app = ready_app()
    widgets = [*app.controls.values(), *app.attack_controls.values(), app.preset,
               app.run_button, app.runner.cancel_button, app.upload, app.again_button,
               app.attack_button, app.compare_button, app.figures.scatter_choice,
               app.figures.figures_button]
    assert all(widget.tooltip for widget in widgets)
    titles = [app.tabs.get_title(i) for i in range(len(app.tabs.children))]
    for name, preset in PRESETS.items():
        app.preset.value = name
        for control, value in preset.settings.items():
            got = app.controls[control].value
            assert (tuple(got) if isinstance(value, tuple) else got) == \
                (tuple(value) if isinstance(value, tuple) else value), (name, control)
        shown = titles[app.tabs.selected_index]
        assert shown == dict(TABS)[preset.tab]
        assert html.escape(preset.lesson) in app.lesson.value

    app.preset.value = "why the gradient norm fails"
    assert wait_for_task(app, 60)
    app.run()
    assert app.wait(120) and app.error.value == ""
    assert app.figures.scatter_choice.value == "gradient-norm"
    assert plots.GRADIENT_NORM_TEXT in caption(figure(app, "rank"))

    app.preset.value = "what a value leaks"
    app.attack()
    assert app.wait(120) and app.error.value == ""
    leak = app.outputs["leakage"].outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert {t["name"] for t in leak["data"]} == {"value, none", "bit, bit-only",
                                                  "value, rounding", "value, noise"}


def test_real_parties_fill_the_party_lanes_and_progress_moves(capsys):
    app = ready_app()
    c = app.controls
    c["candidates"].value = 6
    c["appraisers"].value = ("influence",)
    c["backend"].value = "parties"
    c["provider"].value = "TTP"
    changes: list[tuple[float, str]] = []
    app.status.observe(lambda ch: changes.append((time.perf_counter(), ch["new"])), "value")
    app.run()

    def acquiring() -> set[str]:
        return {s for t, s in changes if "acquisition: greedy" in s}

    # the lanes fill in when the appraisal's session ends; then the acquisition's private
    # session moves the status too, and the run is cancelled there if it is still going
    assert wait_for(lambda: len(acquiring()) >= 2 or not app.runner.running, 300)
    app.cancel()
    assert app.wait(60) and app.error.value == "", app.error.value
    lanes = text(app.party_view.lanes.value)
    account = app.figures.outcome.accounts["influence"]
    assert account.provider == "TTP" and account.mode == "parties"
    for wanted in ("Model owner", "Between them", "Data owner", "TTP", "dealer",
                 "theta (31, 1)", "candidate features A, masked once for 2 copies (6, 30, 31)",
                 "candidate labels Y ×2 (6, 30, 1)",
                 f"{account.revealed} values", "to both",
                 f"{account.party_bytes['model owner'] / 1e6:.2f} MB",
                 f"{account.party_bytes['data owner'] / 1e6:.2f} MB",
                 f"{account.party_rounds['data owner']} rounds"):
        assert wanted in lanes, wanted
    assert account.revealed == 12 and account.party_bytes["data owner"] > 0
    kept = kept_parties()  # the run's sessions were served by the kernel's own processes
    # (the cancelled session's are replaced in the background)
    assert kept is not None and wait_for(lambda: len(kept.pids) == 3, 10)

    session = [t for t, s in changes if "encrypted session" in s]
    acquisition = acquiring()
    rate = (len(session) - 1) / (session[-1] - session[0])
    assert rate >= 2.0, f"{rate:.1f} progress updates a second during the session"
    # the greedy rounds are one private session on the kept processes, over in well under a
    # second here: the status shows the acquisition at least once, and more often when it lasts
    assert len(acquisition) >= 1
    with capsys.disabled():
        print(f"\nprogress during the encrypted session: {len(session)} updates, "
              f"{rate:.1f} a second; {len(acquisition)} during the acquisition")


def test_bit_mode_uses_a_threshold_per_appraiser_and_shows_its_own_prices(tmp_path):
    """Simulated CrypTen, bits revealed: each appraiser is judged against its own-data
    threshold (the snapshot's), the Prices tab shows the decisions and the flat prices with
    those thresholds, the ties are explained, and acquisition says why it is not run; an
    uploaded file is judged against thresholds for its own size."""
    app = ready_app()
    c = app.controls
    c["candidates"].value = 10
    c["levels"].value = (0.0, 0.5)
    c["appraisers"].value = ("influence", "gradient-norm")
    c["backend"].value = "simulated"
    c["reveal"].value = "bit"
    c["threshold_sd"].value = 0.0  # the own-data mean: some candidates pass, some do not
    c["flat"].value = 40.0
    app.run()
    assert app.wait(300) and app.error.value == "", app.error.value
    outcome = app.figures.outcome
    snapshot = outcome.snapshot
    expected = own_data_thresholds(snapshot.seed, snapshot.config, 30, z=0.0)
    assert snapshot.thresholds == expected and snapshot.threshold_sd == 0.0
    assert expected["gradient-norm"] > 100 * abs(expected["influence"])  # not one scale

    # each bit is that appraiser's value against its own threshold (values from plaintext,
    # away from the threshold, where fixed point cannot flip the comparison)
    plain = ready_app()
    plain.controls["candidates"].value = 10
    plain.controls["levels"].value = (0.0, 0.5)
    plain.controls["appraisers"].value = ("influence", "gradient-norm")
    plain.run()
    assert plain.wait(120) and plain.error.value == ""
    values = plain.results.set_index(["appraiser", "candidate"]).value
    bits = outcome.results.set_index(["appraiser", "candidate"]).value
    checked = 0
    for (name, candidate), value in values.items():
        if abs(value - expected[name]) > 1e-3 * max(1.0, abs(expected[name])):
            assert bits[name, candidate] == float(value > expected[name]), (name, candidate)
            checked += 1
    assert checked >= 15
    assert 0 < bits.sum() < len(bits)  # a picture with both verdicts

    assert not app.outputs["prices"].outputs  # value mode's bars
    decisions, flat = figure(app, "decisions"), figure(app, "flat_prices")
    assert plots.TIES_TEXT in caption(decisions)
    assert "they tie" in caption(flat)
    rows = " ".join(decisions["layout"]["yaxis2"]["categoryarray"])  # one row per appraiser
    for name, threshold in expected.items():
        assert f"{name} > {threshold:.3g}" in rows, name
    priced = outcome.priced
    assert set(priced.price) <= {0.0, 40.0}
    assert (priced.price == 40.0).sum() == bits.sum()
    assert (priced.threshold == priced.appraiser.map(expected)).all()
    prices_tab = " ".join(tab_texts(app.tabs.children[[k for k, _ in TABS].index("prices")]))
    for name, threshold in expected.items():
        assert f"{name} {threshold:.4g}" in prices_tab
    assert "plus 0 sd" in prices_tab and "flat price 40" in prices_tab
    assert outcome.acquisition is None and not app.outputs["acquisition"].outputs
    assert "a bit cannot say which is highest" in text(app.figures.notes_of["acquisition"].value)
    assert plots.TIES_TEXT in caption(figure(app, "rank"))
    readings = figure(app, "correlations")["data"][0]["cells"]["values"][2]
    assert any("bits only" in r for r in readings)

    from explorer.cli import main

    path = tmp_path / "mine.csv"
    assert main(["sample-candidate", "--task", "wdbc", "--size", "25", "--out", str(path)]) == 0
    upload(app, "mine.csv", path.read_bytes())
    assert app.wait(120) and app.error.value == "", app.error.value
    for_file = own_data_thresholds(snapshot.seed, snapshot.config, 25, z=0.0)
    said = text(app.upload_result.value)
    for name, threshold in for_file.items():
        assert re.search(f"{name}(accepted: value > |rejected: value ≤ ){threshold:.4g}",
                         said), (name, said)


def test_acquisition_reports_each_round_to_the_progress_bar():
    """run_appraisal passes the acquisition's rounds on as events whose done only grows, up to
    every round of every sequence; the dashboard's bar moves with them."""
    app = ready_app()
    app.controls["candidates"].value = 6
    name, task, seed, market = app.loader.wait_ready(threading.Event())
    snapshot = RunSnapshot.take(name, task, seed, market, AppraiserConfig(names=("influence",)),
                                rate=1000.0)
    events = []
    outcome = run_appraisal(snapshot, events.append)
    rounds = [e for e in events if e.phase == ACQUISITION and e.elapsed is not None]
    total = snapshot.rounds * (1 + RANDOM_ORDERS)
    assert snapshot.rounds == 5 and outcome.acquisition is not None
    done = [e.done for e in rounds]
    assert done == sorted(done) and set(range(1, total + 1)) <= set(done)
    assert all(e.total == total for e in rounds)

    # where the bar puts each of them (JobRunner.on_event shows plan.position): forwards,
    # a step per round, inside the acquisition's segment of the bar
    plan = ProgressPlan(("influence",), len(market), snapshot.rounds)
    segment = plan.segments.index(ACQUISITION) / len(plan.segments)
    positions = [plan.position(e) for e in rounds]
    assert positions == sorted(positions) and len(set(positions)) >= total
    assert segment < positions[0] and positions[-1] <= 1.0


def test_an_encrypted_session_says_what_its_processes_have_sent_so_far():
    running = ProgressEvent(ENCRYPTED, "influence", 0, 20, elapsed=1.25, parties_up=3,
                            bytes_sent=4_200_000)
    assert describe(running) == ("influence: encrypted session, 1.2 s, 3 processes up, "
                                 "4.2 MB sent (0/20 verified)")
    simulated = ProgressEvent(ENCRYPTED, "influence", 0, 20, elapsed=1.25, parties_up=1)
    assert "sent" not in describe(simulated)


def test_the_acquisition_tab_buys_within_a_budget_from_the_last_run():
    """Before a run the button says to run first; after one it draws the budgeted buyer on
    that run's market (buy_within_budget's frame), and a new run clears the stale figure."""
    app = ready_app()
    app.buy_button.click()
    assert app.wait(30)
    assert text(app.error.value) == "press Run first: the buyer buys from that run's market."
    app.controls["candidates"].value = 8
    app.controls["appraisers"].value = ("influence",)
    app.run()
    assert app.wait(120) and app.error.value == "", app.error.value
    app.budget.value = 60.0
    app.buy_button.click()
    assert app.wait(120) and app.error.value == "", app.error.value
    assert app.status.value == "bought within a budget of 60"
    frame = buy_within_budget(app.figures.outcome.snapshot, 60.0)
    drawn = figure(app, "budget")
    lines = {t["name"]: t for t in drawn["data"] if t.get("mode") == "lines"
             and t.get("fill") != "toself"}
    assert len(lines) == 3
    finals = frame.sort_values("round").groupby("strategy").test_loss.last()
    (greedy,) = [t for name, t in lines.items() if name.startswith("greedy")]
    assert points(greedy["y"])[-1] == pytest.approx(finals["greedy"])
    assert points(greedy["x"])[-1] == 60.0
    app.controls["appraisers"].value = ("gradient-norm",)
    app.run()
    assert app.wait(120) and not app.outputs["budget"].outputs
    app.buy_button.click()
    assert app.wait(30)
    assert "run with influence among the appraisers" in text(app.error.value)


def test_the_blogs_surrogate_lesson_runs_in_plaintext_and_is_refused_under_mpc():
    app = ready_app()
    app.preset.value = "the blog's surrogate"
    assert "surrogate" in app.controls["appraisers"].value
    assert wait_for_task(app, 60)
    app.run()
    assert app.wait(120) and app.error.value == ""
    assert app.figures.scatter_choice.value == "surrogate"
    assert set(app.results.appraiser) == {"surrogate", "influence"}
    app.controls["backend"].value = "simulated"
    app.run()
    assert app.wait(120)
    assert "no private form" in app.error.value


def test_the_seed_model_control_makes_an_mlp_run_and_a_lesson_compares_the_families():
    from explorer.experiments import appraise_market
    from explorer.metrics import model_correlations
    from explorer.seed import NetworkSeed
    from explorer.tasks import TASKS

    app = ready_app()
    c = app.controls
    assert not c["lam_cv"].disabled  # the logistic model's λ may be cross-validated
    c["candidates"].value, c["size"].value = 3, 10
    c["appraisers"].value = ("influence", "gradient-norm")
    c["hidden"].value = 4
    c["model"].value = "mlp"
    assert c["lam"].value == TASKS["wdbc"].network_lam
    assert c["lam_cv"].disabled and not c["lam_cv"].value
    c["hidden"].value = 5  # chosen while the first network is still fitting: never shown
    app.run()
    assert app.wait(300) and app.error.value == "", app.error.value
    assert "mlp 30-5-2" in app.seed_info.value
    snapshot = app.figures.outcome.snapshot
    assert isinstance(snapshot.seed, NetworkSeed) and snapshot.seed.architecture.hidden == (5,)
    assert set(app.results.model) == {"mlp"} and "mlp 30-5-2" in app.figures.run_label.value
    assert len(app.outputs["acquisition"].outputs) == 1  # buying refits the network
    direct = appraise_market(snapshot.seed, snapshot.market, snapshot.config)
    assert np.allclose(app.results.value, direct.value)
    assert np.allclose(app.results.utility, direct.utility)

    app.preset.value = "does influence hold for a neural network?"
    titles = [app.tabs.get_title(i) for i in range(len(app.tabs.children))]
    assert titles[app.tabs.selected_index] == "Seed models"
    assert "Compare seed models" in app.lesson.value and c["model"].value == "logistic"
    c["candidates"].value, c["hidden"].value = 4, 4
    assert wait_for_task(app, 120)
    app.compare()
    assert app.wait(300) and app.error.value == "", app.error.value
    bars = figure(app, "models")
    rhos = model_correlations(app.models_results)
    assert [t["name"] for t in bars["data"]] == ["logistic 30-2", "mlp 30-4-2 silu",
                                                  "last-layer 30-4-2 silu"]
    for trace in bars["data"]:
        mine = rhos[rhos.description == trace["name"]].set_index("appraiser").spearman
        assert np.allclose(points(trace["y"]), mine[list(trace["x"])], equal_nan=True)
    assert "retraining" in caption(bars)

    # a last-layer model runs, is priced, and says why it is not bought from
    c["model"].value = "last-layer"
    assert wait_for_task(app, 120)
    app.run()
    assert app.wait(300) and app.error.value == "", app.error.value
    assert set(app.results.model) == {"last-layer"}
    assert not app.outputs["acquisition"].outputs and len(app.outputs["prices"].outputs) == 1
    assert "last-layer seed model" in app.figures.notes_of["acquisition"].value
