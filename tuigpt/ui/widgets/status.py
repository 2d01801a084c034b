"""The header: run, model, device, colour-coded state, progress, elapsed, ETA, and an eval under way.

Drawn from the run model's snapshot (``snapshot``, reactive) and the app's ``note`` (a quit under way). Every
line is fitted to the width it has (80 columns included): the least useful parts are shortened or left out
first (the dtype's reason, the clock time of the ETA, the config's folders), never the eval interval.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import ProgressBar, Static

from tuigpt.run import fmt, plan
from tuigpt.run.events import RunState
from tuigpt.run.model import RunSnapshot

# Named ANSI colours with a contrasting foreground: readable on 16-colour
# terminals, and the state is spelled out too, so colour is never the only cue.
STATE_STYLES: dict[RunState, str] = {
    RunState.STARTING: "bold black on white",
    RunState.RUNNING: "bold black on green",
    RunState.PAUSED: "bold black on yellow",
    RunState.EVALUATING: "bold black on cyan",
    RunState.CHECKPOINTING: "bold white on magenta",
    RunState.SAMPLING: "bold white on blue",
    RunState.DONE: "bold black on bright_green",
    RunState.STOPPED: "bold black on bright_yellow",
    RunState.ERROR: "bold bright_white on red",
}

Part = tuple[int, str, str]  # (keep priority: higher stays longer, text, style)


def fit(parts: Sequence[Part], width: int, sep: str = " · ") -> Text:
    """The parts in order, joined by ``sep`` (a part in parentheses by a space: it qualifies the one before),
    leaving out the lowest-priority ones until the line fits."""
    def joined(kept: list[Part]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for k, (_, part, style) in enumerate(kept):
            if k:
                out.append((" " if part.startswith("(") else sep, ""))
            out.append((part, style))
        return out

    kept = list(parts)
    while len(kept) > 1 and sum(len(t) for t, _ in joined(kept)) > width:
        kept.remove(min(kept, key=lambda p: p[0]))
    text = Text.assemble(*joined(kept))
    text.truncate(max(1, width), overflow="ellipsis")
    return text


def short_path(path: str, width: int) -> str:
    """A path cut from the left to ``width`` (…/name.yaml), the file name kept whole."""
    if len(path) <= width:
        return path
    name = path.rsplit("/", 1)[-1]
    return name if len(name) + 2 > width else "…/" + name


class StatusBar(Widget):
    """Three lines at the top: what runs, on what, and how far it is."""

    DEFAULT_CSS = """
    StatusBar { height: 3; }
    StatusBar > Static { height: 1; width: 1fr; }
    StatusBar #progress-line { height: 1; }
    StatusBar #iter-label { width: auto; margin-right: 1; }
    StatusBar #time-label { width: 1fr; margin-left: 1; }
    StatusBar ProgressBar { width: auto; }
    StatusBar Bar { width: 24; }
    """

    snapshot: reactive[RunSnapshot | None] = reactive(None, always_update=True)
    """The run as the app's last tick saw it (None: no event yet)."""
    note = reactive("")
    """A short line beside the state, e.g. "saving checkpoint…"."""

    def __init__(self, config_path: str | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._config_path = config_path
        self._run_line = Static(id="run-line")
        self._model_line = Static(id="model-line")
        self._iter_label = Static("iter –", id="iter-label")
        self._bar = ProgressBar(total=None, show_eta=False, id="progress")
        self._time_label = Static(id="time-label")

    def compose(self) -> ComposeResult:
        yield self._run_line
        yield self._model_line
        with Horizontal(id="progress-line"):
            yield self._iter_label
            yield self._bar
            yield self._time_label

    def on_resize(self) -> None:
        self.call_after_refresh(self._render_all)  # the labels' widths are known after the layout

    def watch_snapshot(self) -> None:
        self._render_all()

    def watch_note(self) -> None:
        self._render_run_line()

    def _render_all(self) -> None:
        self._render_run_line()
        self._render_model_line()
        self._render_progress()

    @property
    def state(self) -> RunState:
        return self.snapshot.state if self.snapshot is not None else RunState.STARTING

    def _width(self, widget: Widget) -> int:
        return widget.size.width or self.size.width or 80

    def _render_progress(self) -> None:
        snap = self.snapshot
        if snap is None or snap.run is None:
            self._update(self._iter_label, "iter –")
            self._update(self._time_label, "")
            return
        run, outcome, max_iters = snap.run, snap.outcome, snap.progress.max_iters  # a plan's, in a run to a time
        last = snap.progress.last
        iteration = outcome.iter if outcome is not None else (last.iter if last is not None else run.start_iter)
        self._update(self._iter_label, f"iter {iteration:,}/{max_iters:,}" if max_iters else f"iter {iteration:,}")
        if max_iters:
            self._bar.update(total=max_iters, progress=min(iteration or 0, max_iters))
        self._update(self._time_label, fit(time_parts(snap), self._width(self._time_label), "  "))

    @staticmethod
    def _update(static: Static, content: str | Text) -> None:
        # Static.update always repaints; skip it when nothing changed (this runs twice a second)
        if getattr(static, "_last_content", None) != content:
            static._last_content = content  # type: ignore[attr-defined]
            static.update(content)

    def _render_run_line(self) -> None:
        snap = self.snapshot
        run = snap.run if snap is not None else None
        width = self._width(self._run_line)
        state = self.state
        badge = f" {state.value} "
        name = run.run_name if run is not None else "waiting for the run to start…"
        config_path = run.config_path if run is not None and run.config_path else self._config_path
        note = self.note
        room = width - len(badge) - 1 - len(name) - (len(note) + 2 if note else 0) - 2
        text = Text.assemble((badge, STATE_STYLES.get(state, "reverse")), " ")
        text.append(name, style="bold" if run is not None else "italic")
        if config_path and room >= 8:
            text.append(f"  {short_path(config_path, room)}", style="dim")
        if note:
            text.append("  ")
            text.append(note, style="bold reverse")
        text.truncate(width, overflow="ellipsis")
        self._update(self._run_line, text)

    def _render_model_line(self) -> None:
        snap = self.snapshot
        run = snap.run if snap is not None else None
        if snap is None or run is None:
            self._update(self._model_line, "")
            return
        parts: list[Part] = [(9, f"{fmt.count(run.n_params)} params", "bold"), (8, f"{run.device} {run.dtype}", "")]
        if run.dtype_reason:
            parts.append((2, f"({run.dtype_reason})", "dim"))
        schedule = snap.schedule
        if schedule.interval:
            parts.append((10, f"eval every {schedule.interval:,}", ""))
            if schedule.next_eval is not None:
                parts.append((3, f"(next {schedule.next_eval:,})", "dim"))
        if run.resumed:
            parts.append((5, f"resumed at {run.start_iter:,}", "italic"))
        self._update(self._model_line, fit(parts, self._width(self._model_line)))

    def show_failure(self, text: Text) -> None:
        self.note = text.plain.splitlines()[0][:60]


def time_parts(snap: RunSnapshot) -> list[Part]:
    """The progress line after the bar: an eval under way, elapsed, ETA and when, paused, the target."""
    run, outcome = snap.run, snap.outcome
    assert run is not None
    now = outcome.time if outcome is not None else (snap.now if snap.now is not None else run.time)
    elapsed = snap.progress.elapsed if snap.progress.elapsed is not None else now - run.time
    parts: list[Part] = [(6, f"elapsed {fmt.duration(elapsed)}", "")]  # the run's, every session (RunClock)
    evaluating = snap.evaluating if snap.state == RunState.EVALUATING and outcome is None else None
    if evaluating is not None:
        first = " the untrained model" if snap.untrained_eval else ""
        parts.insert(0, (10, f"evaluating{first}: {evaluating.done}/{evaluating.total} batches, "
                         f"{fmt.duration(evaluating.seconds)}", "bold"))
    if outcome is None:
        eta = snap.progress.eta
        parts.append((8, f"ETA {fmt.eta(eta)}", ""))  # its range: run/numbers.py RunProgress.eta
        if snap.state == RunState.PAUSED:
            parts.append((9, "(paused)", "bold"))
        elif eta is not None:
            parts.append((4, f"→ {fmt.clock(now + eta.seconds, now)}", ""))
    if snap.plan is not None:  # a run to a time: when its cooldown starts and when it ends, or how it ended
        ended = outcome.time if outcome is not None else None
        parts.append((9, plan.short(snap.plan, now, ended), "bold" if outcome is None else ""))
    if snap.target.status:
        parts.append((7, snap.target.status, ""))  # asked for (target_loss, T): kept before the elapsed time
    return parts
