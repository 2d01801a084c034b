"""The Textual front end: watch and steer one run through a RunController.

Threads: the controller calls our subscriber on the trainer thread. The subscriber only appends to the
bounded :class:`RunHistory` (so the loss curve keeps every iteration) and posts messages for the rare
events; everything that touches a widget happens on the app's thread, in the message handlers and in a
redraw timer (the status line twice a second, charts and panes at most once a second, only when changed).

Usage::

    app = TuiGptApp(controller, config_path="configs/x.yaml")
    app.run()   # app.return_code: run.exits.exit_code of how the run ended
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Tab, Tabs

from tuigpt.run import events as ev
from tuigpt.run import fmt
from tuigpt.run.controller import RunController
from tuigpt.ui import keys
from tuigpt.ui.actions import MonitorActions
from tuigpt.ui.alerts import MonitorAlerts
from tuigpt.ui.compare import CompareCurve, CompareSource
from tuigpt.ui.guard import FailureIsolation, guarded
from tuigpt.ui.health_actions import MonitorHealth
from tuigpt.ui.health_history import HealthHistory
from tuigpt.ui.history import X_AXES, RunHistory
from tuigpt.ui.log_lines import lines_for
from tuigpt.ui.messages import ClusterUpdate, RunEnded, RunEvent, TelemetryUpdate, wrap
from tuigpt.ui.widgets.cluster import ClusterPane
from tuigpt.ui.widgets.cpu import CpuPane
from tuigpt.ui.widgets.events_log import EventsLog
from tuigpt.ui.widgets.failure import FailureBanner
from tuigpt.ui.widgets.gpu import GpuPane
from tuigpt.ui.widgets.health import HealthPane
from tuigpt.ui.widgets.loss import LossChart
from tuigpt.ui.widgets.mfu import MfuPane
from tuigpt.ui.widgets.quit_dialog import SAVE
from tuigpt.ui.widgets.samples import SamplesPane
from tuigpt.ui.widgets.speed import SpeedPane
from tuigpt.ui.widgets.status import StatusBar
from tuigpt.ui.widgets.timeline import SampleTimeline

# The monitor shares the CPU (and the GIL) with training: on a 2-core laptop every millisecond of drawing is a
# millisecond the trainer waits.
REDRAW_SECONDS = 0.5
CHART_SECONDS = 1.0  # at most this often for the loss chart and the panes
COMPARE_RELOAD_SECONDS = 10.0  # a --compare run that is still training is re-read this often when it grew
TERMINAL = (ev.RunState.DONE, ev.RunState.STOPPED, ev.RunState.ERROR)
BUSY_STATES = (ev.RunState.EVALUATING, ev.RunState.CHECKPOINTING, ev.RunState.SAMPLING)
# In a small terminal these panes share one slot below the chart, picked with tabs (or n).
PANES = [("events", "Events"), ("samples", "Sample"), ("speed", "Speed"), ("mfu", "MFU"), ("cpu", "CPU"), ("gpu", "GPU")]
RIGHT_PANES = {"speed", "mfu", "cpu", "gpu", "cluster", "samples"}
CLUSTER_PANE = ("cluster", "Cluster")  # joins the panes when a multi-rank run reports its first timings


class TuiGptApp(FailureIsolation, MonitorActions, MonitorHealth, App[int]):
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

    def __init__(self, controller: RunController, *, config_path: str | None = None,
                 clock: Callable[[], float] = time.time, watching: bool = False, compare: object | None = None) -> None:
        """``watching``: the run lives in another process (q offers to detach); ``compare``: a run directory (or
        a CompareCurve) whose loss curves are overlaid on the chart."""
        super().__init__()
        self.watching = watching
        if watching:
            self.title = "tuigpt watch"
        self._compare_source = CompareSource(compare) if compare is not None else None
        self._compare: CompareCurve | None = self._compare_source.curve if self._compare_source else None
        self._x_axis = X_AXES[0]
        self.controller = controller
        self.config_path = config_path
        self.clock = clock  # injectable so elapsed/ETA are deterministic in tests
        self.history = RunHistory()
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run: ev.RunStarted | None = None
        self._state = ev.RunState.STARTING
        self._eval_interval: int | None = None
        self._requested_interval: int | None = None  # asked for, not yet confirmed by the trainer
        self._outcome: ev.RunFinished | ev.RunFailed | None = None
        self._stopping = False  # Stop sent from the quit dialog: exit when the run ends
        self._signalled: int | None = None  # the signal that asked this app to stop, if any
        self._chart_drawn_at = float("-inf")
        self._log_y = False
        self._recent = False
        self._drawn_version = -1
        self._drawn_view_opts: tuple[object, ...] | None = None
        self._pane = PANES[0][0]
        self._pane_order = [name for name, _ in PANES]
        self._was_compact: bool | None = None
        self._logged_state = ev.RunState.RUNNING  # "started" already says it runs
        self._eval_progress: ev.EvalProgress | None = None  # the eval under way, until its result
        self._evals_done = 0
        self.alerts = MonitorAlerts(self)
        self.health = HealthHistory()  # the Health pane, the target projection, the sample timeline

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
            with Vertical(id="right"):
                yield self._speed
                yield self._mfu
                yield self._cpu
                yield self._cluster
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
        return self._state

    @property
    def outcome(self) -> ev.RunFinished | ev.RunFailed | None:
        """How the run ended; None while it runs."""
        return self._outcome

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
        """Runs on the publishing (trainer) thread: append and post, nothing else. Not guarded here (no widget
        may be touched from this thread): the EventBus catches what raises and the trainer goes on.

        (Not named _on_*: Textual would take that for a handler of RunEvent messages.)
        """
        self.history.record(event)
        self.health.record(event)
        if not isinstance(event, ev.IterationStats):  # iterations: the redraw tick reads the history
            self.post_message(wrap(event))

    @guarded("telemetry")
    def on_telemetry_update(self, message: TelemetryUpdate) -> None:
        snapshot = message.event
        if snapshot.kind == "cpu":
            self._cpu.show(snapshot.data)
        elif snapshot.kind == "gpu":
            self._gpu.show(snapshot.data)

    @guarded("cluster")
    def on_cluster_update(self, message: ClusterUpdate) -> None:
        if CLUSTER_PANE[0] not in self._pane_order:  # first timings of a multi-rank run: the pane appears
            self._pane_order.append(CLUSTER_PANE[0])
            self._tabs.add_tab(Tab(CLUSTER_PANE[1], id=f"tab-{CLUSTER_PANE[0]}"))
            self._body.add_class("-cluster")
        if self._speed.ranks != len(message.event.ranks):
            self._speed.ranks = len(message.event.ranks)
            self._drawn_version = -1  # its note says whose steps it times: drawn again at the next tick
        self._cluster.steps = int(self._run.config.get("log_interval", 0)) if self._run is not None else 0
        self._cluster.show(message.event)

    @guarded("events")
    def on_run_event(self, message: RunEvent) -> None:
        event = message.event
        for line, level in lines_for(event):
            self._events_log.add(event.time, line, level)
        self.alerts.observe(event)
        if isinstance(event, ev.EvalProgress):
            self._eval_progress = event
            self._draw_progress()
        elif isinstance(event, ev.EvalResult):
            self._eval_progress = None
            self._evals_done += 1
        if isinstance(event, ev.RunStarted):
            self._run = event
            self._drawn_version = -1  # the MFU pane needs the peak it is measured against
            self._eval_interval = event.eval_interval
            self._status.set_run(event)
            self._draw_progress()  # iteration i/N from the first moment, not the next tick
        elif isinstance(event, ev.StateChanged):
            self._set_state(event.state, event.time)
        elif isinstance(event, ev.SampleGenerated):
            self._samples.show(event)
        elif isinstance(event, ev.HistoryLoaded):
            for past in event.events:
                if isinstance(past, ev.SampleGenerated):
                    self._samples.show(past)
        elif isinstance(event, ev.EvalIntervalChanged):
            self._eval_interval = event.eval_interval
            self._requested_interval = None
            self._status.set_eval_interval(event.eval_interval, event.next_eval_iter)
        elif isinstance(event, (ev.RunFailed, ev.RunFinished)):
            self._outcome = event
            if isinstance(event, ev.RunFailed):
                self._failure.show_failure(event)
            state = {"done": ev.RunState.DONE, "stopped": ev.RunState.STOPPED}.get(getattr(event, "reason", ""),
                                                                            ev.RunState.ERROR)
            self._set_state(state, event.time)
            self._run_over()

    def on_run_ended(self, _: RunEnded) -> None:
        if self._stopping:
            self._exit_with_outcome()

    def _set_state(self, state: ev.RunState, when: float) -> None:
        self._state = state
        if self._stopping and state not in TERMINAL:
            self._status.set_state(state)  # keep the "saving…" note
        else:
            self._status.set_state(state, note="" if state in TERMINAL else None)
        # EVALUATING / CHECKPOINTING / SAMPLING come and go at every eval: the header shows them; the log only
        # gets the settled state when it changes (RUNNING <-> PAUSED)
        if state not in BUSY_STATES and state not in TERMINAL and state != self._logged_state:
            self._logged_state = state
            self._events_log.add(when, f"state → {state.value}", "warning" if state == ev.RunState.PAUSED else "info")

    def _run_over(self) -> None:
        self.refresh_bindings()
        self.redraw()
        if self._stopping:
            self._exit_with_outcome()

    # ------------------------------------------------------------ drawing

    @guarded("status")
    def _tick(self) -> None:
        """Timer: the status line every tick, the charts and panes at most every CHART_SECONDS."""
        if time.monotonic() - self._chart_drawn_at >= CHART_SECONDS:
            self.redraw()
        else:
            self._draw_progress()

    @guarded("monitor")
    def redraw(self) -> None:
        """Charts only when the history or the view changed; the clock line always."""
        view_opts = (self._log_y, self._recent, self._x_axis, id(self._compare), self.health.target)
        if self.history.version != self._drawn_version or view_opts != self._drawn_view_opts:
            self._chart_drawn_at = time.monotonic()
            view = self.history.snapshot(keys.RECENT_WINDOW)
            self._drawn_version, self._drawn_view_opts = view.version, view_opts
            self._loss.draw(view, log_y=self._log_y, recent=self._recent, x_axis=self._x_axis, compare=self._compare,
                            extra=self._projection_layers(view),
                            cooldown_from=self._run.cooldown_from if self._run is not None else None)
            self._label_projection()
            self._speed.show(view)
            if self._run is not None:
                self._mfu.show(view, self._run.peak_flops, self._run.peak_label)
        self._draw_health()
        self._draw_progress()

    def _draw_progress(self) -> None:
        run, outcome = self._run, self._outcome
        if run is None:
            self._status.set_progress(None, None, [])
            return
        last = self.history.last
        iteration = outcome.iter if outcome is not None else (last.iter if last is not None else run.start_iter)
        now = outcome.time if outcome is not None else self.clock()
        parts = [(6, f"elapsed {fmt.duration(now - run.time)}", "")]
        evaluating = self._eval_progress if self._state == ev.RunState.EVALUATING and outcome is None else None
        if evaluating is not None:
            first = " the untrained model" if self._evals_done == 0 and not run.resumed else ""
            parts.insert(0, (10, f"evaluating{first}: {evaluating.done}/{evaluating.total} batches, "
                             f"{fmt.duration(evaluating.seconds)}", "bold"))
        if last is None and outcome is None:  # nothing trained yet: what the empty chart is waiting for
            self._loss.set_waiting(parts[0][1] + "…" if evaluating is not None else
                                   "waiting for the first iteration…")
        if outcome is None:
            eta = self.history.eta_seconds()
            parts.append((8, f"ETA {fmt.duration(eta)}" if eta is not None else "ETA n/a: no step yet", ""))
            if self._state == ev.RunState.PAUSED:
                parts.append((9, "(paused)", "bold"))
            elif eta is not None:
                parts.append((4, f"→ {fmt.clock(now + eta, now)}", ""))
        target = self.health.target_text(now if outcome is None else None)
        if target:
            parts.append((7, target, ""))  # asked for (target_loss, T): kept before the elapsed time
        self._status.set_progress(iteration, run.max_iters, parts)
