"""The Textual front end: watch and steer one run through a RunController.

The monitor is a view of the run model (:class:`tuigpt.run.model.RunModel`): the controller calls our subscriber
on the publishing (trainer) thread, which folds the event into the model and posts a message for the rare events
(with the lines the model worded them in). Everything that touches a widget happens on the app's thread: the
message handlers write the events log and hand the widgets the model's snapshot at once, and a redraw timer
hands it to them twice a second (the charts and panes at most once a second, and only when their part changed).
Widgets hold what they show as reactive state; the app holds only what is its own: the view (log y, zoom, x
axis, the pane shown) and the way out (a quit under way, the signal that asked for it).

No failure inside the monitor may stop training: its handlers and panes run behind :func:`~tuigpt.ui.isolation.guarded`
and end in :meth:`TuiGptApp.report_failure`; what Textual itself cannot survive is kept in ``crashed`` for the host.

Usage::

    app = TuiGptApp(controller, config_path="configs/x.yaml")
    app.run()   # app.return_code: run.exits.exit_code of how the run ended
"""

from __future__ import annotations

import asyncio
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Tab, Tabs
from textual.worker import get_current_worker

from tuigpt.run import events as ev
from tuigpt.run.commands import CheckpointNow, Command, Sample, SetEvalInterval, Stop, TogglePause, describe
from tuigpt.run.controller import RunController
from tuigpt.run.exits import exit_code
from tuigpt.run.model import RECENT_WINDOW, RunModel, RunSnapshot
from tuigpt.run.series import X_AXES
from tuigpt.ui import braille, keys
from tuigpt.ui.alerts import MonitorAlerts
from tuigpt.ui.compare import CompareCurve, CompareSource
from tuigpt.ui.isolation import failure_text, guarded
from tuigpt.ui.messages import ClusterUpdate, RunEnded, RunEvent, TelemetryUpdate, wrap
from tuigpt.ui.widgets.cluster import ClusterPane
from tuigpt.ui.widgets.cpu import CpuPane
from tuigpt.ui.widgets.events_log import EventsLog
from tuigpt.ui.widgets.failure import FailureBanner
from tuigpt.ui.widgets.gpu import GpuPane
from tuigpt.ui.widgets.health import HealthPane
from tuigpt.ui.widgets.help_screen import HelpScreen
from tuigpt.ui.widgets.interval_input import IntervalDialog
from tuigpt.ui.widgets.loss import WAITING, LossChart
from tuigpt.ui.widgets.mfu import MfuPane
from tuigpt.ui.widgets.projection import projection_layers
from tuigpt.ui.widgets.quit_dialog import CANCEL, DETACH, SAVE, QuitDialog
from tuigpt.ui.widgets.samples import SamplesPane
from tuigpt.ui.widgets.speed import SpeedPane
from tuigpt.ui.widgets.status import StatusBar
from tuigpt.ui.widgets.target_input import CLEAR, TargetDialog
from tuigpt.ui.widgets.timeline import SampleTimeline

# The monitor shares the CPU (and the GIL) with training: on a 2-core laptop every millisecond of drawing is a
# millisecond the trainer waits.
REDRAW_SECONDS = 0.5
CHART_SECONDS = 1.0  # at most this often for the loss chart and the panes
COMPARE_RELOAD_SECONDS = 10.0  # a --compare run that is still training is re-read this often when it grew
# In a small terminal these panes share one slot below the chart, picked with tabs (or n).
PANES = [("events", "Events"), ("samples", "Sample"), ("speed", "Speed"), ("mfu", "MFU"), ("cpu", "CPU"), ("gpu", "GPU")]
RIGHT_PANES = {"speed", "mfu", "cpu", "gpu", "samples"}
CLUSTER_PANE = ("cluster", "Cluster")  # joins the panes when a multi-rank run reports its first timings
SCROLLABLE = ("events", "samples")  # what n focuses in the wide layout


class TuiGptApp(App[int]):
    """Live view of one training run; ``return_code`` says how the run ended (see run/exits.py)."""

    CSS_PATH = "app.tcss"
    TITLE = "tuigpt"
    ENABLE_COMMAND_PALETTE = False
    AUTO_FOCUS = None  # no pane focused until n (or Tab) picks one: then the arrow keys scroll it
    # compact layout (one secondary pane at a time) below 100 columns or 32 rows
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    BINDINGS = keys.BINDINGS
    HELP = keys.HELP

    crashed: BaseException | None = None
    """An error that ended the app (None: it ended normally): the host trains on without the monitor."""

    def __init__(self, controller: RunController, *, config_path: str | None = None,
                 clock: Callable[[], float] = time.time, watching: bool = False, compare: object | None = None) -> None:
        """``watching``: the run lives in another process (q offers to detach); ``compare``: a run directory (or
        a CompareCurve) whose loss curves are overlaid on the chart."""
        super().__init__()
        self.watching = watching
        if watching:
            self.title = "tuigpt watch"
        self.controller = controller
        self.config_path = config_path
        self.clock = clock  # injectable so elapsed/ETA are deterministic in tests
        self.model = RunModel()
        self.alerts = MonitorAlerts(self)
        self._compare_source = CompareSource(compare) if compare is not None else None
        self._compare: CompareCurve | None = self._compare_source.curve if self._compare_source else None
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # the view: what the chart shows and which pane, the monitor's own
        self._x_axis = X_AXES[0]
        self._log_y = False
        self._recent = False
        self._show_health = False
        self._timeline_shown = False
        self._pane = PANES[0][0]
        self._pane_order = [name for name, _ in PANES]
        self._was_compact: bool | None = None
        # what was drawn last: the charts and panes are drawn again only when their part of the snapshot changed
        self._chart_drawn_at = float("-inf")
        self._drawn: tuple[object, ...] | None = None
        self._health_drawn = -1
        # the way out
        self._stopping = False  # Stop sent from the quit dialog: exit when the run ends
        self._signalled: int | None = None  # the signal that asked this app to stop, if any
        self._failures_seen: set[tuple[str, str]] = set()

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Widgets are kept as attributes, not queried: an event that arrives while the screen is being built or
        # torn down then updates a detached widget, harmlessly.
        self._status = StatusBar(self.config_path, id="status")
        self._failure = FailureBanner(id="failure")
        self._loss = LossChart(id="loss")
        self._health_pane = HealthPane(id="health")
        self._timeline = SampleTimeline(id="timeline", classes="pane")
        self._tabs = Tabs(*(Tab(title, id=f"tab-{pane}") for pane, title in PANES), id="pane-tabs")
        self._events_log = EventsLog(id="events", classes="pane")
        self._samples = SamplesPane(id="samples", classes="pane")
        self._speed = SpeedPane(id="speed", classes="pane")
        self._mfu = MfuPane(id="mfu", classes="pane")
        self._cpu = CpuPane(id="cpu", classes="pane")
        self._gpu = GpuPane(id="gpu", classes="pane")
        self._cluster = ClusterPane(id="cluster", classes="pane")
        self._panes = {"events": self._events_log, "samples": self._samples, "speed": self._speed, "mfu": self._mfu,
                       "cpu": self._cpu, "gpu": self._gpu, "cluster": self._cluster}
        yield self._status
        yield self._failure
        with Horizontal(id="body") as self._body:
            with Vertical(id="left"):
                yield self._loss
                yield self._health_pane
                yield self._tabs
                yield self._events_log
                yield self._cluster
            with Vertical(id="right"):
                yield self._speed
                yield self._mfu
                yield self._cpu
                yield self._gpu
                yield self._samples
                yield self._timeline
        yield Footer()

    def on_mount(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._select_pane(self._pane)
        self.set_interval(REDRAW_SECONDS, self._tick)
        if self._compare_source is not None and self._compare is None:
            self.run_worker(self._load_compare, thread=True, group="compare", exit_on_error=False)
        if self._compare_source is not None:
            self.set_interval(COMPARE_RELOAD_SECONDS, self._reload_compare_if_grown)
        self.call_after_refresh(self._start_run)  # first paint before the first event
        if self._signalled is not None:
            self._quit_chosen(SAVE)  # a signal came before the screen was up

    def _start_run(self) -> None:
        self._unsubscribe = self.controller.subscribe(self._receive)
        self.controller.start()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    def on_resize(self) -> None:
        # the screen's breakpoint classes change with this resize: read them once it is laid out
        self.call_after_refresh(self._layout_changed)

    def _layout_changed(self) -> None:
        compact = self.compact
        if compact != self._was_compact:
            self._was_compact = compact
            self.refresh_bindings()
            self._select_pane(self._pane)

    @property
    def state(self) -> ev.RunState:
        """The run's state as last reported."""
        return self.model.state

    @property
    def outcome(self) -> ev.RunFinished | ev.RunFailed | None:
        """How the run ended; None while it runs."""
        return self.model.outcome

    @property
    def compact(self) -> bool:
        screen = self.screen
        return screen.has_class("-narrow") or screen.has_class("-short")

    @property
    def compare(self) -> CompareCurve | None:
        """The run overlaid on the loss chart, once loaded."""
        return self._compare

    @property
    def x_axis(self) -> str:
        return self._x_axis

    def _select_pane(self, pane: str) -> None:
        self._pane = pane
        for name, widget in self._panes.items():
            widget.set_class(name == pane, "-selected")
        self._timeline.set_class(pane == "samples", "-selected")  # the timeline stands in for the sample pane
        self._body.set_class(pane in RIGHT_PANES, "-right-selected")
        if self._tabs.active != f"tab-{pane}":
            self._tabs.active = f"tab-{pane}"

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab.id and event.tab.id.removeprefix("tab-") != self._pane:
            self._select_pane(event.tab.id.removeprefix("tab-"))

    # ------------------------------------------------------------ compared run

    def _reload_compare_if_grown(self) -> None:
        if self._compare_source is not None and self._compare_source.grown:
            self.run_worker(self._load_compare, thread=True, group="compare", exclusive=True, exit_on_error=False)

    def _load_compare(self) -> None:
        """Worker thread: read the compared run's history."""
        assert self._compare_source is not None
        try:
            curve = self._compare_source.load()
        except Exception as exc:  # a bad --compare directory must not take the monitor down
            self.call_from_thread(self._events_log.add, self.clock(),
                                  f"compare: cannot read {self._compare_source.path}: {exc}", "warning")
            return
        self.call_from_thread(self._set_compare, curve)

    def _set_compare(self, curve: CompareCurve) -> None:
        if self._compare is None:
            self._events_log.add(self.clock(), f"comparing with {curve.name}: {len(curve.points):,} points, "
                                 f"{len(curve.evals):,} evals (x cycles the x axis)")
        self._compare = curve
        self.redraw()

    # ------------------------------------------------------------ events in

    def _receive(self, event: ev.Event) -> None:
        """Runs on the publishing (trainer) thread: fold and post, nothing else. Not guarded here (no widget may be
        touched from this thread); the model never raises, and the EventBus catches what would.

        (Not named _on_*: Textual would take that for a handler of RunEvent messages.)
        """
        if isinstance(event, ev.IterationStats):  # iterations: the redraw tick reads them from the snapshot
            self.model.record(event, words=False)
        else:
            self.post_message(wrap(event, self.model.record(event)))

    @guarded("telemetry")
    def on_telemetry_update(self, message: TelemetryUpdate) -> None:
        self._show_readings(self._snapshot())

    @guarded("cluster")
    def on_cluster_update(self, message: ClusterUpdate) -> None:
        if CLUSTER_PANE[0] not in self._pane_order:  # first timings of a multi-rank run: the pane appears
            self._pane_order.append(CLUSTER_PANE[0])
            self._tabs.add_tab(Tab(CLUSTER_PANE[1], id=f"tab-{CLUSTER_PANE[0]}"))
            self._body.add_class("-cluster")
        self._show_readings(self._snapshot())

    @guarded("events")
    def on_run_event(self, message: RunEvent) -> None:
        event = message.event
        for line in message.lines:
            self._events_log.add_line(event.time, line)
        self.alerts.observe(event, self.model.run)
        if isinstance(event, ev.RunFailed):
            self._failure.show_failure(event)
        snap = self._snapshot()
        self._show_status(snap)
        if isinstance(event, (ev.SampleGenerated, ev.HistoryLoaded)):
            self._samples.samples = snap.samples
        if isinstance(event, (ev.RunFailed, ev.RunFinished)):
            self._run_over()

    def on_run_ended(self, _: RunEnded) -> None:
        if self._stopping:
            self._exit_with_outcome()

    def _run_over(self) -> None:
        self._status.note = ""
        self.refresh_bindings()
        self.redraw()
        if self._stopping:
            self._exit_with_outcome()

    # ------------------------------------------------------------ drawing

    def _snapshot(self, recent_window: int = RECENT_WINDOW) -> RunSnapshot:
        return self.model.snapshot(self.clock(), recent_window)

    @guarded("status")
    def _tick(self) -> None:
        """Timer: the status line every tick, the charts and panes at most every CHART_SECONDS."""
        if time.monotonic() - self._chart_drawn_at >= CHART_SECONDS:
            self.redraw()
        else:
            self._show_status(self._snapshot())

    @guarded("monitor")
    def redraw(self) -> None:
        """Every widget from a fresh snapshot: the charts and panes only when their part or the view changed."""
        snap = self._snapshot()
        drawn = (snap.loss.version, self._log_y, self._recent, self._x_axis, id(self._compare), snap.target.target,
                 self._speed.ranks)
        if drawn != self._drawn:
            self._chart_drawn_at = time.monotonic()
            self._drawn = drawn
            self._draw_loss(snap)
            self._speed.progress = snap.progress
            if snap.run is not None:
                self._mfu.show(snap.progress, snap.run.peak_flops, snap.run.peak_label)
        self._draw_health(snap)
        self._show_readings(snap)
        self._samples.samples = snap.samples
        self._show_status(snap)

    def _show_status(self, snap: RunSnapshot) -> None:
        self._status.snapshot = snap
        if snap.progress.last is None and snap.outcome is None:  # nothing trained yet: what the chart waits for
            evaluating = snap.evaluating if snap.state == ev.RunState.EVALUATING else None
            first = " the untrained model" if snap.untrained_eval else ""
            self._loss.set_waiting(f"evaluating{first}: {evaluating.done}/{evaluating.total} batches…"
                                   if evaluating is not None else WAITING)

    @guarded("telemetry")
    def _show_readings(self, snap: RunSnapshot) -> None:
        """The CPU, GPU and cluster panes, each when its reading is a new one."""
        for kind, pane in (("cpu", self._cpu), ("gpu", self._gpu)):
            if kind in snap.readings and snap.readings[kind] is not pane.reading:
                pane.show(snap.readings[kind])
                if kind == "cpu":  # in a small terminal the CPU pane may be a tab away: its tab says so too
                    tab = self._tabs.query_one("#tab-cpu", Tab)
                    label = "CPU contended" if getattr(pane.reading, "contended", None) else "CPU"
                    if str(tab.label) != label:
                        tab.label = label
        stats = snap.cluster
        if stats is not None and stats is not self._cluster.stats:
            self._speed.ranks = len(stats.ranks)  # its note says whose steps it times
            self._cluster.steps = snap.log_interval
            self._cluster.show(stats)

    def _draw_loss(self, snap: RunSnapshot) -> None:
        extra, legend = self._projection(snap) or ([], None)
        run = snap.run
        self._loss.draw(snap.loss, log_y=self._log_y, recent=self._recent, x_axis=self._x_axis, compare=self._compare,
                        extra=extra, cooldown_from=snap.cooldown_from,
                        tokenizer=run.tokenizer if run is not None else None,
                        bytes_per_token=run.bytes_per_token if run is not None else None, legend_extra=legend)
        if legend is not None and self._loss.data is not None:  # the projection's words in the title
            self._loss.border_title = f"{self._loss.border_title} · {snap.target.chart}"

    @guarded("projection")
    def _projection(self, snap: RunSnapshot) -> tuple[list[braille.Layer], Text | None]:
        """The target projection's layers for the loss chart (none without a target) and its legend entry."""
        return projection_layers(snap.target.projection, snap.loss, self._x_axis, snap.target.tokens_per_iter,
                                 snap.progress.ms_per_iter, self._recent)

    @guarded("health")
    def _draw_health(self, snap: RunSnapshot) -> None:
        """The Health pane when shown and changed, and the timeline's samples."""
        if self._show_health and snap.health.version != self._health_drawn:
            self._health_drawn = snap.health.version
            self._health_pane.view = snap.health
        self._timeline.update_samples(snap.timeline)

    # ------------------------------------------------------------ failures inside the monitor

    def report_failure(self, where: str, exc: BaseException, pane: Any = None) -> None:
        """A part of the monitor failed: say so in its pane and, once per distinct error, in the events log."""
        if pane is not None and hasattr(pane, "show_failure"):
            try:
                pane.show_failure(failure_text(where, exc))
            except Exception:  # the pane cannot even show that: the log line below still says it
                pass
        key = (where, f"{type(exc).__name__}: {exc}")
        if key in self._failures_seen:
            return
        self._failures_seen.add(key)
        where_in_code = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" at {where_in_code[0].filename.rsplit('/', 1)[-1]}:{where_in_code[0].lineno}" if where_in_code else ""
        try:
            self._events_log.add(self.clock(), f"monitor: {where} failed ({key[1][:200]}{at}); training goes on",
                                 "error")
        except Exception:
            pass

    def _handle_exception(self, error: Exception) -> None:
        """Textual's last resort (it ends the app): remember the error so the host can go on without the UI."""
        if self.crashed is None:
            self.crashed = error
        super()._handle_exception(error)

    # ------------------------------------------------------------ from the host (any thread, signal handlers)

    def request_stop(self, signum: int) -> None:
        """A signal asked the run to stop: log it, stop with a checkpoint, leave once it has stopped."""
        if self._loop is None:
            self._signalled = signum  # handled on mount
            self.controller.send(Stop(save=True))
            return
        self._loop.call_soon_threadsafe(self._on_signal, signum)

    def leave(self, code: int) -> None:
        """Exit the monitor at once (a repeated signal); the terminal is restored."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: self.exit(code, return_code=code))

    def _on_signal(self, signum: int) -> None:
        if self.outcome is not None:
            self.exit(128 + signum, return_code=128 + signum)
            return
        self._signalled = signum
        self._events_log.add(self.clock(), f"{signal.Signals(signum).name}: stopping and writing last.pt (send it "
                             f"again to leave at once)", "warning")
        self._quit_chosen(SAVE)

    def _exit_with_outcome(self) -> None:
        code = exit_code(self.outcome, self._signalled)
        self.exit(code, return_code=code)

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in keys.RUN_ACTIONS and action not in keys.VIEW_ACTIONS:
            return True
        if action == "interrupt":
            return True
        if len(self.screen_stack) > 1:
            return False  # a dialog is open: its keys only
        if action in keys.RUN_ACTIONS and (self.outcome is not None or self._stopping):
            return False  # the run is over (or stopping): the footer offers only what still works
        return True

    def _send(self, command: Command) -> None:
        """Every key that steers the run ends here: send the command, log what the user did (the command's own
        words, from its SPECS row)."""
        said = describe(command, self.model.state == ev.RunState.PAUSED if self.model.run is not None else None)
        self.model.ask(command)
        self.controller.send(command)
        self._events_log.add(self.clock(), f"you: {said}", "user")

    def action_toggle_pause(self) -> None:
        self._send(TogglePause())

    def action_checkpoint(self) -> None:
        self._send(CheckpointNow())

    def action_sample(self) -> None:
        self._send(Sample())

    def action_eval_interval(self, factor: float) -> None:
        current = self._snapshot().schedule.current
        if current is None:
            self.notify("The eval interval is not known until the run has started.", severity="warning")
            return
        self._send(SetEvalInterval(max(1, int(current * factor))))

    def action_set_eval_interval(self) -> None:
        def chosen(interval: int | None) -> None:
            if interval is not None:
                self._send(SetEvalInterval(interval))

        self.push_screen(IntervalDialog(self._snapshot().schedule.current), chosen)

    def action_toggle_log(self) -> None:
        self._log_y = not self._log_y
        self.redraw()

    def action_toggle_zoom(self) -> None:
        self._recent = not self._recent
        self.redraw()

    def action_cycle_x(self) -> None:
        self._x_axis = X_AXES[(X_AXES.index(self._x_axis) + 1) % len(X_AXES)]
        self.redraw()

    @guarded("health")
    def action_toggle_health(self) -> None:
        self._show_health = not self._show_health
        self._body.set_class(self._show_health, "-health")
        self._health_drawn = -1
        self.redraw()

    @guarded("target")
    def action_set_target(self) -> None:
        def chosen(target: float | None) -> None:
            if target is None:
                return
            self.model.set_target(None if target == CLEAR else target)
            now = self._snapshot().target.target
            self._events_log.add(self.clock(), f"you: {'no target' if now is None else f'target loss → {now:g}'}",
                                 "user")
            self.redraw()

        self.push_screen(TargetDialog(self._snapshot().target.target), chosen)

    @guarded("timeline")
    def action_older_sample(self) -> None:
        self._step_timeline(-1)

    @guarded("timeline")
    def action_newer_sample(self) -> None:
        self._step_timeline(+1)

    def _step_timeline(self, delta: int) -> None:
        self._timeline.update_samples(self._snapshot().timeline)
        if not self._timeline.samples:
            self.notify("No timeline samples: set sample_every_eval: true to get one at every eval.",
                        severity="warning")
            return
        shown = self._timeline.step(delta) if self._timeline_shown else True
        self._timeline_shown = shown
        self._body.set_class(shown, "-timeline")
        if shown and self.compact:
            self._select_pane("samples")

    def action_next_pane(self) -> None:
        """Compact layout: show the next pane. Wide layout (every pane on screen): move the keyboard focus
        between the scrollable panes (events, samples), so ↑/↓ PgUp/PgDn scroll the one focused."""
        if self.compact:
            names = self._pane_order
            self._select_pane(names[(names.index(self._pane) + 1) % len(names)])
            pane = self._panes[self._pane]
            if self._pane in SCROLLABLE:
                pane.focus()
            else:
                self.set_focus(None)
            return
        focused = self.focused.id if self.focused is not None else None
        target = SCROLLABLE[(SCROLLABLE.index(focused) + 1) % len(SCROLLABLE)] if focused in SCROLLABLE else SCROLLABLE[0]
        self._panes[target].focus()
        self.notify(f"{target} pane focused: ↑/↓ PgUp/PgDn Home/End scroll it (n: the other one)", timeout=3)

    def action_help(self) -> None:
        reasons = {**self._cpu.reasons_shown, **self._gpu.reasons_shown}
        self.push_screen(HelpScreen(self.HELP, reasons))

    def action_interrupt(self) -> None:
        self.action_quit_request()

    def action_quit_request(self) -> None:
        if self.outcome is not None:
            self._exit_with_outcome()
        elif self._stopping:
            self.exit(0, return_code=0)  # asked twice: the user does not want to wait for the trainer
        elif not isinstance(self.screen, QuitDialog):
            self.push_screen(QuitDialog(detach=self.watching), self._quit_chosen)

    def _quit_chosen(self, choice: str | None) -> None:
        if choice == DETACH:  # a watcher leaves; the run goes on in its own process
            self.exit(0, return_code=0)
            return
        if choice in (None, CANCEL):
            self._events_log.add(self.clock(), "you: quit cancelled, training goes on", "user")
            return
        save = choice == SAVE
        self._stopping = True
        self._send(Stop(save=save))
        self._status.note = "saving checkpoint… (q again quits at once)" if save else "stopping… (q again quits at once)"
        self.refresh_bindings()
        if self.outcome is not None:  # the run ended while the dialog was open
            self._exit_with_outcome()
        else:
            self.run_worker(self._wait_for_end, thread=True, exclusive=True, group="wait", exit_on_error=False)

    def _wait_for_end(self) -> None:
        """Worker thread: a safety net in case the final event never arrives."""
        worker = get_current_worker()
        while not worker.is_cancelled:  # short waits, so quitting never hangs on this thread
            if self.controller.wait(0.5):
                self.post_message(RunEnded())
                return
