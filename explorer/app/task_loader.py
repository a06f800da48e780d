"""The model owner's side of the dashboard: the chosen task, its seed model and the market built
from it. Loading a task and fitting its seed model is always a background job, shown as busy;
a task's data is found as the command line finds it (a shared folder, the cache), what is
missing is downloaded into the cache, and a task whose data cannot be had is marked
unavailable. A stale load (another task, seed model or λ chosen since) is never shown.
"""

from __future__ import annotations

import html
import threading
import traceback
from collections.abc import Callable

import ipywidgets as w
import numpy as np
import pandas as pd

from explorer.app.controls import seed_choice, sync_model
from explorer.errors import Cancelled, DataUnavailable, ExplorerError
from explorer.market import Candidate, make_market
from explorer.seed import AnySeed, model_description
from explorer.tasks import TASKS, Task, data_on_disk, load_task

# shared with explorer.app.figures' results table
TABLE_CSS = ("<style>.ae-table table{border-collapse:collapse;font-size:12px}"
             ".ae-table th,.ae-table td{padding:2px 10px;text-align:right}</style>")
BUSY = ("<span style='display:inline-block;animation:ae-spin 1s linear infinite'>⏳</span>"
        "<style>@keyframes ae-spin{to{transform:rotate(360deg)}}</style> ")
NO_TASK = "choose a task and a market that can be built first."
MARKET_CONTROLS = ("corruption", "candidates", "size", "levels", "random_state")


class TaskLoader:
    """Keeps ``task``, ``seed`` and ``market`` in step with the controls; ``on_change(ok)`` is
    called whenever they change (``ok`` False when the task failed to load or is unavailable)."""

    def __init__(self, controls: dict[str, w.Widget], show_error: Callable[[str], None],
                 on_change: Callable[[bool], None], data_dir: str | None = None):
        self.controls, self.data_dir = controls, data_dir
        self._show_error, self._on_change = show_error, on_change
        self.task: Task | None = None
        self.seed: AnySeed | None = None
        self.market: list[Candidate] = []
        self.seed_info = w.HTML()
        self.preview = w.HTML()
        self.problem = ""  # why the chosen task cannot be used yet, for Run
        self._downloading = False
        self._ready = threading.Event()  # set when the chosen task's load has ended
        self._lock = threading.RLock()  # the task is also set from loading threads
        # one computation at a time in this process: a network's fit takes exact
        # Hessian-vector products by torch's forward-mode autograd, whose levels are global,
        # so two threads fitting at once break each other's. Fits hold it, and so do the
        # dashboard's jobs (``computing``).
        self._compute = threading.Lock()
        self._quiet = False  # while set, control changes made by the app itself are ignored
        self._generation = 0  # counts the task, model and λ choices: a stale load is not shown
        self._unavailable: set[str] = set()  # tasks whose data could not be had
        self._download_locks = {spec.dataset.name: threading.Lock() for spec in TASKS.values()
                                if spec.dataset is not None}
        self.task_labels = tuple((self._task_label(name), name) for name in TASKS)
        controls["task"].options = self.task_labels
        controls["task"].value = "wdbc"
        controls["task"].observe(self._seed_family_changed, "value")
        controls["lam"].observe(self._lam_changed, "value")
        controls["lam_cv"].observe(self._lam_changed, "value")
        controls["model"].observe(self._seed_family_changed, "value")
        controls["hidden"].observe(self._lam_changed, "value")
        for name in MARKET_CONTROLS:
            controls[name].observe(lambda _: self.refresh_market(), "value")

    # ---------------------------------------------------------------- choosing
    def _seed_family_changed(self, _) -> None:
        """The task or the seed-model family changed: its default λ, then a refresh."""
        with self._lock:
            if self._quiet:
                return
            self._default_lam()
            self.refresh()

    def _default_lam(self) -> None:
        """The chosen task's own λ for the chosen family (a network's is smaller), and the
        controls the family uses, without a refresh for them."""
        c = self.controls
        spec = TASKS[c["task"].value]
        self._quiet = True
        try:
            c["lam"].value = spec.lam if c["model"].value == "logistic" else spec.network_lam
        finally:
            self._quiet = False
        self._sync()

    def _sync(self) -> None:
        """Grey out what the chosen family does not use (controls.sync_model), without a
        refresh for it."""
        with self._lock:
            quiet, self._quiet = self._quiet, True
            try:
                sync_model(self.controls)
            finally:
                self._quiet = quiet

    def _lam_changed(self, _) -> None:
        with self._lock:
            if not self._quiet:
                self.refresh()

    def _needs_download(self, name: str) -> bool:
        """Whether the task's data is neither in ``data_dir`` (when given) nor on this machine.
        Looks at file names only, so it answers at once."""
        return TASKS[name].dataset is not None and self.data_dir is None \
            and not data_on_disk(name)

    def _task_label(self, name: str) -> str:
        dataset = TASKS[name].dataset
        if name in self._unavailable:
            return f"{name} (unavailable)"
        if dataset is not None and self._needs_download(name):
            return f"{name} ({dataset.download_mb} MB to download)"
        return name

    def _relabel_tasks(self) -> None:
        """Bring the task labels up to date, keeping the chosen task (and not reloading it)."""
        labels = tuple((self._task_label(name), name) for name in TASKS)
        with self._lock:
            if labels == self.task_labels:
                return
            self.task_labels = labels
            dropdown = self.controls["task"]
            chosen = dropdown.value
            self._quiet = True  # new options select the first one: ignore that, then restore
            try:
                dropdown.options = labels
                dropdown.value = chosen
            finally:
                self._quiet = False

    # ---------------------------------------------------------------- loading
    def refresh(self) -> None:
        """Load the chosen task and fit its seed model in a background thread (reading MNIST
        and fitting take seconds, a download longer), showing that it is busy meanwhile."""
        c = self.controls
        with self._lock:
            self._generation += 1
            self._sync()
            try:
                choice = seed_choice(c)
            except ExplorerError as exc:
                self._task_failed(str(exc))
                return
            job = (self._generation, c["task"].value, choice)
            name = job[1]
            if name in self._unavailable:
                self._show_unavailable(name)
                return
            self._ready.clear()
            self._downloading = self._needs_download(name)
            self._no_task(*self._loading(name, self._downloading), ok=True)
            threading.Thread(target=self._load_job, args=(job,), daemon=True).start()

    @staticmethod
    def _loading(name: str, downloading: bool) -> tuple[str, str]:
        """What the seed box says while a task loads, and what Run says."""
        dataset = TASKS[name].dataset
        if downloading:
            return (BUSY + f"Downloading {dataset.name} ({dataset.download_mb} MB) into the "
                    f"cache; the seed model appears when it has arrived.",
                    f"{dataset.name} is still downloading; wait for the seed model to appear, "
                    f"or choose another task.")
        what = f"Reading {dataset.name} and fitting" if dataset is not None else "Fitting"
        return (BUSY + f"{what} the seed model of {name}…",
                f"{name} is still loading; wait for the seed model to appear, or choose "
                f"another task.")

    def _fit(self, job: tuple) -> tuple[Task, AnySeed]:
        _, name, choice = job
        task = load_task(name, random_state=0, allow_download=False,
                         data_dir=self.data_dir if TASKS[name].needs_files else None)
        return task, choice.fit(task)

    def _load_job(self, job: tuple) -> None:
        """In a background thread: download the task's data into the cache if it is not on
        this machine, read it and fit the seed model; show it if still chosen."""
        name = job[1]
        dataset = TASKS[name].dataset
        try:
            if self._needs_download(name):
                with self._download_locks[dataset.name]:  # one download per dataset
                    if name in self._unavailable:  # another task's attempt just failed
                        raise DataUnavailable(f"{dataset.name} could not be downloaded.")
                    if self._needs_download(name):  # not fetched meanwhile for another task
                        dataset.fetch()
                self._relabel_tasks()
                self._if_current(job, self._fitting, (name,))
            with self._compute:
                if job[0] != self._generation:  # another choice was made while it waited
                    return
                task, seed = self._fit(job)
        except Exception as exc:
            if isinstance(exc, DataUnavailable) or (dataset is not None
                                                    and self._needs_download(name)):
                if not isinstance(exc, ExplorerError):
                    traceback.print_exc()
                with self._lock:  # every task of this dataset
                    self._unavailable |= {n for n, spec in TASKS.items()
                                          if spec.dataset is dataset}
                    self._relabel_tasks()
                    self._if_current(job, self._show_unavailable, (name,))
                return
            message = str(exc) if isinstance(exc, ExplorerError) else f"unexpected error: {exc}"
            if not isinstance(exc, ExplorerError):
                traceback.print_exc()
            self._if_current(job, self._task_failed, (message,))
            return
        self._if_current(job, self._show_task, (task, seed))

    def _if_current(self, job: tuple, show: Callable, args: tuple) -> None:
        """``show(*args)`` unless another task, seed model or λ was chosen since ``job``
        started."""
        with self._lock:
            if job[0] == self._generation:
                show(*args)

    def _fitting(self, name: str) -> None:
        self._downloading = False
        self._no_task(*self._loading(name, False), ok=True)

    # ---------------------------------------------------------------- showing
    def _no_task(self, note: str, problem: str, ok: bool) -> None:
        """No seed model for now: ``note`` (HTML) in the seed box, ``problem`` for Run."""
        self.task = self.seed = None
        self.market = []
        self.problem = problem
        self.seed_info.value = f"<div style='max-width:320px'>{note}</div>" if note else ""
        self.preview.value = ""
        self._show_error("")
        self._on_change(ok)

    def _task_failed(self, message: str) -> None:
        self._no_task("", message, ok=False)
        self._show_error(message)
        self._ready.set()

    def _show_unavailable(self, name: str) -> None:
        dataset = TASKS[name].dataset.name
        where = (f"{self.data_dir} holds no {dataset} files" if self.data_dir is not None else
                 f"{dataset} is not on this server and could not be downloaded")
        sentence = f"{name} is unavailable: {where}; choose another task."
        self._no_task(f"<span style='color:#b00020'>{html.escape(sentence)}</span>", sentence,
                      ok=False)
        self._ready.set()

    def _show_task(self, task: Task, seed: AnySeed) -> None:
        self.task, self.seed, self.problem = task, seed, ""
        chosen = (" (5-fold cross-validation)" if getattr(seed, "lam_choice", None) is not None
                  else "")
        self.seed_info.value = (f"<b>{html.escape(model_description(seed))}</b>, λ "
                                f"<b>{seed.lam:.3g}</b>{chosen}<br>{seed.n_seed} training "
                                f"samples, {task.n_features} features, {seed.n_classes} "
                                f"classes<br>test accuracy <b>{seed.test_accuracy:.3f}</b>, "
                                f"gradient norm {seed.grad_norm:.1e}")
        self.controls["size"].max = max(5, len(task.y_pool))
        self._show_error("")
        self.refresh_market()
        self._ready.set()

    def refresh_market(self) -> None:
        """Rebuild the market from the controls and show its preview."""
        c = self.controls
        with self._lock:
            if self.task is None:
                return
            lo, hi = c["levels"].value
            try:
                self.market = make_market(self.task, c["corruption"].value,
                                          c["candidates"].value, c["size"].value, hi, lo,
                                          random_state=c["random_state"].value)
            except ExplorerError as exc:
                self.market = []
                self.preview.value = ""
                self._show_error(str(exc))
                self._on_change(True)
                return
            self._show_error("")
            self.preview.value = preview_html(self.task, self.market)
            self._on_change(True)

    # ---------------------------------------------------------------- for Run
    def computing(self) -> threading.Lock:
        """The lock a job holds while it computes, so that no seed model is fitted meanwhile
        (a choice made during a job is fitted when it ends)."""
        return self._compute

    def wait_ready(self, cancel: threading.Event) -> tuple[str, Task, AnySeed,
                                                           list[Candidate]]:
        """The chosen task, its seed model and its market, once its seed model is fitted
        (waiting for that; a download is not waited for). Raises with the reason otherwise."""
        while not self._ready.wait(0.05):
            if cancel.is_set():
                raise Cancelled("the run was cancelled while the seed model was fitted.")
            if self._downloading:
                raise ExplorerError(self.problem)
        with self._lock:
            if self.seed is None or not self.market:
                raise ExplorerError(self.problem if self.seed is None and self.problem
                                    else NO_TASK)
            return self.controls["task"].value, self.task, self.seed, list(self.market)


def preview_html(task: Task, market: list[Candidate]) -> str:
    """The candidates as a small table: level, samples, class shares and what was done."""
    names = task.class_names
    rows = []
    for cand in market:
        counts = np.bincount(cand.y, minlength=len(names)) / cand.size
        detail = ", ".join(f"{k} {len(v) if isinstance(v, list) else v}"
                           for k, v in cand.details.items())
        rows.append({"candidate": cand.index, "level": round(cand.level, 3),
                     "samples": cand.size, **{f"share {n}": round(float(x), 2)
                                              for n, x in zip(names, counts, strict=True)},
                     "details": detail})
    frame = pd.DataFrame(rows)
    if len(names) > 4:
        frame = frame[["candidate", "level", "samples", "details"]]
    return (TABLE_CSS + "<div class='ae-table' style='max-height:140px;overflow:auto'>"
            + frame.to_html(index=False, border=0) + "</div>")
