"""The header: run, model, device, colour-coded state, progress, elapsed, ETA."""

from __future__ import annotations

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


class StatusBar(Widget):
    """Three lines at the top: what runs, on what, and how far it is."""

    DEFAULT_CSS = """
    StatusBar { height: 3; }
    StatusBar > Static { height: 1; width: 1fr; }
    StatusBar #progress-line { height: 1; }
    StatusBar #iter-label { width: auto; margin-right: 1; }
    StatusBar #time-label { width: 1fr; margin-left: 2; }
    StatusBar ProgressBar { width: auto; }
    """

    def __init__(self, config_path: str | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._config_path = config_path
        self._state = RunState.STARTING
        self._note = ""
        self._run: RunStarted | None = None
        self._eval_interval: int | None = None
        self._next_eval_iter: int | None = None
        self._progress: tuple[int | None, int | None, str] = (None, None, "")
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

    def set_progress(self, iteration: int | None, max_iters: int | None, times: str) -> None:
        self._progress = (iteration, max_iters, times)
        self._render_progress()

    def _render_progress(self) -> None:
        if not self._ready:
            return
        iteration, max_iters, times = self._progress
        label = "iter –" if iteration is None else f"iter {iteration:,}/{max_iters:,}" if max_iters else f"iter {iteration:,}"
        self._update(self._iter_label, label)
        bar = self._bar
        if max_iters:
            bar.update(total=max_iters, progress=min(iteration or 0, max_iters))
        self._update(self._time_label, times)

    @staticmethod
    def _update(static: Static, content: str | Text) -> None:
        # Static.update always repaints; skip it when nothing changed (this runs 4x a second)
        if getattr(static, "_last_content", None) != content:
            static._last_content = content  # type: ignore[attr-defined]
            static.update(content)

    def _render_run_line(self) -> None:
        if not self._ready:
            return
        text = Text.assemble((f" {self._state.value} ", STATE_STYLES.get(self._state, "reverse")), " ")
        if self._run is not None:
            text.append(self._run.run_name, style="bold")
        else:
            text.append("waiting for the run to start…", style="italic")
        if self._config_path:
            text.append(f"  {self._config_path}", style="dim")
        if self._note:
            text.append("  ")
            text.append(self._note, style="bold reverse")
        self._update(self._run_line, text)

    def _render_model_line(self) -> None:
        if not self._ready:
            return
        run, next_eval_iter = self._run, self._next_eval_iter
        if run is None:
            self._update(self._model_line, "")
            return
        text = Text()
        text.append(f"{count(run.n_params)} params", style="bold")
        text.append(f" · {run.device} {run.dtype}")
        if run.dtype_reason:
            text.append(f" ({run.dtype_reason})", style="dim")
        if self._eval_interval:
            text.append(f" · eval every {self._eval_interval:,}")
            if next_eval_iter is not None:
                text.append(f" (next {next_eval_iter:,})", style="dim")
        if run.resumed:
            text.append(f" · resumed at {run.start_iter:,}", style="italic")
        self._update(self._model_line, text)
