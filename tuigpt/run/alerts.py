"""Which events are worth interrupting the user for, and the bytes that reach their terminal.

An alert is the terminal bell (tmux then flags the window, even when the notification cannot get out),
an OSC 9 and/or OSC 777 desktop notification, a toast in the monitor or a marked line headless, and the
user's ``alert_command`` (see :mod:`tuigpt.host.alerts`). Inside tmux the notification is wrapped for
passthrough (``\\ePtmux;…\\e\\\\``), which tmux forwards with ``set -g allow-passthrough on``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuigpt.run.errors import UserError
from tuigpt.run.events import Diverging, EndReason, Event, NanDetected, Notice, RunFailed, RunFinished, Stalled
from tuigpt.run.records import event_record

ESC, BEL = "\x1b", "\x07"
MAX_TEXT = 200  # characters of a notification's body


@dataclass(frozen=True)
class Alert:
    """One alert: what kind, one line saying it, and the event it came from (what alert_command reads)."""

    kind: str  # done, ended, failed, nan, stall, divergence, throttling, contention, checkpoint, plateau, plan
    summary: str
    severity: str  # "information", "warning" or "error" (Textual's toast severities)
    record: dict[str, Any]

    def payload(self, run_name: str, run_dir: str) -> dict[str, Any]:
        """What alert_command gets as JSON on its stdin."""
        return {"kind": self.kind, "summary": self.summary, "run_name": run_name, "run_dir": run_dir,
                "event": self.record}


def alert_for(event: Event, run_name: str = "") -> Alert | None:
    """The alert an event raises, or None (most events raise none)."""
    who = f"{run_name}: " if run_name else ""
    kind, severity, text = "", "warning", ""
    if isinstance(event, RunFinished):
        if event.reason == EndReason.STOPPED:
            return None  # asked for (a key, a command, a signal): someone is there
        best = f", best val {event.best_val_loss:.4f}" if event.best_val_loss is not None else ""
        if event.reason == EndReason.DONE:
            kind, severity, text = "done", "information", f"finished at iter {event.iter:,}{best}"
        else:
            why = "on a NaN" if event.reason == EndReason.NAN else "a file could not be written (disk full or permissions)"
            kind, severity, text = "ended", "error", f"stopped at iter {event.iter:,}: {why}"
    elif isinstance(event, RunFailed):
        kind, severity, text = "failed", "error", f"failed at iter {event.iter:,}: {event.message}"
    elif isinstance(event, NanDetected):
        what = "loss" if event.cause == "loss" else "gradient"
        kind, severity, text = "nan", "error", f"NaN/Inf {what} at iter {event.iter:,}; {event.action}"
    elif isinstance(event, Stalled):
        kind, text = "stall", (f"no iteration for {event.seconds:.0f} s after iter {event.iter:,} (median step "
                               f"{event.median_ms:.0f} ms)")
    elif isinstance(event, Diverging):
        kind, text = "divergence", (f"loss trending up: {event.loss_before:.4f} → {event.loss_now:.4f} over "
                                    f"{event.window} iters (iter {event.iter:,})")
    elif isinstance(event, Notice) and (event.topic in ("throttling", "checkpoint", "plateau", "plan")
                                        or event.topic == "contention" and event.level == "warning"):  # (not its end)
        kind, severity, text = event.topic, event.level if event.level != "info" else "information", event.message
    if not kind:
        return None
    return Alert(kind, who + text, severity, event_record(event) or {})


def _clean(text: str, limit: int = MAX_TEXT) -> str:
    """Printable text only: a control character would end (or hijack) the escape sequence."""
    return "".join(c if c.isprintable() else " " for c in text)[:limit]


def notification_kinds(env: Mapping[str, str]) -> tuple[str, ...]:
    """The OSC notifications to send. Terminals known to show OSC 9 get only it, those known for OSC 777 only
    that; anywhere else (over SSH and in tmux the terminal cannot be told) both, since one that knows
    neither ignores them and a double notice is better than none."""
    program = env.get("TERM_PROGRAM", "") or env.get("LC_TERMINAL", "")
    if program in ("iTerm.app", "iTerm2", "WezTerm", "ghostty", "Apple_Terminal") or "kitty" in env.get("TERM", ""):
        return ("9",)
    if env.get("VTE_VERSION") or env.get("TERM", "").startswith(("foot", "rxvt")):
        return ("777",)
    return ("9", "777")


def terminal_bytes(alert: Alert, env: Mapping[str, str]) -> str:
    """The bell, then the notifications (wrapped for tmux passthrough when $TMUX is set)."""
    body = _clean(alert.summary)
    sequences = []
    for kind in notification_kinds(env):
        if kind == "9":  # OSC 9 text that starts with digits and ';' is a ConEmu command: always start with a word
            sequences.append(f"{ESC}]9;tuigpt {alert.kind}: {body}{BEL}")
        else:
            sequences.append(f"{ESC}]777;notify;tuigpt {alert.kind};{body.replace(';', ',')}{BEL}")
    if env.get("TMUX"):
        sequences = [f"{ESC}Ptmux;{s.replace(ESC, ESC + ESC)}{ESC}\\" for s in sequences]
    return BEL + "".join(sequences)


def split_command(command: str) -> list[str]:
    """alert_command's words, split as a shell would (it runs without one); UserError for unbalanced quotes."""
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise UserError(f"config key alert_command={command!r} cannot be split into words ({exc}): check its "
                        f"quotes") from None
