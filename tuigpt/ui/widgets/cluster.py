"""Cluster: per-rank timings of a data-parallel run, the balance ratios and the straggler.

Only shown once a ClusterStats event arrives (single-process runs never publish one). In the wide layout it
sits under the events log, as wide as the chart (a table of ranks needs the width; the right column had no
room left for it at 120x40), in the compact one it is a tab. Laid out for the width it has: the host column
takes what the numbers leave.
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
NUMBERS = 29  # "rk " and " ms/it  data   comp  comm" around the host column
HOST_WIDTH = (6, 24)  # the host column's narrowest and widest


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

    def on_resize(self) -> None:
        if self.stats is not None:
            self.show(self.stats)

    def show(self, stats: ClusterStats) -> None:
        self.stats = stats
        try:
            # laid out again every time (not only when the count of lines changed, as the panes redrawn every
            # second are): the footnote wraps to more or fewer lines as the width changes, and a stale height
            # cut the pane's last lines
            self.update(self.describe(stats, self.steps, self.content_size.width or 38))
        except Exception as exc:  # a malformed record from an old metrics file must not take the UI down
            self.update(Text(f"cluster timings unreadable: {exc!r}", style="yellow"))
        self.border_title = f"cluster · {len(stats.ranks)} ranks" + (f" · {stats.backend}" if stats.backend else "")

    @staticmethod
    def describe(stats: ClusterStats, steps: int = 0, width: int = 38) -> Text:
        """The pane's text for a ``width``-column pane: every rank's row on one line."""
        host_width = max(HOST_WIDTH[0], min(HOST_WIDTH[1], width - NUMBERS))
        text = Text()
        text.append(f"{'rk':>2} {'host':<{host_width}} {'ms/it':>6} {'data':>5} {'comp':>6} {'comm':>5}", style="bold")
        ranks = list(stats.ranks)
        if len(ranks) > MAX_RANK_ROWS:
            ranks = sorted(ranks, key=lambda r: -(_busy(r) or 0.0))[:MAX_RANK_ROWS]
        for r in ranks:
            rank = r.get("rank")
            host = str(r.get("host", "?"))
            host = host if len(host) <= host_width else host[: host_width - 1] + "…"
            line = f"{na_int(rank):>2} {host:<{host_width}} {_ms(r.get('ms_per_iter')):>6} {_ms(r.get('data_ms')):>5} " \
                   f"{_ms(r.get('compute_ms')):>6} {_ms(r.get('comm_ms')):>5}"
            text.append("\n")
            if stats.straggler is not None and rank == stats.straggler:
                text.append(line, style="bold black on yellow")  # the row fills a narrow pane: no room for a marker
            else:
                text.append(line)
        if len(stats.ranks) > MAX_RANK_ROWS:
            text.append(f"\n({len(stats.ranks) - MAX_RANK_ROWS} faster ranks not shown)", style="dim")
        text.append("\nslowest/fastest ", style="bold")
        ratio = stats.slowest_over_fastest
        text.append(f"{ratio:.2f}×", style="bold yellow" if ratio >= SLOW_RATIO else "green")
        text.append("  comm/compute " if width >= 40 else "  comm/comp ", style="bold")
        coc = stats.comm_over_compute
        text.append(NA if coc is None else f"{coc:.2f}", style="bold yellow" if coc is not None and coc >= 1.0 else "")
        if stats.straggler is not None:  # on the same line when it fits (a compact tab shows 7 lines)
            text.append("  " if width >= 60 else "\n")
            text.append(f"straggler: rank {stats.straggler}", style="bold yellow")
        over = f"the last {steps} steps" if steps else "the steps since the last gather"
        text.append(f"\nms/it: each rank's mean over {over}, all-reduce waits included; Speed shows rank 0's "
                    f"median of {SPEED_WINDOW}, which slow steps do not move", style="dim")
        return text


def na_int(value: Any) -> str:
    return NA if value is None else str(value)
