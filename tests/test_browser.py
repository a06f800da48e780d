"""The dashboard as a person uses it: Voila serves notebooks/explorer.ipynb on 127.0.0.1, headless
Chromium (Debian's, driven by Playwright) picks WDBC, clicks Run and waits for the rank scatter;
and the kernel each page load starts goes away when the page is reloaded or closed.

Timings are printed (``pytest -s`` shows them); the screenshot is kept in the test's tmp folder and
copied to /tmp/browser-shots/. ``make test`` installs Debian's chromium when it is missing.
"""

from __future__ import annotations

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


def test_dashboard_runs_wdbc_and_draws_one_point_per_candidate(voila, app_defaults, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    before = set(descendants(os.getpid()))
    n = app_defaults["candidates"]
    shot = tmp_path / "dashboard.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                    env=isolated_env(tmp_path / "chromium-home"))
        try:
            # tall: Voila scrolls inside its own panel, so a full-page shot is one viewport
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            start = time.perf_counter()
            page.goto(f"{voila.url}/voila/render/explorer.ipynb", wait_until="domcontentloaded")
            run = page.locator(".widget-button", has_text=re.compile(r"^\s*Run\s*$"))
            expect(run).to_be_visible(timeout=RENDER_TIMEOUT_MS)
            first_render = time.perf_counter() - start

            dropdown(page, app_defaults["wdbc"]).select_option(label=app_defaults["wdbc"])
            if app_defaults["backend"] != "plaintext":  # a ToggleButtons: click "plaintext"
                page.locator(".widget-toggle-button",
                             has_text=app_defaults["plaintext"]).click()
            scatter = page.locator(".js-plotly-plot").filter(
                has=page.locator(".gtitle", has_text="influence vs utility"))
            points = scatter.locator(".scatterlayer .point")
            expect(points).to_have_count(0)

            clicked = time.perf_counter()
            run.click()
            expect(points.first).to_be_attached(timeout=RUN_TIMEOUT_MS)
            first_point = time.perf_counter() - clicked
            expect(points).to_have_count(n)
            bar = page.locator(".widget-hprogress .progress-bar").first
            expect(bar).to_have_attribute("style", re.compile(r"width:\s*100%"))
            expect(page.get_by_text("Traceback")).to_have_count(0)
            page.screenshot(path=str(shot), full_page=True)
            scatter.screenshot(path=str(tmp_path / "rank-scatter.png"))
        finally:
            browser.close()
    SHOTS.mkdir(exist_ok=True)
    for png in (shot, tmp_path / "rank-scatter.png"):
        shutil.copy(png, SHOTS / png.name)
    print(f"\nvoila first render (navigation to Run button): {first_render:.1f} s; click to first "
          f"scatter point: {first_point:.1f} s; {n} points; screenshots in {SHOTS}")
    server = {voila.process.pid, *descendants(voila.process.pid)}  # stopped by the fixture
    leftover = set(descendants(os.getpid())) - before - server
    assert not leftover, f"processes left behind by the browser: {sorted(leftover)}"


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


def test_a_page_left_or_closed_gives_its_kernel_back(culling_voila, tmp_path):
    """Two pages: an open page keeps its kernel however long it sits idle; leaving a page shuts its
    kernel down at once (the page's shutdown request is accepted); a page gone without a word
    (closed without unload handlers, as a crashed tab or a lost connection) has its kernel culled.
    """
    from playwright.sync_api import expect, sync_playwright

    server = culling_voila
    before = set(descendants(os.getpid()))
    baseline = rss_mb([server.process.pid])
    assert kernels(server) == []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                    env=isolated_env(tmp_path / "chromium-home"))
        try:
            def open_dashboard():
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                start = time.perf_counter()
                page.goto(f"{server.url}/voila/render/explorer.ipynb",
                          wait_until="domcontentloaded")
                expect(page.locator(".widget-button", has_text=re.compile(r"^\s*Run\s*$"))
                       ).to_be_visible(timeout=RENDER_TIMEOUT_MS)
                return page, time.perf_counter(), time.perf_counter() - start

            closed, closed_ready, first_render = open_dashboard()
            (closed_kernel,) = kernels(server)
            one_kernel = rss_mb([server.process.pid, closed_kernel])
            assert "_xsrf" in {c["name"] for c in closed.context.cookies()}
            left, _, second_render = open_dashboard()
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
        finally:
            browser.close()
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
