"""A class on one server: N dashboard pages opened at once against one Voila server, as a teacher
runs it (`make demo`: binder/voila.py's settings, warm kernels, the memory budget per page).

The server is started on 127.0.0.1 with a free port, HOME and the Jupyter folders in a temporary
folder (tests/jupyter_env.py), and always stopped with its kernels and their party processes.
Headless Chromium (Debian's, driven by Playwright) first opens one page alone on the idle server
(a warm kernel's first render), then N pages at once; each of the N pages runs the dashboard's
default appraisal in plaintext, then with real parties (TTP dealer), as a student presses Run.
Measured per page: the first render (navigation to the Run button), each Run (click to "done"),
whether its kernel came from the pool of warm kernels (one the pool had only begun to warm
counts), and the peak memory of its kernel with its party processes; for the server, the peak
memory of its whole process tree (sampled every 0.5 s). Memory is proportional set sizes summed
(explorer.memory: pages shared between processes, such as what a kept party set's processes
share with their forker, count once, as a pod's limit counts them), and beside it VmRSS summed
(shared pages once per process). Printed beside the targets.

    python benchmarks/class_load.py --pages 3
    python benchmarks/class_load.py            # 10 pages: a few minutes on two cores
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's Voila server helpers, reused as is

from jupyter_env import CHROMIUM, NOTEBOOKS, alive, descendants, isolated_env, voila_server  # noqa: E402

from explorer.memory import BUDGET_ENV, process_mb  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TARGETS = {"warm_render_s": 3.0, "parties_run_s": 60.0, "peak_gb": 8.0}
TARGET_PAGES = 10  # the pages the Run and memory targets are stated for
TIMEOUT_MS = 900_000  # a page's render or Run under load, before it counts as failed
SAMPLE_SECONDS = 0.5


@dataclass
class PageFigures:
    render_s: float | None = None
    warm: bool = False
    kernel: str = ""
    plaintext_s: float | None = None
    parties_s: float | None = None
    error: str = ""


@dataclass
class Memory:
    """The server tree's peak, and each kernel's (with its party processes), sampled."""

    server_pid: int
    floor_mb: float = 0.0
    peak_mb: float = 0.0
    peak_rss_mb: float = 0.0
    kernel_peak_mb: dict[int, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    aborted: str = ""

    def sample(self) -> None:
        while not self.stop.wait(SAMPLE_SECONDS):
            available = available_mb()
            if available is not None and available < self.floor_mb:
                # the machine is shared: stop the server (pages then fail) before the kernel's
                # out-of-memory killer picks a process, maybe someone else's
                self.aborted = (f"stopped: the machine had {available:.0f} MB left, under "
                                f"--keep-free {self.floor_mb:.0f} MB")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.server_pid, signal.SIGTERM)
                return
            tree = (self.server_pid, *descendants(self.server_pid))
            self.peak_mb = max(self.peak_mb, sum(process_mb(p) for p in tree))
            self.peak_rss_mb = max(self.peak_rss_mb, sum(rss_mb(p) for p in tree))
            for kernel in kernels(self.server_pid):
                used = sum(process_mb(p) for p in (kernel, *descendants(kernel)))
                self.kernel_peak_mb[kernel] = max(self.kernel_peak_mb.get(kernel, 0.0), used)


def rss_mb(pid: int) -> float:
    """VmRSS of one process in MB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def available_mb() -> float | None:
    """MemAvailable of the machine in MB (None if /proc/meminfo cannot say)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def kernels(server_pid: int) -> list[int]:
    """The server's kernels: its live children (each kernel's parties are below it)."""
    tree = set(descendants(server_pid))
    return [p for p in tree if alive(p) and parent(p) == server_pid]


def parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_for_warm_kernels(server_pid: int, count: int, timeout: float = 600.0) -> float:
    """Block until ``count`` kernels wait with the dashboard built (holding >250 MB, no CPU used
    for 2 s); the seconds it took."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        ready = [k for k in kernels(server_pid) if rss_mb(k) > 250]
        if len(ready) >= count:
            before = {k: cpu_seconds(k) for k in ready}
            time.sleep(2.0)
            if all(cpu_seconds(k) - before[k] < 0.05 for k in ready):
                return time.perf_counter() - start
        else:
            time.sleep(0.5)
    raise RuntimeError(f"{count} warm kernels were not ready within {timeout:g} s")


def run_button(page):
    return page.locator(".widget-button", has_text=re.compile(r"^\s*Run\s*$"))


async def open_page(browser, url: str, figures: PageFigures):
    """A page showing the dashboard; its first render and kernel are put in ``figures``."""
    from playwright.async_api import expect

    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    page.on("websocket", lambda ws: setattr(figures, "kernel", figures.kernel or (
        re.search(r"/api/kernels/([0-9a-f-]+)/", ws.url) or [None, ""])[1]))
    start = time.perf_counter()
    await page.goto(f"{url}/voila/render/explorer.ipynb", wait_until="domcontentloaded",
                    timeout=TIMEOUT_MS)
    await expect(run_button(page)).to_be_visible(timeout=TIMEOUT_MS)
    figures.render_s = time.perf_counter() - start
    return page


# the status line's text, and the dashboard's error sentence (red: rgb(176, 0, 32)), in the page
STATUS_JS = "document.querySelector('.widget-hprogress + .widget-html')?.textContent ?? ''"
ERROR_JS = """[...document.querySelectorAll('.widget-html-content div')].filter(
    d => getComputedStyle(d).color === 'rgb(176, 0, 32)').map(d => d.textContent).join(' ')"""


async def timed_run(page) -> tuple[float | None, str]:
    """Press Run and wait for its end (the status says done or stopped, and is not the previous
    run's); the seconds, or None and the page's error sentence."""
    before = await page.evaluate(STATUS_JS)
    start = time.perf_counter()
    await run_button(page).click()
    await page.wait_for_function(
        f"""previous => {{ const s = {STATUS_JS}; return s !== previous
            && /^(done|stopped|cancelled)/.test(s); }}""", arg=before, timeout=TIMEOUT_MS,
        polling=100)
    seconds = time.perf_counter() - start
    if (await page.evaluate(STATUS_JS)).startswith("done"):
        return seconds, ""
    return None, (await page.evaluate(ERROR_JS)).strip() or "stopped"


async def student(browser, url: str, figures: PageFigures) -> None:
    """Open the dashboard, Run in plaintext (the default), then with real parties."""
    try:
        page = await open_page(browser, url, figures)
        figures.plaintext_s, figures.error = await timed_run(page)
        if figures.error:
            return
        await page.get_by_text("4. Backend and privacy").click()
        await page.locator(".widget-toggle-button", has_text="real parties").click()
        figures.parties_s, figures.error = await timed_run(page)
    except Exception as exc:  # one page failing must not hide the others' figures
        figures.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


async def drive(url: str, pages: int, home: Path, server_pid: int, warm: int, log: Path):
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                          env=isolated_env(home / "chromium-home"))
        try:
            alone = PageFigures()
            if warm:
                page = await open_page(browser, url, alone)
                await page.goto("about:blank")  # gives its kernel back
                await page.close()
                await asyncio.to_thread(wait_for_warm_kernels, server_pid, warm)
            figures = [PageFigures() for _ in range(pages)]
            await asyncio.gather(*(student(browser, url, f) for f in figures))
        finally:
            await browser.close()
    used = set(re.findall(r"Using pre-heated kernel: ([0-9a-f-]+)", log.read_text()))
    for f in [alone, *figures]:
        f.warm = f.kernel in used
    return alone, figures


def fmt(value: float | None, unit: str = "s") -> str:
    return "—" if value is None else f"{value:.1f} {unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=TARGET_PAGES,
                        help="pages opened at once (default 10)")
    parser.add_argument("--warm", type=int, default=2,
                        help="warm kernels kept ready, as `make demo WARM=` (default 2)")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"memory budget per page in MB ({BUDGET_ENV}; default: "
                             f"binder/voila.py's)")
    parser.add_argument("--keep-free", type=float, default=2000.0,
                        help="stop the server when the machine has less memory available, in "
                             "MB (default 2000)")
    args = parser.parse_args(argv)
    if args.pages < 1 or args.warm < 0 or (args.budget is not None and args.budget <= 0):
        parser.error("--pages must be at least 1, --warm at least 0 and --budget positive.")
    if not CHROMIUM.exists():
        parser.error(f"no browser at {CHROMIUM}: apt-get install chromium")
    os.environ["EXPLORER_WARM_KERNELS"] = str(args.warm)
    if args.budget is not None:
        os.environ[BUDGET_ENV] = f"{args.budget:g}"
    with tempfile.TemporaryDirectory(prefix="class-load-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        started = time.perf_counter()
        with voila_server(NOTEBOOKS, home) as server:
            memory = Memory(server.process.pid, args.keep_free)
            sampler = threading.Thread(target=memory.sample, daemon=True)
            sampler.start()
            try:
                if args.warm:
                    warmed = wait_for_warm_kernels(server.process.pid, args.warm)
                    print(f"{args.warm} warm kernels ready {warmed:.0f} s after the server")
                alone, figures = asyncio.run(drive(server.url, args.pages, home,
                                                   server.process.pid, args.warm, server.log))
            finally:
                memory.stop.set()
                sampler.join()
            per_kernel = sorted(memory.kernel_peak_mb.values(), reverse=True)
        total = time.perf_counter() - started
    report(args, alone, figures, memory.peak_mb, memory.peak_rss_mb, per_kernel, total)
    if memory.aborted:
        print(memory.aborted)
        return 1
    return 0 if all(not f.error for f in figures) else 1


def report(args, alone: PageFigures, figures: list[PageFigures], peak_mb: float,
           peak_rss_mb: float, per_kernel: list[float], total: float) -> None:
    n = args.pages
    print(f"\n{n} pages opened at once, {args.warm} warm kernels, default run (WDBC, 20 "
          f"candidates, influence and gradient-norm, acquisition), {os.cpu_count()} cores; "
          f"{total:.0f} s in all")
    print(f"{'page':>4}  {'kernel':>6}  {'first render':>12}  {'plaintext Run':>13}  "
          f"{'real parties Run':>16}  error")
    for i, f in enumerate(figures, 1):
        print(f"{i:>4}  {'pool' if f.warm else 'new':>6}  {fmt(f.render_s):>12}  "
              f"{fmt(f.plaintext_s):>13}  {fmt(f.parties_s):>16}  {f.error}")
    warm = [f.render_s for f in figures if f.warm and f.render_s is not None]
    cold = [f.render_s for f in figures if not f.warm and f.render_s is not None]
    parties = [f.parties_s for f in figures if f.parties_s is not None]
    scale = "" if n == TARGET_PAGES else f" (target stated for {TARGET_PAGES} pages)"
    print("\nfigure                                         measured      target")
    if args.warm:
        print(f"first render, one page, warm kernel            {fmt(alone.render_s):>8}   "
              f"<= {TARGETS['warm_render_s']:g} s")
    if warm:
        print(f"first render, pool kernels among {n:<2} pages     {fmt(max(warm)):>8} (max)")
    if cold:
        print(f"first render, new kernels among {n:<2} pages     {fmt(min(cold)):>8} - "
              f"{fmt(max(cold))}")
    print(f"real-parties Run, slowest of {n:<2} pages         {fmt(max(parties, default=None)):>8}"
          f"   <= {TARGETS['parties_run_s']:g} s{scale}")
    print(f"peak memory of the server's process tree       {peak_mb / 1024:>6.2f} GB   "
          f"<= {TARGETS['peak_gb']:g} GB{scale} (VmRSS summed: {peak_rss_mb / 1024:.2f} GB)")
    if per_kernel:
        print(f"peak memory per page (kernel + party processes) {per_kernel[0]:>5.0f} MB   "
              f"budget {os.environ.get(BUDGET_ENV) or 'binder/voila.py'}"
              f" (all: {', '.join(f'{mb:.0f}' for mb in per_kernel)} MB)")


if __name__ == "__main__":
    sys.exit(main())
