"""The monitor's keys: bindings (footer) and the help screen's table, side by side."""

from __future__ import annotations

from textual.binding import Binding

from tuigpt.run.model import RECENT_WINDOW

_EVAL = Binding.Group("Eval")  # footer text kept short: 80 columns must show every key
_VIEW = Binding.Group("View")
BINDINGS = [
    Binding("p", "toggle_pause", "Pause"),
    Binding("c", "checkpoint", "Ckpt", tooltip="write a checkpoint now"),
    Binding("s", "sample", "Sample"),
    Binding("e", "eval_interval(0.5)", "Eval ½", group=_EVAL),
    Binding("E", "eval_interval(2)", "Eval ×2", key_display="E", group=_EVAL),
    Binding("i", "set_eval_interval", "Eval every…", group=_EVAL),
    Binding("l", "toggle_log", "Log y", group=_VIEW),
    Binding("z", "toggle_zoom", "Zoom", group=_VIEW),
    Binding("x", "cycle_x", "X", tooltip="loss chart x axis: iterations, tokens, time", group=_VIEW),
    Binding("h", "toggle_health", "Health", show=False),
    Binding("T", "set_target", "Target", key_display="T", show=False),
    Binding("left_square_bracket", "older_sample", "Older sample", key_display="[", show=False),
    Binding("right_square_bracket", "newer_sample", "Newer sample", key_display="]", show=False),
    Binding("n", "next_pane", "Pane", tooltip="next pane (small terminals) or focus the next scrollable pane"),
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
    ("h", "Health pane (gradient norm, clip rate, learning rate, per-group norms) in the loss chart's place"),
    ("T", "type a target loss: its projected iteration and time in the status line, dashed on the chart"),
    ("[ / ]", "sample timeline (sample_every_eval): older / newer eval sample"),
    ("n", "next pane (small terminals show one at a time); on a big one, focus events / samples"),
    ("↑↓ PgUp PgDn Home End", "scroll the focused pane (events, samples: the last 10 samples, newest first)"),
    ("?", "this help"),
    ("q, ctrl+c", "stop the run (save or not) and quit; quits at once when the run is over"),
]
# once the run is over (or when watching an ended run) p c s e E i are gone from the footer: nothing to steer
# actions that steer the run: off while a dialog is open, disabled once the run is over
RUN_ACTIONS = {"toggle_pause", "checkpoint", "sample", "eval_interval", "set_eval_interval"}
VIEW_ACTIONS = {"toggle_log", "toggle_zoom", "cycle_x", "next_pane", "help", "quit_request", "interrupt",
                "toggle_health", "set_target", "older_sample", "newer_sample"}
