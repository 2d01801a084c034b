"""The Textual front end: watch and steer one run through a RunController.

Threads: the controller calls our subscriber on the trainer thread. The
subscriber only appends to the bounded :class:`RunHistory` (so the loss curve
keeps every iteration) and calls ``post_message``; everything that touches a
widget happens on the app's thread, in the message handlers and in a redraw
timer that runs at most 4 times a second and only when something changed.

Usage::

    app = TuiGptApp(controller, config_path="configs/x.py")
    app.run()
    sys.exit(app.return_code or 0)   # 0 after DONE/STOPPED, 1 after RunFailed
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Tab, Tabs
from textual.worker import get_current_worker

from tuigpt.control import RunController
from tuigpt.events import (
    CheckpointNow,
    CheckpointWritten,
    Command,
    EvalIntervalChanged,
    EvalResult,
    Event,
    HistoryLoaded,
    IterationStats,
    Notice,
    RunFailed,
    RunFinished,
    RunStarted,
    RunState,
    Sample,
    SampleGenerated,
    SetEvalInterval,
    StateChanged,
    Stop,
    TogglePause,
)
from tuigpt.ui.history import X_AXES, CompareCurve, RunHistory, eta_seconds, load_compare
from tuigpt.ui.messages import ClusterUpdate, IterationUpdate, RunEnded, RunEvent, TelemetryUpdate, wrap
from tuigpt.ui.widgets.cluster import ClusterPane
from tuigpt.ui.widgets.cpu import CpuPane
from tuigpt.ui.widgets.events_log import EventsLog
from tuigpt.ui.widgets.failure import FailureBanner
from tuigpt.ui.widgets.fmt import clock_time, duration
from tuigpt.ui.widgets.gpu import GpuPane
from tuigpt.ui.widgets.help_screen import HelpScreen
from tuigpt.ui.widgets.interval_input import IntervalDialog
from tuigpt.ui.widgets.loss import LossChart
from tuigpt.ui.widgets.mfu import MfuPane
from tuigpt.ui.widgets.quit_dialog import CANCEL, DETACH, SAVE, QuitDialog
from tuigpt.ui.widgets.samples import SamplesPane
from tuigpt.ui.widgets.speed import SpeedPane
from tuigpt.ui.widgets.status import StatusBar

# The monitor shares the CPU (and the GIL) with training: on a 2-core laptop every millisecond of
# drawing is a millisecond the trainer waits. The status line ticks twice a second; charts and
# panes redraw once a second, and only when something changed.
REDRAW_SECONDS = 0.5
CHART_SECONDS = 1.0  # at most this often for the loss chart and the panes
COMPARE_RELOAD_SECONDS = 10.0  # a --compare run that is still training is re-read this often when it grew
RECENT_WINDOW = 500  # iterations shown when zoomed in
TERMINAL = (RunState.DONE, RunState.STOPPED, RunState.ERROR)
BUSY_STATES = (RunState.EVALUATING, RunState.CHECKPOINTING, RunState.SAMPLING)
# In a small terminal these panes share one slot below the chart, picked with tabs.
PANES = [("events", "Events"), ("samples", "Sample"), ("speed", "Speed"), ("mfu", "MFU"), ("cpu", "CPU"), ("gpu", "GPU")]
RIGHT_PANES = {"speed", "mfu", "cpu", "gpu", "cluster"}
CLUSTER_PANE = ("cluster", "Cluster")  # joins the panes when a multi-rank run reports its first timings
# actions that steer the run: off while a dialog is open, disabled once the run is over
RUN_ACTIONS = {"toggle_pause", "checkpoint", "sample", "eval_interval", "set_eval_interval"}
VIEW_ACTIONS = {"toggle_log", "toggle_zoom", "cycle_x", "next_pane", "help", "quit_request", "interrupt"}


class TuiGptApp(App[int]):
    """Live view of one training run.

    ``run()`` returns the exit code, also left in ``return_code``: 0 after the run
    finished or was stopped, 1 after it failed.
    """

    CSS_PATH = "app.tcss"
    TITLE = "tuigpt"
    ENABLE_COMMAND_PALETTE = False
    # compact layout (one secondary pane at a time) below 100 columns or 32 rows
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    _EVAL = Binding.Group("Eval")  # footer text kept short: 80 columns must show every key
    _VIEW = Binding.Group("Log/zoom")
    BINDINGS = [
        Binding("p", "toggle_pause", "Pause"),
        Binding("c", "checkpoint", "Ckpt", tooltip="write a checkpoint now"),
        Binding("s", "sample", "Sample"),
        Binding("e", "eval_interval(0.5)", "Eval ½", group=_EVAL),
        Binding("E", "eval_interval(2)", "Eval ×2", key_display="E", group=_EVAL),
        Binding("i", "set_eval_interval", "Eval every…", group=_EVAL),
        Binding("l", "toggle_log", "Log y", group=_VIEW),
        Binding("z", "toggle_zoom", "Zoom", group=_VIEW),
        Binding("x", "cycle_x", "X axis", show=False),  # in the help: the footer has no room at 80 columns
        Binding("n", "next_pane", "Pane"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit_request", "Quit"),
        # ctrl+c works everywhere, dialogs included (a terminal habit); q only on the main screen
        Binding("ctrl+c,ctrl+q", "interrupt", "Quit", show=False, priority=True),
    ]
    HELP = [
        ("p", "pause / resume training (at the next iteration boundary)"),
        ("c", "write a checkpoint now (its path shows in the events log)"),
        ("s", "generate a sample now (config's prompt and length)"),
        ("e / E", "halve / double the eval interval"),
        ("i", "type an exact eval interval"),
        ("l", "loss chart: toggle log y axis"),
        ("z", f"loss chart: whole run / last {RECENT_WINDOW} iterations"),
        ("x", "loss chart x axis: iterations → tokens seen → wall-clock time"),
        ("n", "next pane (small terminals show one pane at a time)"),
        ("?", "this help"),
        ("q, ctrl+c", "stop the run (save or not) and quit; quits at once when the run is over"),
    ]

    def __init__(self, controller: RunController, *, config_path: str | None = None, clock: Callable[[], float] = time.time,
                 watching: bool = False, compare: object | None = None) -> None:
        """``watching``: the run lives in another process (q offers to detach); ``compare``: a run directory
        (or a CompareCurve) whose loss curves are overlaid on the chart."""
        super().__init__()
        self.watching = watching
        if watching:
            self.title = "tuigpt watch"
        self._compare_source = compare
        self._compare_stamp: tuple[int, int] | None = None  # size and mtime of its metrics.jsonl when read
        self._compare: CompareCurve | None = compare if isinstance(compare, CompareCurve) else None
        self._x_axis = X_AXES[0]
        self.controller = controller
        self.config_path = config_path
        self.clock = clock  # injectable so elapsed/ETA are deterministic in tests
        self.history = RunHistory()
        self._unsubscribe: Callable[[], None] | None = None
        self._run: RunStarted | None = None
        self._state = RunState.STARTING
        self._last: IterationStats | None = None
        self._eval_interval: int | None = None
        self._requested_interval: int | None = None  # asked for, not yet confirmed by the trainer
        self._next_eval_iter: int | None = None
        self._outcome: RunFinished | RunFailed | None = None
        self._stopping = False  # Stop sent from the quit dialog: exit when the run ends
        self._signalled: int | None = None  # the signal that asked this app to stop, if any
        self._chart_drawn_at = float("-inf")
        self._log_y = False
        self._recent = False
        self._drawn_version = -1
        self._drawn_view_opts: tuple[object, ...] | None = None
        self._pane = PANES[0][0]
        self._pane_order = [name for name, _ in PANES]
        self._ms_recent: float | None = None  # from the last history snapshot, for the ETA
        self._mean_eval_seconds: float | None = None
        self._was_compact: bool | None = None
        self._logged_state = RunState.RUNNING  # "started" already says it runs

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Widgets are kept as attributes, not queried: an event that arrives while the
        # screen is being built or torn down then updates a detached widget, harmlessly.
        self._status = StatusBar(self.config_path, id="status")
        self._failure = FailureBanner(id="failure")
        self._loss = LossChart(id="loss")
        self._tabs = Tabs(*(Tab(title, id=f"tab-{pane}") for pane, title in PANES), id="pane-tabs")
        self._events_log = EventsLog(id="events", classes="pane")
        self._samples = SamplesPane(id="samples", classes="pane")
        self._speed = SpeedPane(id="speed", classes="pane")
        self._mfu = MfuPane(id="mfu", classes="pane")
        self._cpu = CpuPane(id="cpu", classes="pane")
        self._gpu = GpuPane(id="gpu", classes="pane")
        self._cluster = ClusterPane(id="cluster", classes="pane")
        self._panes = {"events": self._events_log, "samples": self._samples, "speed": self._speed, "mfu": self._mfu, "cpu": self._cpu, "gpu": self._gpu,
                       "cluster": self._cluster}
        yield self._status
        yield self._failure
        with Horizontal(id="body") as self._body:
            with Vertical(id="left"):
                yield self._loss
                yield self._tabs
                yield self._events_log
                yield self._samples
            with Vertical(id="right"):
                yield self._speed
                yield self._mfu
                yield self._cpu
                yield self._cluster
                yield self._gpu
        yield Footer()

    def on_mount(self) -> None:
        self._select_pane(self._pane)
        self.set_interval(REDRAW_SECONDS, self._tick)
        if self._compare_source is not None and self._compare is None:
            self.run_worker(self._load_compare, thread=True, group="compare", exit_on_error=False)
        if self._compare_source is not None:
            self.set_interval(COMPARE_RELOAD_SECONDS, self._reload_compare_if_grown)
        self.call_after_refresh(self._start_run)  # first paint before the first event
        self._install_signal_handlers()

    def _install_signal_handlers(self) -> None:
        """SIGTERM (a scheduler) and an outside SIGINT stop the run with a checkpoint and leave; a second
        signal leaves at once (checkpoints are atomic). SIGHUP, when the terminal itself is gone, is the
        CLI's: nothing can be drawn any more."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests), or no signals
                return

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._signalled is not None or self._outcome is not None:
            self.exit(128 + signum, return_code=128 + signum)
            return
        self._signalled = signum
        self._events_log.add(self.clock(), f"{name}: stopping and writing last.pt (send it again to leave at once)",
                             "warning")
        self._quit_chosen(SAVE)

    def _start_run(self) -> None:
        self._unsubscribe = self.controller.subscribe(self._receive)
        self.controller.start()

    def _compare_file_stamp(self) -> tuple[int, int] | None:
        from pathlib import Path

        from tuigpt.metrics_log import METRICS_FILE

        try:
            st = (Path(self._compare_source) / METRICS_FILE).stat()
        except (OSError, TypeError):
            return None
        return st.st_size, st.st_mtime_ns

    def _reload_compare_if_grown(self) -> None:
        """A compared run that is still training keeps growing: re-read it when its file changed."""
        if self._compare is not None and self._compare_file_stamp() != self._compare_stamp:
            self.run_worker(self._load_compare, thread=True, group="compare", exclusive=True, exit_on_error=False)

    def _load_compare(self) -> None:
        """Worker thread: read the compared run's history (a big file takes a second)."""
        stamp = self._compare_file_stamp()
        try:
            curve = load_compare(self._compare_source)
        except Exception as exc:  # a bad --compare directory must not take the monitor down
            self.call_from_thread(self._events_log.add, self.clock(), f"compare: cannot read {self._compare_source}: {exc}", "warning")
            return
        self._compare_stamp = stamp
        self.call_from_thread(self._set_compare, curve)

    def _set_compare(self, curve: CompareCurve) -> None:
        first = self._compare is None
        self._compare = curve
        if not first:
            self.redraw()
            return
        self._events_log.add(self.clock(), f"comparing with {curve.name}: {len(curve.points):,} points, {len(curve.evals):,} evals (x cycles the x axis)")
        self.redraw()

    @property
    def compare(self) -> CompareCurve | None:
        """The run overlaid on the loss chart, once loaded."""
        return self._compare

    @property
    def x_axis(self) -> str:
        return self._x_axis

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    def on_resize(self) -> None:
        compact = self.compact
        if compact != self._was_compact:  # "next pane" only shows in the compact layout
            self._was_compact = compact
            self.refresh_bindings()

    @property
    def state(self) -> RunState:
        """The run's state as last reported."""
        return self._state

    @property
    def outcome(self) -> RunFinished | RunFailed | None:
        """How the run ended; None while it runs."""
        return self._outcome

    @property
    def compact(self) -> bool:
        screen = self.screen
        return screen.has_class("-narrow") or screen.has_class("-short")

    def _select_pane(self, pane: str) -> None:
        self._pane = pane
        for name, widget in self._panes.items():
            widget.set_class(name == pane, "-selected")
        self._body.set_class(pane in RIGHT_PANES, "-right-selected")
        tabs = self._tabs
        if tabs.active != f"tab-{pane}":
            tabs.active = f"tab-{pane}"

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab.id and event.tab.id.removeprefix("tab-") != self._pane:
            self._select_pane(event.tab.id.removeprefix("tab-"))

    # ------------------------------------------------------------ events in

    def _receive(self, event: Event) -> None:
        """Runs on the publishing (trainer) thread: append and post, nothing else.

        (Not named _on_*: Textual would take that for a handler of RunEvent messages.)
        """
        self.history.record(event)
        if isinstance(event, IterationStats):
            return  # the redraw tick reads the history: no message per iteration
        self.post_message(wrap(event))

    def on_iteration_update(self, message: IterationUpdate) -> None:
        self._last = message.event  # drawn by the next redraw tick

    def on_telemetry_update(self, message: TelemetryUpdate) -> None:
        snapshot = message.event
        if snapshot.kind == "cpu":
            self._cpu.show(snapshot.data)
        elif snapshot.kind == "gpu":
            self._gpu.show(snapshot.data)

    def on_cluster_update(self, message: ClusterUpdate) -> None:
        if CLUSTER_PANE[0] not in self._pane_order:  # first timings of a multi-rank run: the pane appears
            self._pane_order.append(CLUSTER_PANE[0])
            self._tabs.add_tab(Tab(CLUSTER_PANE[1], id=f"tab-{CLUSTER_PANE[0]}"))
            self._body.add_class("-cluster")
        self._cluster.show(message.event)

    def on_run_event(self, message: RunEvent) -> None:
        event = message.event
        log, status = self._events_log, self._status
        if isinstance(event, RunStarted):
            self._run = event
            self._drawn_version = -1  # the MFU pane needs the peak it is measured against
            self._eval_interval = event.eval_interval
            status.set_run(event)
            self._draw_progress()  # iteration i/N from the first moment, not the next tick
            what = f"resumed {event.run_name} at iter {event.start_iter:,}" if event.resumed else f"started {event.run_name}"
            log.add(event.time, f"{what}: {event.max_iters:,} iters, eval every {event.eval_interval:,}, run dir {event.run_dir}")
        elif isinstance(event, StateChanged):
            self._set_state(event.state, event.time)
        elif isinstance(event, EvalResult):
            line = Text(f"eval @{event.iter:,}: train {event.train_loss:.4f} · val {event.val_loss:.4f}")
            if event.is_best:
                line.append("  ★ best", style="bold green")
            line.append(f"  ({event.seconds:.1f} s)", style="dim")
            log.add(event.time, line)
        elif isinstance(event, CheckpointWritten):
            line = Text(f"checkpoint @{event.iter:,} ({event.reason}) → ", style="green")
            line.append(event.path, style="bold")
            line.append(f"  ({event.seconds:.1f} s)", style="dim")
            log.add(event.time, line)
        elif isinstance(event, SampleGenerated):
            self._samples.show(event)
            log.add(event.time, f"sample @{event.iter:,} ({event.seconds:.1f} s), see the sample pane")
        elif isinstance(event, EvalIntervalChanged):
            self._eval_interval = event.eval_interval
            self._next_eval_iter = event.next_eval_iter
            self._requested_interval = None
            status.set_eval_interval(event.eval_interval, event.next_eval_iter)
            log.add(event.time, f"eval interval now {event.eval_interval:,} (next eval at {event.next_eval_iter:,})")
        elif isinstance(event, Notice):
            log.add(event.time, f"{event.level}: {event.message}" if event.level != "info" else event.message, event.level)
        elif isinstance(event, HistoryLoaded):
            n_iters = sum(1 for r in event.records if r.get("type") == "iter")
            log.add(event.time, f"loaded earlier history: {n_iters:,} iterations, {len(event.records) - n_iters:,} other records", "dim")
        elif isinstance(event, RunFailed):
            self._outcome = event
            self._set_state(RunState.ERROR, event.time)
            self._failure.show_failure(event)
            log.add(event.time, f"RUN FAILED at iter {event.iter:,}: {event.message}", "error")
            for line in event.traceback.rstrip().splitlines()[-12:]:
                log.add(event.time, line, "error")
            log.add(event.time, f"last checkpoint: {event.last_checkpoint or 'none'}", "error")
            self._run_over()
        elif isinstance(event, RunFinished):
            self._outcome = event
            self._set_state(RunState.DONE if event.reason == "done" else RunState.STOPPED, event.time)
            self._log_summary(event)
            self._run_over()

    def on_run_ended(self, _: RunEnded) -> None:
        if self._stopping:
            self._exit_with_outcome()

    def _set_state(self, state: RunState, when: float) -> None:
        self._state = state
        if self._stopping and state not in TERMINAL:
            self._status.set_state(state)  # keep the "saving…" note
        else:
            self._status.set_state(state, note="" if state in TERMINAL else None)
        # EVALUATING / CHECKPOINTING / SAMPLING come and go at every eval: the header shows
        # them; the log only gets the settled state when it changes (RUNNING <-> PAUSED)
        if state not in BUSY_STATES and state not in TERMINAL and state != self._logged_state:
            self._logged_state = state
            self._events_log.add(when, f"state → {state.value}", "warning" if state == RunState.PAUSED else "info")

    def _log_summary(self, done: RunFinished) -> None:
        log = self._events_log
        head = "run finished" if done.reason == "done" else "run stopped"
        line = Text(f"{head} at iter {done.iter:,}: ", style="bold green")
        if done.best_val_loss is not None:
            line.append(f"best val {done.best_val_loss:.4f}, ")
        if done.last_val_loss is not None:
            line.append(f"last val {done.last_val_loss:.4f}, ")
        line.append(f"{done.tokens_seen:,} tokens")
        log.add(done.time, line)
        log.add(
            done.time,
            f"time: {duration(done.wall_seconds)} wall = {duration(done.train_seconds)} train + "
            f"{duration(done.eval_seconds)} eval + {duration(done.checkpoint_seconds)} checkpoints",
        )
        log.add(done.time, f"last checkpoint: {done.last_checkpoint or 'none'}   (q quits)", "good" if done.last_checkpoint else "warning")

    def _run_over(self) -> None:
        self.refresh_bindings()
        self.redraw()
        if self._stopping:
            self._exit_with_outcome()

    def _exit_with_outcome(self) -> None:
        code = 1 if isinstance(self._outcome, RunFailed) else 0
        if self._signalled is not None and code == 0:
            code = 128 + self._signalled  # stopped by a signal: the documented 128+N
        self.exit(code, return_code=code)

    # ------------------------------------------------------------ drawing

    def _tick(self) -> None:
        """Timer: the status line every tick, the charts and panes at most every CHART_SECONDS."""
        if time.monotonic() - self._chart_drawn_at >= CHART_SECONDS:
            self.redraw()
        else:
            if self.history.last is not None:
                self._last = self.history.last
            self._draw_progress()

    def redraw(self) -> None:
        """Timer tick: charts only when the history or the view changed; the clock line always."""
        view_opts = (self._log_y, self._recent, self._x_axis, id(self._compare))
        if self.history.version != self._drawn_version or view_opts != self._drawn_view_opts:
            self._chart_drawn_at = time.monotonic()
            view = self.history.snapshot(RECENT_WINDOW)
            self._drawn_version, self._drawn_view_opts = view.version, view_opts
            self._loss.draw(view, log_y=self._log_y, recent=self._recent, x_axis=self._x_axis, compare=self._compare)
            self._speed.show(view)
            if self._run is not None:
                self._mfu.show(view, self._run.peak_flops, self._run.peak_label)
            self._mean_eval_seconds = view.mean_eval_seconds
            self._ms_recent = view.ms_per_iter_recent
        if self.history.last is not None:
            self._last = self.history.last
        self._draw_progress()

    def _draw_progress(self) -> None:
        run, outcome = self._run, self._outcome
        status = self._status
        if run is None:
            status.set_progress(None, None, "")
            return
        iteration = outcome.iter if outcome is not None else (self._last.iter if self._last is not None else run.start_iter)
        now = outcome.time if outcome is not None else self.clock()
        parts = [f"elapsed {duration(now - run.time)}"]
        if outcome is None:
            eta = eta_seconds(
                iteration, run.max_iters, self._ms_recent, self._eval_interval or run.eval_interval,
                self._mean_eval_seconds, self._next_eval_iter,
            )
            parts.append(f"ETA {duration(eta)}")
            if eta is not None and self._state != RunState.PAUSED:
                parts.append(f"→ {clock_time(now + eta, now)}")
            elif self._state == RunState.PAUSED:
                parts.append("(paused)")
        status.set_progress(iteration, run.max_iters, "  ".join(parts))

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in RUN_ACTIONS and action not in VIEW_ACTIONS:
            return True
        if action == "interrupt":
            return True
        if len(self.screen_stack) > 1:
            return False  # a dialog is open: its keys only
        if action == "next_pane":
            return self.compact
        if action in RUN_ACTIONS and (self._outcome is not None or self._stopping):
            return None  # shown greyed out: the run is over
        return True

    def _send(self, command: Command, note: str) -> None:
        """Every key that steers the run ends here: send the command, log what the user did."""
        self.controller.send(command)
        self._events_log.add(self.clock(), f"you: {note}", "user")

    def action_toggle_pause(self) -> None:
        self._send(TogglePause(), "resume" if self._state == RunState.PAUSED else "pause")

    def action_checkpoint(self) -> None:
        self._send(CheckpointNow(), "checkpoint now")

    def action_sample(self) -> None:
        self._send(Sample(), "sample now")

    def action_eval_interval(self, factor: float) -> None:
        current = self._requested_interval or self._eval_interval
        if current is None:
            self.notify("The eval interval is not known until the run has started.", severity="warning")
            return
        self._request_interval(max(1, int(current * factor)))

    def action_set_eval_interval(self) -> None:
        def chosen(interval: int | None) -> None:
            if interval is not None:
                self._request_interval(interval)

        self.push_screen(IntervalDialog(self._requested_interval or self._eval_interval), chosen)

    def _request_interval(self, interval: int) -> None:
        self._requested_interval = interval
        self._send(SetEvalInterval(interval), f"eval interval → {interval:,}")

    def action_toggle_log(self) -> None:
        self._log_y = not self._log_y
        self.redraw()

    def action_toggle_zoom(self) -> None:
        self._recent = not self._recent
        self.redraw()

    def action_cycle_x(self) -> None:
        self._x_axis = X_AXES[(X_AXES.index(self._x_axis) + 1) % len(X_AXES)]
        self.redraw()

    def action_next_pane(self) -> None:
        names = self._pane_order
        self._select_pane(names[(names.index(self._pane) + 1) % len(names)])

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.HELP))

    def action_interrupt(self) -> None:
        self.action_quit_request()

    def action_quit_request(self) -> None:
        if self._outcome is not None:
            self._exit_with_outcome()
        elif self._stopping:
            # asked twice: the user does not want to wait for the trainer
            self.exit(0, return_code=0)
        elif isinstance(self.screen, QuitDialog):
            return
        else:
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
        self._send(Stop(save=save), "stop and save a checkpoint" if save else "stop without saving")
        self._status.set_note("saving checkpoint… (q again quits at once)" if save else "stopping… (q again quits at once)")
        self.refresh_bindings()
        if self._outcome is not None:  # the run ended while the dialog was open
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


def run_app(controller: RunController, *, config_path: str | None = None) -> int:
    """Run the app in this terminal until the user quits; returns the process exit code."""
    app = TuiGptApp(controller, config_path=config_path)
    return app.run() or 0
