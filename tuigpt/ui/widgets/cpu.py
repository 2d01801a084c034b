"""CPU telemetry: per-core load, who has this process's CPUs (tuigpt's share, the others', how long its threads wait
for one and whether contention sets the speed), frequency, temperatures, throttling, power, load, memory.

One field a line, so nothing runs together at any width; a field the machine does not expose says n/a and
why (the reading's ``unavailable``), cut to the pane; the full reasons are in ``?`` and the pane's tooltip.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tuigpt.run.fmt import NA, na, na_why, size, size_pair
from tuigpt.run.readings import CpuSnapshot
from tuigpt.ui.widgets.reading_pane import ReadingPane, get

BLOCKS = "▁▂▃▄▅▆▇█"
LABEL = 9  # "throttle " is the longest label
WIDTH = 38  # the pane's text width in the wide layout (42 columns less border and padding)


def core_blocks(per_core: Any) -> str:
    """One block character a core, its height the core's load."""
    out = []
    for p in per_core:
        try:
            out.append(BLOCKS[min(7, max(0, int(float(p) / 100 * 8)))])
        except (TypeError, ValueError):
            out.append("?")
    return "".join(out)


def share_text(own: Any, others: Any, cpus: Any, machine: Any = None) -> str:
    """This process's share of its CPUs and the other processes', e.g. "tuigpt 48% · others 52%", with "of 1"
    when it may run on fewer CPUs than the machine has (an affinity mask: the load row is the whole machine's)."""
    mine = "tuigpt n/a" if own is None else f"tuigpt {own * 100:.0f}%"
    return f"{mine} · others {others * 100:.0f}%" + (f" of {cpus}" if cpus and machine and cpus != machine else "")


def waits_text(contended: Any, waiting: Any) -> str:
    """How much of the time tuigpt's threads wanted a CPU they waited for one, and whether that is contention:
    "63% of the time, for others" (contention sets the speed), "2% of the time" (it does not)."""
    if contended is None or waiting is None:
        return NA
    return f"{waiting * 100:.0f}% of the time" + (", for others" if contended else "")


def _ghz(mhz: Any) -> str:
    return na(None if mhz is None else mhz / 1000, "{:.2f}")


class CpuPane(ReadingPane):
    TITLE = "CPU"
    CONTENDED_TITLE = "CPU: contention sets the speed"

    def show(self, data: Any) -> None:
        super().show(data)
        self.border_title = self.CONTENDED_TITLE if get(data, "contended") else self.TITLE

    @staticmethod
    def describe(data: Any) -> Text:
        why: dict[str, str] = get(data, "unavailable") or {}
        room = WIDTH - LABEL
        text = Text()

        def row(label: str, value: str, field: str, style: str = "") -> None:
            if text.plain:
                text.append("\n")
            text.append(f"{label:<{LABEL}}", style="bold")
            text.append(na_why(value, why.get(field), room), style="dim" if value == NA else style)

        per_core = get(data, "per_core_percent")
        if per_core:
            cores = list(per_core)
            avg = sum(float(p) for p in cores) / len(cores)
            text.append(f"{'load':<{LABEL}}", style="bold")
            text.append(f"{avg:3.0f}% of {len(cores)} ")
            text.append(core_blocks(cores)[: max(1, room - 10)], style="green")
        else:
            row("load", NA, "per_core_percent")
        own, others = get(data, "own_share"), get(data, "others_share")
        machine = len(per_core) if per_core else None
        row("share", NA if others is None else share_text(own, others, get(data, "share_cpus"), machine),
            "others_share")
        contended = get(data, "contended")
        waiting = data.wait_share if isinstance(data, CpuSnapshot) else None
        row("waits", waits_text(contended, waiting), "contended", "bold black on yellow" if contended else "")
        load = get(data, "load_avg")
        row("loadavg", " ".join(f"{x:.2f}" for x in load) if load else NA, "load_avg")
        freq = _ghz(get(data, "freq_mhz"))
        lo, hi = get(data, "freq_min_mhz"), get(data, "freq_max_mhz")
        span = f" ({_ghz(lo)}–{_ghz(hi)})" if lo is not None and hi is not None else ""
        row("freq", freq if freq == NA else f"{freq} GHz{span}", "freq_mhz")
        tmax = get(data, "temp_max_c")
        temps = get(data, "temperatures")
        if tmax is None and temps:
            try:
                tmax = max(temps.values())
            except (TypeError, ValueError):
                tmax = None
        row("temp", na(tmax, "{:.0f}", "°C"), "temp_max_c", "bold red" if tmax is not None and tmax >= 90 else "")
        row("power", na(get(data, "package_power_w"), "{:.1f}", " W"), "package_power_w")
        throttling, n = get(data, "throttling"), get(data, "throttle_count")
        shown = NA if throttling is None else "YES" if throttling else "no"
        if shown != NA and n is not None:
            shown += f" ({n} events)"
        row("throttle", shown, "throttling", "bold black on yellow" if throttling else "")
        used, total, rss = get(data, "mem_used_bytes"), get(data, "mem_total_bytes"), get(data, "process_rss_bytes")
        mem = NA if used is None else size_pair(used, total)
        both = f"{mem} · RSS {size(rss)}"
        if mem != NA and rss is not None and len(both) <= room:
            row("mem", both, "mem_used_bytes")
        else:
            row("mem", mem, "mem_used_bytes")
            row("RSS", size(rss), "process_rss_bytes")
        return text

    @staticmethod
    def reasons(data: Any) -> dict[str, str]:
        return dict(get(data, "unavailable") or {})
