"""CPU telemetry: per-core load, frequency, temperatures, throttling, power, load, memory.

The sampler's snapshot is read with getattr(..., None): any field may be missing
or None on a given machine, and is then shown as "n/a".
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tuigpt.ui.widgets.reading_pane import ReadingPane
from tuigpt.run.fmt import NA, na, size

BLOCKS = "▁▂▃▄▅▆▇█"


def _get(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


def core_blocks(per_core: Any) -> str:
    """One block character a core, its height the core's load."""
    out = []
    for p in per_core:
        try:
            out.append(BLOCKS[min(7, max(0, int(float(p) / 100 * 8)))])
        except (TypeError, ValueError):
            out.append("?")
    return "".join(out)


def _ghz(mhz: Any) -> str:
    return na(None if mhz is None else mhz / 1000, "{:.2f}")


class CpuPane(ReadingPane):
    TITLE = "CPU"

    @staticmethod
    def describe(data: Any) -> Text:
        text = Text()
        per_core = _get(data, "per_core_percent")
        text.append("load  ", style="bold")
        if per_core:
            cores = list(per_core)
            avg = sum(float(p) for p in cores) / len(cores)
            text.append(f"{avg:3.0f}% avg of {len(cores)} ")
            text.append(core_blocks(cores), style="green")
        else:
            text.append(NA)
        load = _get(data, "load_avg")
        text.append("\nloadavg ", style="bold")
        text.append(" ".join(f"{x:.2f}" for x in load) if load else NA)
        text.append("\nfreq  ", style="bold")
        text.append(f"{_ghz(_get(data, 'freq_mhz'))} GHz")
        lo, hi = _get(data, "freq_min_mhz"), _get(data, "freq_max_mhz")
        if lo is not None or hi is not None:
            text.append(f" ({_ghz(lo)}–{_ghz(hi)})", style="dim")
        text.append("\ntemp  ", style="bold")
        tmax = _get(data, "temp_max_c")
        temps = _get(data, "temperatures")
        if tmax is None and temps:
            try:
                tmax = max(temps.values())
            except (TypeError, ValueError):
                tmax = None
        text.append(na(tmax, "{:.0f}", "°C"), style="bold red" if tmax is not None and tmax >= 90 else "")
        text.append("  power ", style="bold")
        text.append(na(_get(data, "package_power_w"), "{:.1f}", " W"))
        text.append("\nthrottle ", style="bold")
        throttling = _get(data, "throttling")
        if throttling is None:
            text.append(NA)
        elif throttling:
            text.append("YES", style="bold black on yellow")
        else:
            text.append("no")
        n = _get(data, "throttle_count")
        if n is not None:
            text.append(f" ({n} events)", style="bold yellow" if n else "dim")
        text.append("\nmem   ", style="bold")
        text.append(f"{size(_get(data, 'mem_used_bytes'))} / {size(_get(data, 'mem_total_bytes'))}")
        text.append("  RSS ", style="bold")
        text.append(size(_get(data, "process_rss_bytes")))
        return text
