"""Alerts: which events raise one, and the bytes a terminal gets (inside tmux too)."""

from __future__ import annotations

import pytest

from tuigpt.run.alerts import BEL, ESC, alert_for, terminal_bytes
from tuigpt.run.events import Diverging, EvalResult, NanDetected, Notice, RunFailed, RunFinished, Stalled


def finished(reason: str) -> RunFinished:
    return RunFinished(iter=200, reason=reason, best_val_loss=1.5, last_val_loss=1.6, wall_seconds=1, train_seconds=1,
                       eval_seconds=0, checkpoint_seconds=0, last_checkpoint=None, tokens_seen=1)


def nan() -> NanDetected:
    return NanDetected(iter=3, cause="gradient", loss=2.0, grad_norm=float("inf"), lr=1.0, layers=[], recent=[],
                       recent_layers=[], batch_starts=[[1, 2]], action="stop")


@pytest.mark.parametrize("event, kind", [
    (finished("done"), "done"), (finished("nan"), "ended"), (finished("disk"), "ended"),
    (RunFailed(iter=5, message="boom", traceback="", last_checkpoint=None), "failed"), (nan(), "nan"),
    (Stalled(iter=9, seconds=40, median_ms=100, threshold_s=30), "stall"),
    (Diverging(iter=400, window=200, loss_before=2.0, loss_now=2.5), "divergence"),
    (Notice(level="warning", message="likely thermal throttling: 90 vs 60 ms/iter", topic="throttling"), "throttling"),
    (Notice(level="error", message="could not write last.pt", topic="checkpoint"), "checkpoint"),
])
def test_events_that_alert(event, kind) -> None:
    alert = alert_for(event, "tiny")
    assert alert is not None and alert.kind == kind and alert.summary.startswith("tiny: ")
    assert alert.record["type"] in ("finish", "failed", "nan", "stall", "diverging", "notice")


@pytest.mark.parametrize("event", [
    finished("stopped"), Notice(level="warning", message="loss spike"), Notice(level="info", message="hello"),
    EvalResult(iter=1, train_loss=1, val_loss=1, best_val_loss=1, is_best=True, seconds=1),
])
def test_events_that_do_not_alert(event) -> None:
    assert alert_for(event, "tiny") is None


def test_terminal_bytes_ring_and_notify_and_pass_through_tmux() -> None:
    alert = alert_for(finished("done"), "tiny")
    plain = terminal_bytes(alert, {})
    assert plain.startswith(BEL)
    assert f"{ESC}]9;tuigpt done: tiny: finished at iter 200, best val 1.5000{BEL}" in plain
    assert f"{ESC}]777;notify;tuigpt done;tiny: finished at iter 200, best val 1.5000{BEL}" in plain
    wrapped = terminal_bytes(alert, {"TMUX": "/tmp/tmux-1/default,1,0"})
    assert wrapped.startswith(BEL)  # outside the passthrough: tmux itself flags the window
    assert f"{ESC}Ptmux;{ESC}{ESC}]9;tuigpt done: " in wrapped and wrapped.endswith(f"{BEL}{ESC}\\")
    assert terminal_bytes(alert, {"TERM_PROGRAM": "iTerm.app"}).count("]777;") == 0
    assert terminal_bytes(alert, {"VTE_VERSION": "7600"}).count("]9;") == 0


def test_a_message_cannot_smuggle_escape_sequences() -> None:
    alert = alert_for(RunFailed(iter=1, message=f"bad{ESC}]52;c;evil{BEL}\nnext", traceback="", last_checkpoint=None))
    out = terminal_bytes(alert, {})
    assert out.count(ESC) == 2 and out.count(BEL) == 3  # two notifications and the bell, nothing from the text
