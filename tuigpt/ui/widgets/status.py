"""The header: run, model, device, colour-coded state, progress, elapsed, ETA, and an eval under way.

Every line is fitted to the width it has (80 columns included): the least useful parts are shortened or left
out first (the dtype's reason, the clock time of the ETA, the config's folders), never the eval interval.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import ProgressBar, Static

from tuigpt.run.events import RunStarted, RunState
from tuigpt.run.fmt import count

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

    def __init__(self, config_path: str | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._config_path = config_path
        self._state = RunState.STARTING
        self._note = ""
        self._run: RunStarted | None = None
        self._eval_interval: int | None = None
        self._next_eval_iter: int | None = None
        self._progress: tuple[int | None, int | None, list[Part]] = (None, None, [])
        self._ready = False  # children exist (values set before then are drawn on mount)

    def compose(self) -> ComposeResult:
        # kept as attributes: children of the inner Horizontal mount later than this widget
        self._run_line = Static(id="run-line")
        self._model_line = Static(id="model-line")
        self._iter_label = Static("iter –", id="iter-label")
        self._bar = ProgressBar(total=None, show_eta=False, id="progress")
        self._time_label = Static(id="time-label")
        yield self._run_line
        yield self._model_line
        with Horizontal(id="progress-line"):
            yield self._iter_label
            yield self._bar
            yield self._time_label

    def on_mount(self) -> None:
        self._ready = True
        self._render_all()

    def on_resize(self) -> None:
        self.call_after_refresh(self._render_all)  # the labels' widths are known after the layout

    def _render_all(self) -> None:
        self._render_run_line()
        self._render_model_line()
        self._render_progress()

    @property
    def state(self) -> RunState:
        return self._state

    def set_run(self, run: RunStarted) -> None:
        self._run = run
        self._eval_interval = run.eval_interval
        if run.config_path:
            self._config_path = run.config_path
        self._render_run_line()
        self._render_model_line()

    def set_state(self, state: RunState, note: str | None = None) -> None:
        self._state = state
        if note is not None:
            self._note = note
        self._render_run_line()

    def set_note(self, note: str) -> None:
        """A short line beside the state, e.g. "saving checkpoint…"."""
        self._note = note
        self._render_run_line()

    def set_eval_interval(self, interval: int, next_eval_iter: int | None = None) -> None:
        self._eval_interval = interval
        self._next_eval_iter = next_eval_iter
        self._render_model_line()

    def set_progress(self, iteration: int | None, max_iters: int | None, times: Sequence[Part]) -> None:
        """The iteration, and the time parts (priority, text, style) fitted after the bar."""
        self._progress = (iteration, max_iters, list(times))
        self._render_progress()

    def _width(self, widget: Widget) -> int:
        return widget.size.width or self.size.width or 80

    def _render_progress(self) -> None:
        if not self._ready:
            return
        iteration, max_iters, times = self._progress
        label = "iter –" if iteration is None else f"iter {iteration:,}/{max_iters:,}" if max_iters else f"iter {iteration:,}"
        self._update(self._iter_label, label)
        if max_iters:
            self._bar.update(total=max_iters, progress=min(iteration or 0, max_iters))
        self._update(self._time_label, fit(times, self._width(self._time_label), "  "))

    @staticmethod
    def _update(static: Static, content: str | Text) -> None:
        # Static.update always repaints; skip it when nothing changed (this runs twice a second)
        if getattr(static, "_last_content", None) != content:
            static._last_content = content  # type: ignore[attr-defined]
            static.update(content)

    def _render_run_line(self) -> None:
        if not self._ready:
            return
        width = self._width(self._run_line)
        badge = f" {self._state.value} "
        name = self._run.run_name if self._run is not None else "waiting for the run to start…"
        room = width - len(badge) - 1 - len(name) - (len(self._note) + 2 if self._note else 0) - 2
        text = Text.assemble((badge, STATE_STYLES.get(self._state, "reverse")), " ")
        text.append(name, style="bold" if self._run is not None else "italic")
        if self._config_path and room >= 8:
            text.append(f"  {short_path(self._config_path, room)}", style="dim")
        if self._note:
            text.append("  ")
            text.append(self._note, style="bold reverse")
        text.truncate(width, overflow="ellipsis")
        self._update(self._run_line, text)

    def _render_model_line(self) -> None:
        if not self._ready:
            return
        run = self._run
        if run is None:
            self._update(self._model_line, "")
            return
        parts: list[Part] = [(9, f"{count(run.n_params)} params", "bold"), (8, f"{run.device} {run.dtype}", "")]
        if run.dtype_reason:
            parts.append((2, f"({run.dtype_reason})", "dim"))
        if self._eval_interval:
            parts.append((10, f"eval every {self._eval_interval:,}", ""))
            if self._next_eval_iter is not None:
                parts.append((3, f"(next {self._next_eval_iter:,})", "dim"))
        if run.resumed:
            parts.append((5, f"resumed at {run.start_iter:,}", "italic"))
        self._update(self._model_line, fit(parts, self._width(self._model_line)))

    def show_failure(self, text: Text) -> None:
        self._note = text.plain.splitlines()[0][:60]
        self._render_run_line()
