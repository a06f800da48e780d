# The dashboard's server settings, in one place for both ways of serving it:
# - `make demo` runs standalone Voila, which reads this file as its voila.py
#   (--Voila.config_file_paths=binder);
# - on Binder, postBuild copies it to ~/.jupyter/jupyter_server_config.py, the configuration of
#   the Jupyter server whose Voila extension serves voila/render/notebooks/explorer.ipynb.
# Options given on the command line override these (tests/test_browser.py shortens the timings).
import inspect
import os

c = get_config()  # noqa: F821 (traitlets defines get_config when it loads this file)

# Each page load starts a kernel of 400-500 MB. A kernel that has no page connected and has sent
# nothing for two minutes is shut down (checked every 30 s), so a page that was closed without
# saying so (a crashed tab, a lost connection) frees its memory within 2.5 minutes. A kernel whose
# page is open is never culled, however long the page sits idle; a job still running after its
# page closed keeps the kernel until it ends.
c.MappingKernelManager.cull_idle_timeout = 120
c.MappingKernelManager.cull_interval = 30
c.MappingKernelManager.cull_connected = False
c.MappingKernelManager.cull_busy = False


# Warm kernels (`make demo WARM=2`, or EXPLORER_WARM_KERNELS for any server started with this
# file): Voila starts that many kernels ahead and runs the dashboard in each, so a page opened
# takes one that has already imported torch and built its widgets (first render ~1 s instead of
# 10-30 s) and a new one is warmed behind it. Each waiting kernel holds 400-500 MB. Only
# standalone Voila has the pool; under Binder's server extension the setting does nothing.
WARM_KERNELS = int(os.environ.get("EXPLORER_WARM_KERNELS", "0") or 0)
if WARM_KERNELS > 0:
    c.VoilaConfiguration.preheat_kernel = True
    c.VoilaConfiguration.default_pool_size = WARM_KERNELS
# Served as a folder (the tests, benchmarks/class_load.py), Voila would warm kernels for every
# notebook in it, the tutorial and the paper's reproduction too: only the dashboard is warmed.
c.VoilaKernelManager.preheat_denylist = [r"^(?!(.*/)?explorer\.ipynb$)"]

# Voila runs the dashboard's notebook in the page's kernel and, once a cell has replied, waits
# nbclient's iopub_timeout (4 s by default) for the cell's outputs still on their way; past it, it
# warns "Timeout waiting for IOPub output" and renders the page without them. With ten pages
# opened at once on two cores, two of ten pages lost the dashboard that way and never showed a Run
# button (benchmarks/class_load.py). The wait only lasts while outputs are still coming.
c.VoilaExecutor.iopub_timeout = 120

# The memory budget of each page (explorer.memory): its kernel plus the party processes of its
# private runs. A private run that would pass it is refused with a sentence on the page, and one
# that outgrows it is stopped, instead of the server (or Binder's 2 GB pod) being killed. Measured
# as a pod counts memory (proportional set sizes; benchmarks/class_load.py, pod_memory.py): a
# kernel is 300-500 MB, and a real-parties WDBC run with the TTP dealer brings it to about 620 MB
# with its forked party processes; a 20 x 100 MNIST run peaks near 1,060 MB. 1800 MB fits one page
# and the server in Binder's 2 GB pod. Kernels inherit the server's environment; a value set
# before starting the server wins.
os.environ.setdefault("EXPLORER_MEMORY_BUDGET_MB", "1800")

# One compute thread per kernel (torch's and its BLAS's). A server's kernels share its cores, and
# torch's threads wait on one another when the cores are busy: measured on two cores under load,
# a digits run (20 candidates of 100, four appraisers) took 231 s with torch's two threads and
# 34 s with one; three at once, 752 s against 62 s. Party processes already run with one
# (explorer.mpc.launcher). As with the budget, a value set before starting the server wins.
for threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(threads, "1")


def give_pages_their_xsrf_cookie() -> None:
    """Give every dashboard page its `_xsrf` cookie.

    On unload, Voila's page posts /voila/api/shutdown/<kernel> with the `_xsrf` cookie's value,
    but Voila 0.5 never sets that cookie, so the server refuses the request ("403 '_xsrf'
    argument missing from POST") and the kernel stays. Reading the handler's token sets the
    cookie; the check itself stays on. Done when the page's request is prepared, not in a
    prelaunch hook, because Voila refuses a prelaunch hook together with warm kernels.
    """
    from voila.handler import VoilaHandler

    if getattr(VoilaHandler.prepare, "gives_xsrf_cookie", False):
        return  # this file was loaded twice
    prepare = VoilaHandler.prepare

    async def prepare_with_cookie(self, *args, **kwargs):
        result = prepare(self, *args, **kwargs)
        if inspect.isawaitable(result):
            await result
        self.xsrf_token  # noqa: B018 (the property sets the cookie)
        keep_warm_kernels_from_the_culler(self.kernel_manager)

    prepare_with_cookie.gives_xsrf_cookie = True
    VoilaHandler.prepare = prepare_with_cookie


def keep_warm_kernels_from_the_culler(manager) -> None:
    """Mark the waiting warm kernels active, just before a page takes one.

    Voila never culls a kernel while it waits in the pool, but one that waited longer than
    cull_idle_timeout is idle by the culler's clock the moment a page takes it, and until the
    page's websocket connects (about a second) the next cull check would shut it down under the
    student. Marking the pool's kernels active on every page request closes that window.
    """
    from jupyter_server._tz import utcnow

    for pool in getattr(manager, "_pools", {}).values():
        for task in pool:
            if task.done() and not task.cancelled() and task.exception() is None:
                kernel_id = task.result().get("kernel_id")
                if kernel_id in manager:
                    manager.get_kernel(kernel_id).last_activity = utcnow()


give_pages_their_xsrf_cookie()
