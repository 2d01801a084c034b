"""Cluster: per-rank timings of a data-parallel run, the balance ratios and the straggler.

Only shown once a ClusterStats event arrives (single-process runs never publish one).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tuigpt.run.events import ClusterStats
from tuigpt.run.fmt import NA
from tuigpt.run.numbers import SPEED_WINDOW
from tuigpt.ui.widgets.text_pane import TextPane

SLOW_RATIO = 1.15  # the same 15% the trainer's straggler detector uses
MAX_RANK_ROWS = 16  # a big cluster: the slowest ranks first beyond this many
HOST_WIDTH = 9


def _ms(value: Any) -> str:
    try:
        return f"{float(value):,.1f}"
    except (TypeError, ValueError):
        return NA


def _busy(rank: dict[str, Any]) -> float | None:
    """What ranks are compared on: data wait + compute (every rank's ms/iter is about equal)."""
    try:
        return float(rank.get("data_ms") or 0.0) + float(rank["compute_ms"])
    except (KeyError, TypeError, ValueError):
        return None


class ClusterPane(TextPane):
    """Redrawn from each ClusterStats; never raises into the app."""

    steps = 0
    """Steps between two gathers (the run's log_interval; 0: unknown): what each rank's means are over."""
    stats: ClusterStats | None = None
    """The timings shown (the run model's newest)."""

    def on_mount(self) -> None:
        self.border_title = "cluster"
        self.update(Text("no cluster timings yet", style="dim"))

    def show(self, stats: ClusterStats) -> None:
        self.stats = stats
        try:
            self.update(self.describe(stats, self.steps))
        except Exception as exc:  # a malformed record from an old metrics file must not take the UI down
            self.update(Text(f"cluster timings unreadable: {exc!r}", style="yellow"))
        self.border_title = f"cluster · {len(stats.ranks)} ranks" + (f" · {stats.backend}" if stats.backend else "")

    @staticmethod
    def describe(stats: ClusterStats, steps: int = 0) -> Text:
        text = Text()
        text.append(f"{'rk':>2} {'host':<{HOST_WIDTH}} {'ms/it':>6} {'data':>5} {'comp':>6} {'comm':>5}", style="bold")
        ranks = list(stats.ranks)
        if len(ranks) > MAX_RANK_ROWS:
            ranks = sorted(ranks, key=lambda r: -(_busy(r) or 0.0))[:MAX_RANK_ROWS]
        for r in ranks:
            rank = r.get("rank")
            host = str(r.get("host", "?"))
            host = host if len(host) <= HOST_WIDTH else host[: HOST_WIDTH - 1] + "…"
            line = f"{na_int(rank):>2} {host:<{HOST_WIDTH}} {_ms(r.get('ms_per_iter')):>6} {_ms(r.get('data_ms')):>5} " \
                   f"{_ms(r.get('compute_ms')):>6} {_ms(r.get('comm_ms')):>5}"
            text.append("\n")
            if stats.straggler is not None and rank == stats.straggler:
                text.append(line, style="bold black on yellow")  # the row fills the 38-column pane: no room for a marker
            else:
                text.append(line)
        if len(stats.ranks) > MAX_RANK_ROWS:
            text.append(f"\n({len(stats.ranks) - MAX_RANK_ROWS} faster ranks not shown)", style="dim")
        text.append("\nslowest/fastest ", style="bold")
        ratio = stats.slowest_over_fastest
        text.append(f"{ratio:.2f}×", style="bold yellow" if ratio >= SLOW_RATIO else "green")
        text.append("  comm/compute ", style="bold")
        coc = stats.comm_over_compute
        text.append(NA if coc is None else f"{coc:.2f}", style="bold yellow" if coc is not None and coc >= 1.0 else "")
        if stats.straggler is not None:
            text.append(f"\nstraggler: rank {stats.straggler}", style="bold yellow")
        over = f"the last {steps} steps" if steps else "the steps since the last gather"
        text.append(f"\nms/it: each rank's mean over {over}, all-reduce waits included; Speed shows rank 0's "
                    f"median of {SPEED_WINDOW}, which slow steps do not move", style="dim")
        return text


def na_int(value: Any) -> str:
    return NA if value is None else str(value)
