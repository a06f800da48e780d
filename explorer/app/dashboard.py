"""The explorer dashboard: ipywidgets controls wired to the experiments and figures.

Wiring only: every number comes from ``explorer.experiments`` and every figure from
``explorer.plots``; a job runs in a background thread so the interface stays responsive, reports
progress per candidate and per phase, and stops cleanly on Cancel. A task's data is found as the
command line finds it (a shared folder, the cache); what is missing is downloaded into the cache in
a background thread, and a task whose data cannot be had is marked unavailable.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
import threading
import time
import traceback

import ipywidgets as w
import numpy as np
import pandas as pd
import plotly.io as pio
from IPython.display import display

from explorer import plots
from explorer.appraisers import APPRAISER_NAMES, AppraiserConfig
from explorer.appraisers.config import DEFAULT_NEWTON_STEPS, PROVIDERS
from explorer.errors import Cancelled, DataUnavailable, ExplorerError
from explorer.experiments import appraise_market, market_acquisition, market_utilities
from explorer.loaders.user import read_candidate_file
from explorer.market import CORRUPTIONS, Candidate, make_market
from explorer.pricing import PricingRule
from explorer.seed import fit_seed_model
from explorer.tasks import TASKS, data_on_disk, load_task

BACKENDS = (("plaintext", "plaintext"), ("CrypTen, simulated", "simulated"),
            ("CrypTen, real parties", "parties"))
ACQUISITION_ROUNDS = 5
STYLE = {"description_width": "150px"}
TABLE_CSS = ("<style>.ae-table table{border-collapse:collapse;font-size:12px}"
             ".ae-table th,.ae-table td{padding:2px 10px;text-align:right}</style>")
WIDE = w.Layout(width="380px")
NO_TASK = "choose a task and a market that can be built first."


def _mimebundle_output(fig) -> dict:
    """A plotly figure as an Output widget's display_data (settable from any thread)."""
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
    return {"output_type": "display_data", "data": bundle, "metadata": {}}


def _html_output(text: str) -> dict:
    return {"output_type": "display_data", "data": {"text/html": text, "text/plain": ""},
            "metadata": {}}


def _diagnostic_notes(results: pd.DataFrame) -> str:
    """The appraisers' diagnostics (explorer.experiments) as warnings above the tabs."""
    noted = results[results.diagnostic.fillna("") != ""]
    lines = [f"{count} of {int((results.appraiser == name).sum())} {html.escape(name)} values: "
             f"{html.escape(note)}" for (name, note), count in
             noted.groupby(["appraiser", "diagnostic"], sort=False).size().items()]
    return "".join(f"<div style='color:#8a5a00;margin:2px 0'>⚠ {line}</div>" for line in lines)


def _download_link(label: str, filename: str, payload: str, mime: str) -> str:
    data = base64.b64encode(payload.encode("utf-8")).decode("ascii")
    return (f'<a download="{html.escape(filename)}" href="data:{mime};base64,{data}" '
            f'style="margin-right:1.5em">{html.escape(label)}</a>')


class ExplorerApp:
    """Pick a seed model, synthesize a market, appraise it, and watch the figures fill in."""

    def __init__(self, data_dir: str | None = None):
        """``data_dir``: where the file-based tasks' data is (as the command line's --data-dir);
        by default a shared folder or the cache, downloading into the cache what is missing."""
        self.data_dir = data_dir
        self.results: pd.DataFrame | None = None
        self.acquisition: pd.DataFrame | None = None
        self._task = self._seed = None
        self._market: list[Candidate] = []
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._figures: dict = {}
        self._task_lock = threading.RLock()  # the task is also set from loading threads
        self._quiet = False  # while set, control changes made by the app itself are ignored
        self._task_problem = ""  # why the chosen task cannot be used yet, for Run
        self._unavailable: set[str] = set()  # tasks whose data could not be had
        self._generation = 0  # counts the task and λ choices: a stale load is not shown
        self._download_locks = {spec.dataset.name: threading.Lock() for spec in TASKS.values()
                                if spec.dataset is not None}
        self._task_labels = tuple((self._task_label(name), name) for name in TASKS)
        self._build()
        self._refresh_task()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        c = self.controls = {
            "task": w.Dropdown(options=self._task_labels, value="wdbc", description="task",
                               style=STYLE, layout=WIDE),
            "lam": w.BoundedFloatText(value=TASKS["wdbc"].lam, min=1e-6, max=1e3, step=0.01,
                                      description="L2 strength λ", style=STYLE, layout=WIDE),
            "lam_cv": w.Checkbox(value=False, description="λ by cross-validation",
                                 indent=False, style=STYLE, layout=WIDE),
            "corruption": w.Dropdown(options=list(CORRUPTIONS), value="label-noise",
                                     description="corruption", style=STYLE, layout=WIDE),
            "candidates": w.IntSlider(value=20, min=2, max=100, description="candidates",
                                      style=STYLE, layout=WIDE),
            "size": w.IntSlider(value=30, min=5, max=500, description="samples each",
                                style=STYLE, layout=WIDE),
            "levels": w.FloatRangeSlider(value=(0.0, 0.5), min=0.0, max=1.0, step=0.01,
                                         description="level range", style=STYLE,
                                         layout=w.Layout(width="400px")),
            "seed": w.IntText(value=0, description="random seed", style=STYLE, layout=WIDE),
            "appraisers": w.SelectMultiple(options=APPRAISER_NAMES,
                                           value=("influence", "gradient-norm"),
                                           description="appraisers", rows=4, style=STYLE,
                                           layout=WIDE),
            "lr": w.BoundedFloatText(value=0.1, min=1e-6, max=100.0, description="fine-tune lr",
                                     style=STYLE, layout=WIDE),
            "steps": w.BoundedIntText(value=16, min=1, max=1000, description="fine-tune steps",
                                      style=STYLE, layout=WIDE),
            "newton_steps": w.BoundedIntText(value=DEFAULT_NEWTON_STEPS, min=1, max=64,
                                             description="newton steps", style=STYLE,
                                             layout=WIDE),
            "backend": w.ToggleButtons(options=BACKENDS, value="plaintext",
                                       description="backend", style=STYLE),
            "precision_bits": w.IntSlider(value=16, min=12, max=28,
                                          description="precision bits", style=STYLE,
                                          layout=WIDE),
            "provider": w.Dropdown(options=list(PROVIDERS), value="TTP", description="provider",
                                   style=STYLE, layout=WIDE),
            "reveal": w.ToggleButtons(options=["value", "bit"], value="value",
                                      description="reveal", style=STYLE),
            "threshold": w.FloatText(value=0.0, description="bit threshold", style=STYLE,
                                     layout=WIDE),
            "rate": w.FloatText(value=1000.0, description="price per nat", style=STYLE,
                                layout=WIDE),
        }
        c["size"].max = 500
        self.seed_info = w.HTML()
        self.provider_info = w.HTML()
        self.preview = w.HTML()
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="380px"))
        self.status = w.HTML("Choose a seed model and a market, then press Run.")
        self.error = w.HTML()
        self.notes = w.HTML()
        self.scatter_choice = w.Dropdown(options=["influence"], value="influence",
                                         description="scatter of", style=STYLE, layout=WIDE)
        self.outputs = {name: w.Output() for name in ("rank", "acquisition", "runtime",
                                                      "prices", "table")}
        self.downloads = w.HTML()
        self.figures_button = w.Button(description="Prepare figures (HTML)", icon="download",
                                       disabled=True)
        self.upload = w.FileUpload(accept=".csv,.npz", multiple=False,
                                   description="Appraise my file")
        self.upload_result = w.HTML()

        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.figures_button.on_click(lambda _: self._prepare_figures())
        self.scatter_choice.observe(lambda _: self._draw_scatter(), "value")
        self.upload.observe(lambda _: self._start(self._appraise_upload), "value")
        c["task"].observe(self._task_changed, "value")
        c["lam"].observe(self._lam_changed, "value")
        c["lam_cv"].observe(lambda _: self._refresh_task(), "value")
        c["provider"].observe(lambda _: self._describe_provider(), "value")
        for name in ("corruption", "candidates", "size", "levels", "seed"):
            c[name].observe(lambda _: self._refresh_market(), "value")
        self._describe_provider()
        # an empty figure from the start: plotly.js is loaded before the first results arrive
        self.outputs["rank"].outputs = (_mimebundle_output(plots.placeholder(
            "Press Run: each candidate's appraisal rank against its utility rank")),)

        def box(title, *children):
            return w.VBox([w.HTML(f"<b>{title}</b>"), *children],
                          layout=w.Layout(border="1px solid #ddd", padding="6px",
                                          margin="0 8px 8px 0"))

        seed_box = box("1. Seed model (model owner)", c["task"], c["lam"], c["lam_cv"],
                       self.seed_info)
        market_box = box("2. Market (data owners)", c["corruption"], c["candidates"], c["size"],
                         c["levels"], c["seed"])
        appraise_box = box("3. Appraisal", c["appraisers"], c["lr"], c["steps"],
                           c["newton_steps"], c["backend"],
                           c["precision_bits"], c["provider"], self.provider_info,
                           c["reveal"], c["threshold"], c["rate"])
        run_box = w.HBox([self.run_button, self.cancel_button, self.progress, self.status],
                         layout=w.Layout(align_items="center", flex_flow="row wrap"))
        tabs = w.Tab(children=[
            w.VBox([self.scatter_choice, self.outputs["rank"]]), self.outputs["acquisition"],
            self.outputs["runtime"], self.outputs["prices"],
            w.VBox([self.downloads, self.figures_button, self.outputs["table"]]),
            w.VBox([w.HTML("A CSV with the task's feature columns in order (raw units) and a "
                           "<code>label</code> column; appraised with the appraisers and "
                           "backend above."), self.upload, self.upload_result])])
        for i, title in enumerate(["Rank vs rank", "Acquisition", "Runtime", "Prices",
                                   "Results", "Your data"]):
            tabs.set_title(i, title)
        header = w.HTML("<h2 style='margin:4px 0'>Data appraisal without data sharing</h2>"
                        "<p style='margin:0 0 8px 0'>A model owner appraises candidate "
                        "datasets it may not see; under CrypTen only the appraised value, or "
                        "one bit, is revealed. Higher values are more valuable.</p>")
        self.widget = w.VBox([header, w.HBox([seed_box, market_box, appraise_box],
                                             layout=w.Layout(flex_flow="row wrap")),
                              box("Candidates (preview)", self.preview), run_box, self.error,
                              self.notes,
                              tabs])

    def _ipython_display_(self) -> None:
        display(self.widget)

    # ------------------------------------------------------------------ state
    def _show_error(self, message: str) -> None:
        self.error.value = (f"<div style='color:#b00020;margin:4px 0'>"
                            f"{html.escape(message)}</div>" if message else "")

    def _task_changed(self, change) -> None:
        with self._task_lock:
            if self._quiet:
                return
            self._quiet = True  # the task's own λ, without a refresh for it
            try:
                self.controls["lam"].value = TASKS[change["new"]].lam
            finally:
                self._quiet = False
            self._refresh_task()

    def _lam_changed(self, _) -> None:
        with self._task_lock:
            if not self._quiet:
                self._refresh_task()

    # ------------------------------------------------------------------ task and data
    def _needs_download(self, name: str) -> bool:
        """Whether the task's data is neither in ``data_dir`` (when given) nor on this machine.
        Looks at file names only, so it answers at once."""
        return self.data_dir is None and not data_on_disk(name)

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
        with self._task_lock:
            if labels == self._task_labels:
                return
            self._task_labels = labels
            dropdown = self.controls["task"]
            chosen = dropdown.value
            self._quiet = True  # new options select the first one: ignore that, then restore
            try:
                dropdown.options = labels
                dropdown.value = chosen
            finally:
                self._quiet = False

    def _refresh_task(self) -> None:
        """Load the chosen task and fit its seed model: at once for the tasks that ship with
        scikit-learn; in a background thread for those read from files (reading MNIST and
        fitting its seed model take seconds, a download longer), so the interface stays free."""
        c = self.controls
        with self._task_lock:
            self._generation += 1
            job = (self._generation, c["task"].value, c["lam"].value, c["lam_cv"].value)
            name = job[1]
            c["lam"].disabled = c["lam_cv"].value
            if name in self._unavailable:
                self._show_unavailable(name)
            elif TASKS[name].dataset is None:
                try:
                    self._show_task(*self._fit(job))
                except ExplorerError as exc:
                    self._no_task("", str(exc))
                    self._show_error(str(exc))
            else:
                self._no_task(*self._loading(name, self._needs_download(name)))
                threading.Thread(target=self._load_job, args=(job,), daemon=True).start()

    @staticmethod
    def _loading(name: str, downloading: bool) -> tuple[str, str]:
        """What the seed box says while a task's data loads, and what Run says."""
        dataset = TASKS[name].dataset
        if downloading:
            return (f"Downloading {dataset.name} ({dataset.download_mb} MB) into the cache; the "
                    f"seed model appears when it has arrived.",
                    f"{dataset.name} is still downloading; wait for the seed model to appear, "
                    f"or choose another task.")
        return (f"Reading {dataset.name} and fitting the seed model…",
                f"{name} is still loading; wait for the seed model to appear, or choose another "
                f"task.")

    def _fit(self, job: tuple):
        _, name, lam, lam_cv = job
        task = load_task(name, seed=0, lam=lam, allow_download=False,
                         data_dir=self.data_dir if TASKS[name].needs_files else None)
        return task, fit_seed_model(task, lam="cv" if lam_cv else None)

    def _load_job(self, job: tuple) -> None:
        """A file-based task, in a background thread: download its data into the cache if it is
        not on this machine, read it and fit the seed model; show it if still chosen."""
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
                self._if_current(job, self._no_task, self._loading(name, False))
            task, seed = self._fit(job)
        except Exception as exc:
            if isinstance(exc, DataUnavailable) or self._needs_download(name):
                if not isinstance(exc, ExplorerError):
                    traceback.print_exc()
                with self._task_lock:  # every task of this dataset
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

    def _if_current(self, job: tuple, show, args: tuple) -> None:
        """``show(*args)`` unless another task or λ was chosen since ``job`` started."""
        with self._task_lock:
            if job[0] == self._generation:
                show(*args)

    def _no_task(self, note: str, problem: str) -> None:
        """No seed model for now: ``note`` (HTML) in the seed box, ``problem`` for Run."""
        self._task = self._seed = None
        self._market = []
        self._task_problem = problem
        self.seed_info.value = f"<div style='max-width:370px'>{note}</div>" if note else ""
        self.preview.value = ""
        self._show_error("")

    def _task_failed(self, message: str) -> None:
        self._no_task("", message)
        self._show_error(message)

    def _show_unavailable(self, name: str) -> None:
        dataset = TASKS[name].dataset.name
        where = (f"{self.data_dir} holds no {dataset} files" if self.data_dir is not None else
                 f"{dataset} is not on this server and could not be downloaded")
        sentence = f"{name} is unavailable: {where}; choose another task."
        self._no_task(f"<span style='color:#b00020'>{html.escape(sentence)}</span>", sentence)

    def _show_task(self, task, seed) -> None:
        c = self.controls
        self._task, self._seed, self._task_problem = task, seed, ""
        s = self._seed
        chosen = (f"λ chosen by 5-fold cross-validation: <b>{s.lam:.3g}</b><br>"
                  if s.lam_choice is not None else "")
        self.seed_info.value = (f"{chosen}{s.n_seed} training samples, "
                                f"{self._task.n_features} features,"
                                f" {s.n_classes} classes<br>test accuracy "
                                f"<b>{s.test_accuracy:.3f}</b>, gradient norm "
                                f"{s.grad_norm:.1e}")
        c["size"].max = max(5, len(self._task.y_pool))
        self._show_error("")
        self._refresh_market()

    def _refresh_market(self) -> None:
        c = self.controls
        if self._task is None:
            return
        lo, hi = c["levels"].value
        try:
            self._market = make_market(self._task, c["corruption"].value, c["candidates"].value,
                                       c["size"].value, hi, lo, seed=c["seed"].value)
        except ExplorerError as exc:
            self._market = []
            self.preview.value = ""
            self._show_error(str(exc))
            return
        self._show_error("")
        names = self._task.class_names
        rows = []
        for cand in self._market:
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
        self.preview.value = (TABLE_CSS + "<div class='ae-table' style='max-height:160px;"
                              "overflow:auto'>" + frame.to_html(index=False, border=0)
                              + "</div>")

    def _describe_provider(self) -> None:
        p = self.controls["provider"].value
        self.provider_info.value = (f"<div style='font-size:12px;max-width:370px'>{p}: "
                                    f"{html.escape(PROVIDERS[p])}</div>")

    def _options(self) -> dict:
        c = self.controls
        backend = c["backend"].value
        private = {}
        if backend != "plaintext":
            private = {"mode": backend, "precision_bits": c["precision_bits"].value,
                       "provider": "TFP" if backend == "simulated" else c["provider"].value,
                       "reveal": c["reveal"].value, "threshold": c["threshold"].value}
        if not c["appraisers"].value:
            raise ExplorerError("choose at least one appraiser.")
        config = AppraiserConfig(names=tuple(c["appraisers"].value),
                                 backend="plaintext" if backend == "plaintext" else "crypten",
                                 lr=c["lr"].value, steps=c["steps"].value,
                                 newton_steps=c["newton_steps"].value, **private)
        return {"config": config, "appraisers": list(config.names), "rate": c["rate"].value}

    @staticmethod
    def _appraisers(opts: dict) -> list:
        return opts["config"].build_all()

    # ------------------------------------------------------------------ jobs
    def run(self) -> None:
        """Start appraising the market in a background thread (the Run button)."""
        self._start(self._job)

    def cancel(self) -> None:
        """Stop the running job; a private session's processes are stopped too."""
        self._cancel.set()
        self.status.value = "cancelling…"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job ends; True if it ended within ``timeout``."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _start(self, target) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._show_error("a job is already running; wait for it or press Cancel.")
            return
        self._cancel.clear()
        self._show_error("")
        self.run_button.disabled, self.cancel_button.disabled = True, False
        self.progress.bar_style = ""
        self._thread = threading.Thread(target=self._guarded, args=(target,), daemon=True)
        self._thread.start()

    def _guarded(self, target) -> None:
        try:
            target()
        except Cancelled:
            self.status.value = "cancelled"
            self.progress.bar_style = "warning"
        except ExplorerError as exc:
            self.status.value = "stopped"
            self.progress.bar_style = "danger"
            self._show_error(str(exc))
        except Exception as exc:
            self.status.value = "stopped"
            self.progress.bar_style = "danger"
            self._show_error(f"unexpected error: {exc}")
            traceback.print_exc()
        finally:
            self.run_button.disabled, self.cancel_button.disabled = False, True

    def _job(self) -> None:
        if self._seed is None or not self._market:
            raise ExplorerError(self._task_problem if self._seed is None and self._task_problem
                                else NO_TASK)
        opts = self._options()
        if not opts["appraisers"]:
            raise ExplorerError("choose at least one appraiser.")
        seed, market = self._seed, list(self._market)
        n, names = len(market), opts["appraisers"]
        rounds = min(ACQUISITION_ROUNDS, n) if "influence" in names else 0
        self.progress.max = n * (1 + len(names)) + rounds
        self.progress.value = 0
        self.results = self.acquisition = None
        self._figures = {}
        for out in self.outputs.values():
            out.outputs = ()
        self.downloads.value = ""
        self.figures_button.disabled = True
        started = time.perf_counter()
        offset = {"ground truth": 0, **{a: n * (i + 1) for i, a in enumerate(names)}}

        def progress(phase: str, done: int, total: int) -> None:
            base = next((v for k, v in offset.items() if phase.startswith(k)), 0)
            self.progress.value = min(base + done, self.progress.max)
            self.status.value = (f"{html.escape(phase)}: {done}/{total} "
                                 f"({time.perf_counter() - started:.1f} s)")

        appraisers = self._appraisers(opts)
        self.scatter_choice.options = names
        self.scatter_choice.value = names[0]
        with opts["config"].warm_processes():  # party processes import during ground truth
            utilities = market_utilities(seed, market, progress, self._cancel)
            results = appraise_market(seed, market, appraisers, utilities, progress,
                                      self._cancel, on_appraiser=self._show_results)
            self._show_results(results, final=True)
            if rounds:
                self.status.value = "acquisition: greedy by influence vs random…"
                self.acquisition = market_acquisition(seed, market, rounds,
                                                      config=opts["config"],
                                                      cancel=self._cancel)
                self._set_figure("acquisition", plots.acquisition_curves(self.acquisition))
        self.progress.value = self.progress.max
        self.progress.bar_style = "success"
        self.status.value = f"done in {time.perf_counter() - started:.1f} s"

    def _show_results(self, results: pd.DataFrame, final: bool = False) -> None:
        self.results = results
        self._draw_scatter()
        self.notes.value = _diagnostic_notes(results)
        if not final:
            return
        opts = self._options()
        self._set_figure("runtime", plots.runtime_bars(results))
        inf = results[results.appraiser == "influence"]
        if len(inf) and opts["config"].reveal != "bit":
            rule = PricingRule.calibrated(self._seed, int(inf["size"].max()), opts["rate"])
            priced = inf.assign(price=rule.prices(inf.value), accepted=inf.value > rule.threshold)
            self._set_figure("prices", plots.price_bars(priced))
        shown = results.drop(columns=["truth_seconds", "setup_seconds"]).round(5)
        self.outputs["table"].outputs = (_html_output(
            TABLE_CSS + "<div class='ae-table' style='max-height:400px;overflow:auto'>"
            + shown.to_html(index=False, border=0) + "</div>"),)
        self.downloads.value = _download_link("Download results (CSV)", "results.csv",
                                              results.to_csv(index=False), "text/csv")
        self.figures_button.disabled = False

    def _draw_scatter(self) -> None:
        if self.results is None or self.scatter_choice.value not in set(self.results.appraiser):
            return
        self._set_figure("rank", plots.rank_scatter(self.results, self.scatter_choice.value))

    def _set_figure(self, name: str, fig) -> None:
        self._figures[name] = fig
        self.outputs[name].outputs = (_mimebundle_output(fig),)

    def _prepare_figures(self) -> None:
        if not self._figures:
            return
        with tempfile.TemporaryDirectory() as tmp:
            links = []
            for name, fig in self._figures.items():
                path = plots.write_html(fig, os.path.join(tmp, f"{name}.html"))
                links.append(_download_link(f"{name}.html", f"{name}.html",
                                            path.read_text(encoding="utf-8"), "text/html"))
        self.downloads.value += "".join(links)

    def _appraise_upload(self) -> None:
        files = self.upload.value
        if not files or self._task is None or self._seed is None:
            return
        item = files[0]
        name = os.path.basename(item["name"]) or "candidate.csv"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, name)  # errors then name the user's own file
            with open(path, "wb") as f:
                f.write(bytes(item["content"]))
            X_raw, y = read_candidate_file(path, self._task.feature_names,
                                           self._task.class_names, mean=self._task.mean,
                                           scale=self._task.scale)
        cand = Candidate(0, self._task.standardise(X_raw), y, "user", float("nan"),
                         {"file": item["name"]})
        opts = self._options()
        appraisers = self._appraisers(opts)
        self.progress.max, self.progress.value = 1 + len(appraisers), 0

        def progress(phase: str, done: int, total: int) -> None:
            self.status.value = f"{html.escape(item['name'])}: {html.escape(phase)}"

        frame = appraise_market(self._seed, [cand], appraisers, progress=progress,
                                cancel=self._cancel)
        first = frame.iloc[0]
        rows = "".join(f"<tr><td>{html.escape(r.appraiser)}</td><td>{r.value:.6g}</td></tr>"
                       for r in frame.itertuples())
        self.upload_result.value = (
            f"<p><b>{html.escape(item['name'])}</b>: {len(y)} samples; utility by retraining "
            f"{first.utility:.6g} nats, accuracy change {first.accuracy_change:+.4f}</p>"
            f"<table><tr><th>appraiser</th><th>value</th></tr>{rows}</table>")
        self.progress.value = self.progress.max
        self.progress.bar_style = "success"
        self.status.value = f"appraised {html.escape(item['name'])}"
