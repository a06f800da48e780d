"""The dashboard as a person uses it: Voila serves notebooks/explorer.ipynb on 127.0.0.1, headless
Chromium (Debian's, driven by Playwright) picks WDBC, clicks Run and waits for the rank scatter.

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


@pytest.fixture
def voila(tmp_path):
    """Voila serving the notebooks folder (so /voila/render/explorer.ipynb is the dashboard),
    stopped with its kernels whatever happens."""
    home = tmp_path / "home"
    home.mkdir()
    with voila_server(NOTEBOOKS, home) as server:
        yield server
        tree = descendants(server.process.pid)  # the server's kernels, before it is stopped
    assert not [pid for pid in tree if alive(pid)], "a kernel outlived the Voila server"


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
