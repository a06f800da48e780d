# The dashboard's server settings, in one place for both ways of serving it:
# - `make demo` runs standalone Voila, which reads this file as its voila.py
#   (--Voila.config_file_paths=binder);
# - on Binder, postBuild copies it to ~/.jupyter/jupyter_server_config.py, the configuration of
#   the Jupyter server whose Voila extension serves voila/render/notebooks/explorer.ipynb.
# Options given on the command line override these (tests/test_browser.py shortens the timings).
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


def set_xsrf_cookie(req, notebook, cwd):
    """Give the page its `_xsrf` cookie before the kernel starts.

    On unload, Voila's page posts /voila/api/shutdown/<kernel> with the `_xsrf` cookie's value,
    but Voila 0.5 never sets that cookie, so the server refuses the request ("403 '_xsrf'
    argument missing from POST") and the kernel stays. Reading the handler's token sets the
    cookie; the check itself stays on.
    """
    req.xsrf_token  # noqa: B018 (the property sets the cookie)


c.VoilaConfiguration.prelaunch_hook = set_xsrf_cookie
