"""The explorer dashboard: the parts composed and wired, nothing else.

- ``controls``: the widgets a user sets, tooltips, backend rules, lesson presets;
- ``task_loader``: the chosen task, its seed model (fitted in the background) and market;
- ``runner``: a run's snapshot, the jobs as plain Python, the background thread and progress;
- ``party_view``: who sees what, from each party's own session accounting;
- ``figures``: the figures (each with its own caption), table and downloads.

A run snapshots its task, seed model, market and settings when it starts, so nothing changed
mid-run reaches its results; every failure clears what it makes stale.
"""

from __future__ import annotations

import html
import time

import ipywidgets as w
from IPython.display import display

from explorer import memory, plots
from explorer.app.controls import (
    PRESETS,
    apply_preset,
    appraiser_config,
    build_attack_controls,
    build_controls,
    provider_text,
    sync_backend,
    threshold_text,
)
from explorer.app.figures import Figures, upload_html
from explorer.app.party_view import PartyView
from explorer.app.runner import JobRunner, ProgressPlan
from explorer.app.task_loader import TaskLoader
from explorer.errors import ExplorerError
from explorer.jobs import (
    RunSnapshot,
    appraise_upload,
    attack_curves,
    buy_within_budget,
    compare_models,
    run_appraisal,
)
from explorer.progress import ProgressEvent

TABS = (("rank", "Rank vs rank"), ("parties", "Who sees what"), ("acquisition", "Acquisition"),
        ("runtime", "Runtime"), ("prices", "Prices"), ("table", "Results"),
        ("upload", "Your data"), ("leakage", "Leakage"), ("models", "Seed models"))
# the button a lesson's tab is run with (Run for the others)
TAB_BUTTONS = {"leakage": "Run the attack", "models": "Compare seed models"}
SIDEBAR_WIDTH = "350px"
# Voila sets 28 px lines on every HTML widget: too loose for a projector's 720 px
CSS = ("<style>.ae-root .widget-html-content{line-height:1.35}"
       ".ae-root .widget-tab>.p-TabBar .p-TabBar-tab,.ae-root .widget-tab>.lm-TabBar "
       ".lm-TabBar-tab{min-width:0;flex:0 1 auto;padding:0 10px}</style>")
NO_PRESET = "(choose a lesson)"


class ExplorerApp:
    """Pick a seed model, synthesize a market, appraise it, and watch the figures fill in."""

    def __init__(self, data_dir: str | None = None):
        """``data_dir``: where the file-based tasks' data is (as the command line's --data-dir);
        by default a shared folder or the cache, downloading into the cache what is missing."""
        self.error = w.HTML()
        self.controls = build_controls((("wdbc", "wdbc"),))
        self.attack_controls = build_attack_controls()
        self.runner = JobRunner(self._show_error)
        self.figures = Figures()
        self.party_view = PartyView()
        self.loader = TaskLoader(self.controls, self._show_error, self._task_changed, data_dir)
        self.provider_info = w.HTML()
        self.threshold_info = w.HTML()
        self.upload = w.FileUpload(accept=".csv,.npz", multiple=False,
                                   description="Appraise my file", layout=w.Layout(width="auto"),
                                   tooltip="A CSV or NPZ with the task's feature columns in "
                                           "order (raw units) and a label column.")
        self.again_button = w.Button(description="Appraise again", icon="refresh",
                                     disabled=True, tooltip="Appraise the last file again with "
                                                            "the current task and settings.")
        self.upload_result = w.HTML()
        self._last_upload: tuple[str, bytes] | None = None
        self.preset = w.Dropdown(options=[NO_PRESET, *PRESETS], value=NO_PRESET,
                                 description="lesson", style={"description_width": "50px"},
                                 layout=w.Layout(width="340px"),
                                 tooltip="Set everything for one lesson, then press Run.")
        self.lesson = w.HTML()
        self.attack_button = w.Button(description="Run the attack", icon="play",
                                      layout=w.Layout(width="auto"),
                                      tooltip="Attack the chosen task's seed model (or a "
                                              "candidate) under each defence.")
        self.compare_button = w.Button(description="Compare seed models", icon="play",
                                       layout=w.Layout(width="auto"),
                                       tooltip="Appraise the chosen market under the logistic, "
                                               "mlp and last-layer seed models, each against "
                                               "its own retraining.")
        self.budget = w.BoundedFloatText(value=100.0, min=0.01, max=1e12, description="budget",
                                         style={"description_width": "50px"},
                                         layout=w.Layout(width="180px"),
                                         tooltip="What the model owner may spend in all; each "
                                                 "seller asks about 1 per sample.")
        self.buy_button = w.Button(description="Buy within budget", icon="play",
                                   layout=w.Layout(width="auto"),
                                   tooltip="Buy from the last run's market by influence per "
                                           "asking price, beside random buying and the oracle.")
        self._preset_scatter: str | None = None
        self.models_results = None  # the last comparison of seed models (a DataFrame)
        self._provider_for_parties = self.controls["provider"].value
        self._wire()
        self.widget = self._layout()
        sync_backend(self.controls)
        self._describe_provider()
        self.loader.refresh()

    # ---------------------------------------------------------------- wiring
    def _wire(self) -> None:
        c = self.controls
        self.runner.run_button.on_click(lambda _: self.run())
        self.upload.observe(self._uploaded, "value")
        self.again_button.on_click(lambda _: self._appraise_last_upload())
        self.attack_button.on_click(lambda _: self.attack())
        self.compare_button.on_click(lambda _: self.compare())
        self.buy_button.on_click(lambda _: self.buy())
        self.preset.observe(self._preset_chosen, "value")
        c["backend"].observe(self._backend_changed, "value")
        for name in ("provider", "reveal", "threshold_sd"):
            c[name].observe(lambda _: (sync_backend(c), self._describe_provider()), "value")

    def _layout(self) -> w.Widget:
        c = self.controls
        section = w.Accordion(children=[
            w.VBox([c["task"], c["model"], c["hidden"], c["lam"], c["lam_cv"],
                    self.loader.seed_info]),
            w.VBox([c["corruption"], c["candidates"], c["size"], c["levels"], c["random_state"],
                    self.loader.preview]),
            w.VBox([c["appraisers"], c["lr"], c["steps"], c["newton_steps"], c["rate"],
                    c["flat"]]),
            w.VBox([c["backend"], c["precision_bits"], c["provider"], self.provider_info,
                    c["reveal"], c["threshold_sd"], self.threshold_info])], selected_index=0)
        for i, title in enumerate(["1. Seed model (model owner)", "2. Market (data owners)",
                                   "3. Appraisers", "4. Backend and privacy"]):
            section.set_title(i, title)
        self.sections = section
        sidebar = w.VBox([self.preset, self.lesson, section],
                         layout=w.Layout(width=SIDEBAR_WIDTH, min_width=SIDEBAR_WIDTH,
                                         margin="0 10px 0 0"))
        r = self.runner
        run_bar = w.HBox([r.run_button, r.cancel_button, r.progress, r.status],
                         layout=w.Layout(align_items="center", flex_flow="row wrap"))
        f = self.figures
        contents = {
            "parties": self.party_view.widget,
            "acquisition": w.VBox([f.tab("acquisition"),
                                   w.HBox([self.budget, self.buy_button]), f.outputs["budget"]]),
            "upload": w.VBox([w.HTML("A CSV with the task's feature columns in order (raw "
                                     "units) and a <code>label</code> column; appraised with "
                                     "the task, appraisers and backend chosen on the left."),
                              w.HBox([self.upload, self.again_button]), self.upload_result]),
            "leakage": w.VBox([w.HBox([self.attack_controls["attacker"],
                                       self.attack_controls["defences"],
                                       self.attack_button]),
                               f.tab("leakage")]),
            "models": w.VBox([w.HBox([self.compare_button]), f.tab("models")]),
        }
        self.tabs = w.Tab(children=[contents.get(key) or f.tab(key) for key, _ in TABS])
        for i, (_, title) in enumerate(TABS):
            self.tabs.set_title(i, title)
        header = w.HTML(CSS + "<div style='margin:0 0 4px 0'><b style='font-size:17px'>Data "
                        "appraisal without data sharing</b> &nbsp;Only each value, or one bit, "
                        "is revealed; higher values are more valuable.</div>")
        main = w.VBox([run_bar, w.HBox([f.run_label], layout=w.Layout(margin="0 0 2px 0")),
                       self.error, f.notes, self.tabs],
                      layout=w.Layout(flex="1 1 auto", min_width="0"))
        root = w.VBox([header, w.HBox([sidebar, main], layout=w.Layout(width="100%"))])
        root.add_class("ae-root")
        return root

    def _ipython_display_(self) -> None:
        display(self.widget)

    # ---------------------------------------------------------------- shortcuts (tests)
    @property
    def results(self):
        """The shown run's results (one row per candidate and appraiser), or None."""
        return self.figures.outcome.results if self.figures.outcome is not None else None

    @property
    def outputs(self) -> dict:
        return self.figures.outputs

    @property
    def progress(self) -> w.IntProgress:
        return self.runner.progress

    @property
    def status(self) -> w.HTML:
        return self.runner.status

    @property
    def run_button(self) -> w.Button:
        return self.runner.run_button

    @property
    def seed_info(self) -> w.HTML:
        return self.loader.seed_info

    @property
    def preview(self) -> w.HTML:
        return self.loader.preview

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job ends; True if it ended within ``timeout``."""
        return self.runner.wait(timeout)

    def cancel(self) -> None:
        self.runner.cancel()

    # ---------------------------------------------------------------- state
    def _show_error(self, message: str) -> None:
        self.error.value = (f"<div style='color:#b00020;margin:4px 0'>"
                            f"{html.escape(message)}</div>" if message else "")

    def _task_changed(self, ok: bool) -> None:
        """A task that failed to load makes the shown preview and results stale."""
        if not ok and not self.runner.running:
            self.figures.clear()
            self.party_view.clear()

    def _backend_changed(self, change) -> None:
        """Simulated mode can only use TFP: the provider chosen for real parties comes back
        when they are chosen again."""
        provider = self.controls["provider"]
        if change["new"] == "simulated":
            self._provider_for_parties = provider.value
        elif change["old"] == "simulated":
            provider.value = self._provider_for_parties
        sync_backend(self.controls)
        self._describe_provider()

    def _describe_provider(self) -> None:
        """The provider actually used and, in bit mode, how the thresholds are set."""
        self.provider_info.value = (f"<div style='font-size:12px;max-width:320px'>"
                                    f"{provider_text(self.controls)}</div>")
        thresholds = threshold_text(self.controls)
        self.threshold_info.value = (f"<div style='font-size:12px;max-width:320px'>"
                                     f"{thresholds}</div>" if thresholds else "")

    def _preset_chosen(self, change) -> None:
        preset = PRESETS.get(change["new"])
        if preset is None:
            self.lesson.value, self._preset_scatter = "", None
            return
        apply_preset(self.controls, self.attack_controls, preset)
        self._preset_scatter = preset.scatter
        self.lesson.value = (f"<div style='font-size:12px;max-width:330px;margin:0 0 6px 0'>"
                             f"{html.escape(preset.lesson)} Press <b>"
                             f"{TAB_BUTTONS.get(preset.tab, 'Run')}</b>.</div>")
        self.tabs.selected_index = [key for key, _ in TABS].index(preset.tab)

    def _on_event(self, event: ProgressEvent) -> None:
        self.runner.on_event(event)
        self.party_view.on_event(event)

    # ---------------------------------------------------------------- jobs
    def run(self) -> None:
        """Appraise the market in a background thread (the Run button)."""
        self.runner.start(self._job)

    def _job(self) -> None:
        c = self.controls
        config = appraiser_config(c)  # the settings as Run was pressed
        rate, flat, threshold_sd = c["rate"].value, c["flat"].value, c["threshold_sd"].value
        self.runner.say("waiting for the seed model…")
        name, task, seed, market = self.loader.wait_ready(self.runner.cancel_event)
        with self.loader.computing():  # no seed model is fitted meanwhile
            if config.reveals_bits:
                self.runner.say("setting each appraiser's threshold from the model owner's data…")
            snapshot = RunSnapshot.take(name, task, seed, market, config, rate, flat, threshold_sd)
            self.runner.set_plan(ProgressPlan(config.names, len(market), snapshot.rounds))
            self.figures.start(snapshot.describe(), config.names)
            if self._preset_scatter in config.names:
                self.figures.scatter_choice.value = self._preset_scatter
            self.party_view.clear()
            context = {"task": name, "n_seed": seed.n_seed, "n_test": len(seed.y_test),
                       "backend": config.backend}
            if not config.private:
                self.party_view.show({}, context)
            started = time.perf_counter()

            def partial(outcome) -> None:
                self.figures.show(outcome)
                if outcome.accounts:
                    self.party_view.show(outcome.accounts, context)

            # the page's memory budget is checked before this kernel's party processes start: once
            # started, they are counted at what they hold while still importing
            with memory.guard(config, self.runner.cancel_event):
                # real parties: this kernel's own party processes from now on, importing during
                # the ground truth (the kernel holds both sides' data already; a page that never
                # runs them never pays for them)
                config.keep_processes()
                outcome = run_appraisal(snapshot, self._on_event, self.runner.cancel_event, partial)
            self.figures.show(outcome, final=True)
        self.runner.say(f"done in {time.perf_counter() - started:.1f} s")

    def _uploaded(self, change) -> None:
        files = change["new"]
        if not files:  # cleared below, so that the same file can be chosen again
            return
        item = files[0]
        self._last_upload = (item["name"], bytes(item["content"]))
        self.upload.value = ()
        self._appraise_last_upload()

    def _appraise_last_upload(self) -> None:
        if self._last_upload is not None:
            self.runner.start(self._upload_job)

    def _upload_job(self) -> None:
        filename, content = self._last_upload
        self.upload_result.value = ""  # a failure must not leave the previous result standing
        self.again_button.disabled = False
        config = appraiser_config(self.controls)
        threshold_sd = self.controls["threshold_sd"].value
        backend = dict(zip(self.controls["backend"]._options_values,
                           self.controls["backend"]._options_labels, strict=True))[
            self.controls["backend"].value]
        name, task, seed, _ = self.loader.wait_ready(self.runner.cancel_event)
        self.runner.say(f"appraising {html.escape(filename)}…")
        with memory.guard(config, self.runner.cancel_event), self.loader.computing():
            config.keep_processes()  # as in _job
            outcome = appraise_upload(filename, content, name, task, seed, config, backend,
                                      self._on_event, self.runner.cancel_event, threshold_sd)
        self.upload_result.value = upload_html(outcome)
        self.runner.say(f"appraised {html.escape(filename)}")

    def attack(self) -> None:
        """Measure what the revealed values leak, under each chosen defence (the leakage
        tab's button)."""
        self.runner.start(self._attack_job)

    def compare(self) -> None:
        """Appraise the chosen market under every seed-model family (the Seed models tab's
        button: the lesson "Does influence hold for a neural network?")."""
        self.runner.start(self._compare_job)

    def _compare_job(self) -> None:
        config = appraiser_config(self.controls)
        hidden = (self.controls["hidden"].value,)
        self.figures.outputs["models"].outputs = ()
        _, task, _, market = self.loader.wait_ready(self.runner.cancel_event)
        started = time.perf_counter()
        with self.loader.computing():
            frame = compare_models(task, market, config, hidden, on_event=self._on_event,
                                   cancel=self.runner.cancel_event)
        self.models_results = frame
        self.figures.set_figure("models", plots.model_correlation_bars(frame))
        self.runner.say(f"compared {frame.model.nunique()} seed models in "
                        f"{time.perf_counter() - started:.1f} s")

    def buy(self) -> None:
        """Buy within the budget from the last run's market (the acquisition tab's button)."""
        self.runner.start(self._buy_job)

    def _buy_job(self) -> None:
        outcome = self.figures.outcome
        if outcome is None or outcome.results.empty:
            raise ExplorerError("press Run first: the buyer buys from that run's market.")
        self.figures.outputs["budget"].outputs = ()
        config = outcome.snapshot.config
        with memory.guard(config, self.runner.cancel_event), self.loader.computing():
            config.keep_processes()  # as in _job
            frame = buy_within_budget(outcome.snapshot, self.budget.value, self._on_event,
                                      self.runner.cancel_event)
        self.figures.set_figure("budget", plots.budget_curves(frame))
        self.runner.say(f"bought within a budget of {self.budget.value:g}")

    def _attack_job(self) -> None:
        attacker = self.attack_controls["attacker"].value
        defences = tuple(self.attack_controls["defences"].value)
        if not defences:
            raise ExplorerError("choose at least one defence (none compares with no defence).")
        self.figures.outputs["leakage"].outputs = ()
        _, _, seed, market = self.loader.wait_ready(self.runner.cancel_event)
        with self.loader.computing():
            frame = attack_curves(seed, attacker, defences, market[0] if market else None,
                                  self.runner.cancel_event, self._on_event)
        self.figures.set_figure("leakage", plots.leakage_curves(frame))
        self.runner.say(f"attack measured under {len(defences)} defences")
