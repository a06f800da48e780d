"""The dashboard as a person uses it: Voila serves notebooks/explorer.ipynb on 127.0.0.1 (the
kernel imports this checkout: jupyter_env puts it first on PYTHONPATH) and headless Chromium
(Debian's, driven by Playwright) uses it on a 1280x720 screen, a projector's:

- Run on WDBC draws one point per candidate, with the figure on screen without scrolling;
- a real-parties run (TTP, influence) fills the three party lanes, and the status moves at least
  twice a second during the encrypted session;
- bit mode (simulated CrypTen, bits revealed) shows each appraiser's own threshold, which
  candidates its bit accepted and their flat prices, and says why acquisition is not run;
- a task chosen mid-run changes nothing in that run; a failed upload clears the previous result;
- the kernel each page load starts goes away when the page is left or closed, warm kernels
  (Voila's pool, `make demo WARM=n`) included.

Timings are printed (``pytest -s`` shows them); screenshots are kept in each test's tmp folder and
copied to /tmp/browser-shots/. ``make test`` installs Debian's chromium when it is missing."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from jupyter_env import CHROMIUM, NOTEBOOKS, alive, descendants, isolated_env, voila_server

pytest.importorskip("voila", reason="the app extra is not installed: pip install -e '.[app]'")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no browser at {CHROMIUM}; `make test` "
                       f"installs Debian's chromium (apt-get install chromium)"),
]

SHOTS = Path("/tmp/browser-shots")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
RENDER_TIMEOUT_MS = 180_000  # first render imports torch and the app in a fresh kernel
RUN_TIMEOUT_MS = 180_000


# binder/voila.py's culling with timings short enough for a test
CULL_IDLE, CULL_INTERVAL = 8, 1
SHORT_CULLING = (f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE}",
                 f"--MappingKernelManager.cull_interval={CULL_INTERVAL}")


def serve(tmp_path, options=()):
    """Voila serving the notebooks folder (so /voila/render/explorer.ipynb is the dashboard) with
    the project's server settings and ``options``, stopped with its kernels whatever happens."""
    home = tmp_path / "home"
    home.mkdir()
    with voila_server(NOTEBOOKS, home, options=options) as server:
        yield server
        tree = descendants(server.process.pid)  # the server's kernels, before it is stopped
    assert not [pid for pid in tree if alive(pid)], "a kernel outlived the Voila server"


@pytest.fixture
def voila(tmp_path):
    yield from serve(tmp_path)


@pytest.fixture
def culling_voila(tmp_path):
    yield from serve(tmp_path, SHORT_CULLING)


# what `make demo WARM=1` sets through EXPLORER_WARM_KERNELS (binder/voila.py)
ONE_WARM_KERNEL = ("--VoilaConfiguration.preheat_kernel=True",
                   "--VoilaConfiguration.default_pool_size=1")


@pytest.fixture
def warm_voila(tmp_path):
    yield from serve(tmp_path, (*SHORT_CULLING, *ONE_WARM_KERNEL))


@pytest.fixture
def app_defaults():
    """What the served notebook's ExplorerApp() starts with (built here, without a kernel)."""
    app_module = pytest.importorskip("explorer.app", reason="explorer.app is not written yet")
    app = app_module.ExplorerApp()
    task = app.controls["task"]
    labels = dict(zip(task._options_values, task._options_labels, strict=True))
    backend = app.controls["backend"]
    backend_labels = dict(zip(backend._options_values, backend._options_labels, strict=True))
    return {"wdbc": labels["wdbc"], "candidates": int(app.controls["candidates"].value),
            "backend": backend.value, "plaintext": backend_labels.get("plaintext")}


def dropdown(page, option_label: str):
    """The <select> of the ipywidgets Dropdown that offers ``option_label``."""
    return page.locator(".widget-dropdown select").filter(
        has=page.locator("option", has_text=re.compile(f"^{re.escape(option_label)}$")))


VIEWPORT = {"width": 1280, "height": 720}  # a projector


@contextlib.contextmanager
def chromium(tmp_path):
    """Headless Chromium for one test, closed whatever happens."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                    env=isolated_env(tmp_path / "chromium-home"))
        try:
            yield browser
        finally:
            browser.close()


def open_dashboard(browser, server, viewport=VIEWPORT):
    """A page showing the dashboard, and the seconds from navigation to its Run button."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=viewport)
    start = time.perf_counter()
    page.goto(f"{server.url}/voila/render/explorer.ipynb", wait_until="domcontentloaded",
              timeout=RENDER_TIMEOUT_MS)
    expect(run_button(page)).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    return page, time.perf_counter() - start


def run_button(page):
    return page.locator(".widget-button", has_text=re.compile(r"^\s*Run\s*$"))


def status_line(page):
    """The status next to the progress bar."""
    return page.locator(".widget-hprogress + .widget-html")


def keep(shots: list[Path]) -> None:
    SHOTS.mkdir(exist_ok=True)
    for png in shots:
        shutil.copy(png, SHOTS / png.name)


def test_dashboard_runs_wdbc_and_shows_the_figure_on_a_projector(voila, app_defaults, tmp_path):
    """At 1280x720 the Run button and the figure's top are on screen without scrolling; one
    point per candidate, the correlation table under the scatter; the Prices tab draws the
    pricing threshold; the first render and the first figure are timed."""
    from playwright.sync_api import expect

    before = set(descendants(os.getpid()))
    n = app_defaults["candidates"]
    shot = tmp_path / "projector-1280x720.png"
    shots = [shot, tmp_path / "rank-scatter.png", tmp_path / "rank-and-correlations.png",
             tmp_path / "prices-value.png", tmp_path / "runtime-timeline.png"]
    with chromium(tmp_path) as browser:
        page, first_render = open_dashboard(browser, voila)
        dropdown(page, app_defaults["wdbc"]).select_option(label=app_defaults["wdbc"])
        if app_defaults["backend"] != "plaintext":  # a ToggleButtons: click "plaintext"
            page.locator(".widget-toggle-button",
                         has_text=app_defaults["plaintext"]).click()
        scatter = page.locator(".js-plotly-plot").filter(
            has=page.locator(".gtitle", has_text="influence vs utility"))
        points = scatter.locator(".scatterlayer .point")
        expect(points).to_have_count(0)

        clicked = time.perf_counter()
        run_button(page).click()
        expect(points.first).to_be_attached(timeout=RUN_TIMEOUT_MS)
        first_point = time.perf_counter() - clicked
        expect(points).to_have_count(n)
        bar = page.locator(".widget-hprogress .progress-bar").first
        expect(bar).to_have_attribute("style", re.compile(r"width:\s*100%"))
        expect(page.get_by_text("Traceback")).to_have_count(0)
        figure = scatter.bounding_box()
        run = run_button(page).bounding_box()
        scrolled = page.evaluate("document.scrollingElement.scrollTop")
        page.screenshot(path=str(shot))
        scatter.screenshot(path=str(shots[1]))
        table = page.locator(".js-plotly-plot").filter(
            has=page.locator(".gtitle", has_text="How well each appraiser ranks"))
        expect(table).to_be_visible()
        below = table.bounding_box()["y"] >= figure["y"] + figure["height"] - 1
        table.scroll_into_view_if_needed()
        page.screenshot(path=str(shots[2]))

        page.get_by_role("tab", name="Prices").click()
        prices = page.locator(".js-plotly-plot").filter(
            has=page.locator(".gtitle", has_text="Prices of the candidate datasets"))
        threshold = prices.locator(".legendtext", has_text=re.compile(r"^threshold "))
        expect(threshold).to_have_count(1)
        page.screenshot(path=str(shots[3]))

        page.get_by_role("tab", name="Runtime").click()
        timeline = page.locator(".js-plotly-plot").filter(
            has=page.locator(".gtitle", has_text=re.compile(r"Where the run's .* s went")))
        expect(timeline).to_be_visible()
        page.screenshot(path=str(shots[4]))
    keep(shots)
    print(f"\nvoila first render (navigation to Run button): {first_render:.1f} s; click to first "
          f"scatter point: {first_point:.1f} s; {n} points; figure from y={figure['y']:.0f} to "
          f"{figure['y'] + figure['height']:.0f} of {VIEWPORT['height']}; screenshots in {SHOTS}")
    assert scrolled == 0
    assert run["y"] >= 0 and run["y"] + run["height"] <= VIEWPORT["height"]
    assert 0 <= figure["y"] < VIEWPORT["height"] - 100, "the figure starts below the screen"
    assert below, "the correlation table is not under the scatter"
    server = {voila.process.pid, *descendants(voila.process.pid)}  # stopped by the fixture
    leftover = set(descendants(os.getpid())) - before - server
    assert not leftover, f"processes left behind by the browser: {sorted(leftover)}"


def test_party_lanes_fill_in_from_a_real_parties_run(voila, tmp_path):
    """WDBC, influence, real parties with the TTP dealer: the lanes show each party's encrypted
    inputs with shapes, its bytes and rounds, the provider, and what was revealed to whom; the
    status moves at least twice a second during the encrypted session."""
    from playwright.sync_api import expect

    shots = [tmp_path / "parties-live.png", tmp_path / "parties-lanes.png"]
    with chromium(tmp_path) as browser:
        page, _ = open_dashboard(browser, voila)
        page.get_by_text("3. Appraisers").click()
        page.get_by_label("appraisers").select_option(["influence"])
        page.get_by_text("4. Backend and privacy").click()
        page.locator(".widget-toggle-button", has_text="real parties").click()
        expect(page.get_by_text("a third dealer process")).to_be_visible()
        # every change of the status line, timed in the page
        status_line(page).evaluate("""el => { window.aeChanges = [];
            new MutationObserver(() => window.aeChanges.push([performance.now(),
                el.textContent])).observe(el, {subtree: true, childList: true,
                                               characterData: true}); }""")
        run_button(page).click()
        page.get_by_role("tab", name="Who sees what").click()
        expect(page.get_by_text("encrypted session").first).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots[0]))
        lanes = page.locator(".ae-lanes")
        expect(lanes).to_be_visible(timeout=RUN_TIMEOUT_MS)
        text = lanes.inner_text()
        page.screenshot(path=str(shots[1]))
        changes = page.evaluate("window.aeChanges")
        # skip the acquisition if it is still going (one session on the kept processes is
        # often over by now): clicked in the page, so that a run ending meanwhile is no race
        page.locator(".widget-button", has_text="Cancel").evaluate(
            "b => b.disabled || b.click()")
        expect(status_line(page)).to_have_text(re.compile("cancelled|done"),
                                               timeout=60_000)
    keep(shots)
    for wanted in ("Model owner", "Between them", "Data owner", "TTP", "a third dealer process",
                   "theta (31, 1)", "candidate features A, masked once for 2 copies (20, 30, 31)",
                   "candidate labels Y ×2 (20, 30, 1)", "40 values", "to both", " MB",
                   " rounds", "not θ̂"):
        assert wanted in text, wanted
    assert "TFP" not in text
    session = [t for t, s in changes if "encrypted session" in s]
    rate = 1000 * (len(session) - 1) / (session[-1] - session[0])
    print(f"\nstatus updates during the encrypted session: {len(session)}, {rate:.1f} a second")
    assert rate >= 2.0


def test_bit_mode_shows_its_decisions_and_flat_prices(voila, tmp_path):
    """WDBC, influence and gradient norm, simulated CrypTen revealing bits, thresholds at the
    own-data mean: the threshold control explains itself, the Prices tab shows each appraiser's
    threshold, its accept/reject decisions and the flat prices, with the figure's top on a
    1280x720 screen; the Acquisition tab says why greedy acquisition is not run."""
    from playwright.sync_api import expect

    shots = [tmp_path / "bit-prices.png", tmp_path / "bit-flat-prices.png",
             tmp_path / "bit-scatter.png"]
    with chromium(tmp_path) as browser:
        page, _ = open_dashboard(browser, voila)
        page.get_by_text("4. Backend and privacy").click()
        page.locator(".widget-toggle-button", has_text="simulated").click()
        page.locator(".widget-toggle-button", has_text=re.compile(r"^\s*bit\s*$")).click()
        expect(page.get_by_text("A threshold per appraiser")).to_be_visible()
        sd = page.get_by_label("threshold: sd")
        sd.fill("0")
        sd.press("Enter")
        expect(page.get_by_text("plus 0 sd. Data like its own")).to_be_visible()
        started = time.perf_counter()
        run_button(page).click()
        expect(status_line(page)).to_have_text(re.compile("^done"), timeout=RUN_TIMEOUT_MS)
        seconds = time.perf_counter() - started
        expect(page.get_by_text("Traceback")).to_have_count(0)
        scatter = page.locator(".js-plotly-plot").filter(
            has=page.locator(".gtitle", has_text="influence vs utility"))
        expect(scatter).to_be_visible()
        page.screenshot(path=str(shots[2]))

        page.get_by_role("tab", name="Prices").click()
        decisions = page.locator(".js-plotly-plot").filter(
            has=page.locator(".gtitle", has_text="What bit mode revealed"))
        expect(decisions).to_be_visible()
        expect(decisions.locator(".scatterlayer .point").first).to_be_attached()
        note = page.locator(".widget-html", has_text="Each appraiser's threshold").inner_text()
        top = decisions.bounding_box()["y"]
        page.screenshot(path=str(shots[0]))
        flat = page.locator(".js-plotly-plot").filter(
            has=page.locator(".gtitle", has_text="Flat prices from revealed bits"))
        flat.scroll_into_view_if_needed()
        expect(flat.locator(".legendtext", has_text="threshold").first).to_be_visible()
        legend = " ".join(flat.locator(".legendtext").all_text_contents())
        page.screenshot(path=str(shots[1]))

        page.get_by_role("tab", name="Acquisition").click()
        expect(page.get_by_text("a bit cannot say which is highest")).to_be_visible()
    keep(shots)
    print(f"\nbit mode, 20 candidates, simulated CrypTen: Run to done {seconds:.1f} s; decisions "
          f"figure top at y={top:.0f}")
    assert "influence" in note and "gradient-norm" in note and "plus 0 sd" in note
    assert re.search(r"influence \(threshold [-0-9.e]+\): \d+ of 20 bought", legend), legend
    assert re.search(r"gradient-norm \(threshold [0-9.e]+\): \d+ of 20 bought", legend), legend
    assert 0 <= top < VIEWPORT["height"] - 100, "the decisions figure starts below the screen"


def test_a_task_switch_mid_run_and_a_failed_upload(voila, tmp_path):
    """A run keeps the task it started with when another is chosen meanwhile; a failed upload
    clears the previous file's result; the same file can be chosen again."""
    from playwright.sync_api import expect

    from explorer.cli import main

    good = tmp_path / "mine.csv"
    assert main(["sample-candidate", "--task", "wdbc", "--size", "25", "--out", str(good)]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    shots = [tmp_path / "task-switch.png", tmp_path / "upload-good.png",
             tmp_path / "upload-failed.png"]
    with chromium(tmp_path) as browser:
        page, _ = open_dashboard(browser, voila)
        run_button(page).click()
        label = page.get_by_text("Results of")
        expect(label).to_be_visible(timeout=RUN_TIMEOUT_MS)  # the run's snapshot is taken
        dropdown(page, "digits").select_option(label="digits")
        running = "done" not in status_line(page).inner_text()
        expect(status_line(page)).to_have_text(re.compile("^done"), timeout=RUN_TIMEOUT_MS)
        expect(page.get_by_text("10 classes")).to_be_visible(timeout=60_000)  # digits now
        run_label = page.locator(".widget-html", has_text="Results of").inner_text()
        scatter = page.locator(".js-plotly-plot").filter(
            has=page.locator(".gtitle", has_text="influence vs utility"))
        expect(scatter.locator(".scatterlayer .point")).to_have_count(20)
        page.screenshot(path=str(shots[0]))

        dropdown(page, "wdbc").select_option(label="wdbc")
        expect(page.get_by_text("2 classes")).to_be_visible(timeout=60_000)
        page.get_by_role("tab", name="Your data").click()
        result = page.locator(".widget-html", has_text="appraised for task")

        def choose(path: Path) -> None:
            """Through the upload button's own file dialog, as a person does."""
            with page.expect_file_chooser() as chooser:
                page.locator(".widget-upload").click()
            chooser.value.set_files(str(path))

        choose(good)
        expect(result).to_contain_text("task wdbc with the plaintext backend",
                                       timeout=RUN_TIMEOUT_MS)
        page.screenshot(path=str(shots[1]))
        choose(bad)
        expect(page.get_by_text("has no 'label' column")).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
        expect(result).to_have_count(0)
        page.screenshot(path=str(shots[2]))
        choose(good)  # the same file again
        expect(result).to_contain_text("mine.csv", timeout=RUN_TIMEOUT_MS)
    keep(shots)
    assert running, "the run ended before the task was switched"
    assert "wdbc, logistic 30-2, 20 candidates" in run_label


def kernels(server) -> list[int]:
    """The server's kernel processes (every live process below it)."""
    return [pid for pid in descendants(server.process.pid) if alive(pid)]


def rss_mb(pids) -> float:
    """Resident memory of these processes, in MB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total / 1024


def wait_until(predicate, timeout: float) -> float | None:
    """Seconds until ``predicate()`` held, or None if it did not within ``timeout``."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():
            return time.perf_counter() - start
        time.sleep(0.2)
    return None


def test_the_seed_models_lesson_draws_each_models_rho(voila, tmp_path):
    """The lesson "does influence hold for a neural network?" opens the Seed models tab; with
    a hidden width of 4 typed in, Compare seed models draws one bar per model and appraiser."""
    from playwright.sync_api import expect

    lesson = "does influence hold for a neural network?"
    shots = [tmp_path / "seed-models.png"]
    with chromium(tmp_path) as browser:
        page, _ = open_dashboard(browser, voila)
        page.locator(".widget-dropdown select").filter(
            has=page.locator("option", has_text=lesson)).select_option(label=lesson)
        expect(page.get_by_text("Press Compare seed models")).to_be_visible()
        width = page.get_by_label("hidden width")
        width.fill("4")
        width.press("Enter")
        expect(page.get_by_text("logistic 30-2")).to_be_visible(timeout=RUN_TIMEOUT_MS)
        started = time.perf_counter()
        page.locator(".widget-button", has_text="Compare seed models").click()
        expect(status_line(page)).to_have_text(re.compile("^compared 3 seed models"),
                                               timeout=RUN_TIMEOUT_MS)
        seconds = time.perf_counter() - started
        bars = page.locator(".js-plotly-plot").filter(
            has=page.locator(".gtitle", has_text="Does influence hold for a neural network?"))
        expect(bars).to_be_visible()
        expect(bars.locator(".legendtext", has_text="last-layer 30-4-2").first).to_be_visible()
        legend = bars.locator(".legendtext").all_text_contents()
        bar_count = bars.locator(".barlayer .point").count()
        page.screenshot(path=str(shots[0]))
    keep(shots)
    print(f"\nseed-model lesson, 12 candidates, hidden width 4: compared in {seconds:.1f} s")
    assert legend == ["logistic 30-2", "mlp 30-4-2 silu", "last-layer 30-4-2 silu"]
    assert bar_count == 6  # influence and gradient norm under each model


def test_a_page_left_or_closed_gives_its_kernel_back(culling_voila, tmp_path):
    """Two pages: an open page keeps its kernel however long it sits idle; leaving a page shuts its
    kernel down at once (the page's shutdown request is accepted); a page gone without a word
    (closed without unload handlers, as a crashed tab or a lost connection) has its kernel culled.
    """
    server = culling_voila
    before = set(descendants(os.getpid()))
    baseline = rss_mb([server.process.pid])
    assert kernels(server) == []
    with chromium(tmp_path) as browser:
        def open_page():
            page, seconds = open_dashboard(browser, server)
            return page, time.perf_counter(), seconds

        closed, closed_ready, first_render = open_page()
        (closed_kernel,) = kernels(server)
        one_kernel = rss_mb([server.process.pid, closed_kernel])
        assert "_xsrf" in {c["name"] for c in closed.context.cookies()}
        left, _, second_render = open_page()
        (left_kernel,) = set(kernels(server)) - {closed_kernel}

        # the first page has sat idle past the cull timeout: connected, so never culled
        time.sleep(max(0.0, CULL_IDLE + 3 * CULL_INTERVAL
                       - (time.perf_counter() - closed_ready)))
        assert alive(closed_kernel), "the kernel of an open page was culled"

        left.goto("about:blank")  # its unload handler asks the server to shut the kernel down
        shut = wait_until(lambda: not alive(left_kernel), 10)
        assert shut is not None, "the kernel of a page left is still running"

        closed.close()  # no unload handlers run: nothing tells the server
        culled = wait_until(lambda: not kernels(server), CULL_IDLE + 10 * CULL_INTERVAL + 10)
        assert culled is not None, f"kernels left after closing the page: {kernels(server)}"
    after = rss_mb([server.process.pid, *kernels(server)])
    log = server.log.read_text(errors="replace")
    assert "_xsrf" not in log and "403 POST" not in log, "a shutdown request was refused"
    started = re.findall(r"Kernel started: ([0-9a-f-]+)", log)
    culled_ids = re.findall(r"Culling 'idle' kernel '\w+' \(([0-9a-f-]+)\)", log)
    assert len(started) == 2 and culled_ids == [started[0]], (started, culled_ids)
    print(f"\nvoila first render {first_render:.1f} s, second page {second_render:.1f} s; "
          f"server {baseline:.0f} MB alone, {one_kernel:.0f} MB with one page's kernel; a page "
          f"left: kernel gone in {shut:.1f} s; a page closed: culled {culled:.1f} s later "
          f"(after {CULL_IDLE} s idle, checked every {CULL_INTERVAL} s); then {after:.0f} MB")
    assert after < baseline + 0.25 * (one_kernel - baseline), "the kernels' memory did not return"
    server_tree = {server.process.pid, *descendants(server.process.pid)}
    leftover = set(descendants(os.getpid())) - before - server_tree
    assert not leftover, f"processes left behind by the browser: {sorted(leftover)}"


def test_a_warm_kernel_serves_a_page_and_still_goes_away_when_the_page_is_left(warm_voila,
                                                                              tmp_path):
    """A pool of one warm kernel: it waits past the cull timeout without being culled; a page
    takes it (rendered ahead) and keeps it past the cull timeout, though it had been idle for
    longer when taken; leaving the page shuts it down (the shutdown request is accepted); the
    pool is filled again behind it."""
    server = warm_voila
    before = set(descendants(os.getpid()))
    assert wait_until(lambda: len(kernels(server)) == 1, 60) is not None, "no warm kernel"
    (warm,) = kernels(server)
    # the dashboard is built in it ahead (torch imported: hundreds of MB), then it waits idle
    assert wait_until(lambda: rss_mb([warm]) > 250, RENDER_TIMEOUT_MS / 1000) is not None
    time.sleep(CULL_IDLE + 3 * CULL_INTERVAL)
    assert alive(warm), "a warm kernel was culled while it waited in the pool"
    with chromium(tmp_path) as browser:
        page, first_render = open_dashboard(browser, server)
        assert "_xsrf" in {c["name"] for c in page.context.cookies()}
        time.sleep(CULL_IDLE + 3 * CULL_INTERVAL)
        assert alive(warm), "the warm kernel was culled under its page"
        assert run_button(page).is_enabled()
        refilled = wait_until(lambda: len(set(kernels(server)) - {warm}) == 1, 60)
        assert refilled is not None, "the pool was not filled again"
        page.goto("about:blank")  # its unload handler asks the server to shut the kernel down
        shut = wait_until(lambda: not alive(warm), 10)
        assert shut is not None, "the kernel of a page left is still running"
    log = server.log.read_text(errors="replace")
    assert "Using pre-heated kernel" in log
    assert "_xsrf" not in log and "403 POST" not in log, "a shutdown request was refused"
    # the culler may also find the kernel of the page just left (no connection, idle) while the
    # page's shutdown request is being served: only a cull before that request would be wrong
    (taken,) = re.findall(r"Using pre-heated kernel: ([0-9a-f-]+)", log)
    culled = log.find(f"Culling 'idle' kernel 'python3' ({taken})")
    assert culled == -1 or log.find(f"Kernel shutdown: {taken}") < culled, log
    print(f"\nwarm kernel: first render {first_render:.1f} s (navigation to Run button); a page "
          f"left: kernel gone in {shut:.1f} s; the pool refilled")
    server_tree = {server.process.pid, *descendants(server.process.pid)}
    leftover = set(descendants(os.getpid())) - before - server_tree
    assert not leftover, f"processes left behind by the browser: {sorted(leftover)}"
