"""GPU telemetry: per-GPU util, memory, temperature, power, clock, throttling; torch memory.

With no GPU (or NVML missing) the pane is one line saying why, and its room goes to the panes below it.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tuigpt.run.fmt import NA, bar, na, short_reason, size, size_pair
from tuigpt.ui.widgets.reading_pane import ReadingPane, get

WIDTH = 38


def _frac(used: Any, total: Any) -> float | None:
    try:
        return float(used) / float(total) if used is not None and total else None
    except (TypeError, ValueError):
        return None


def no_gpu_line(data: Any) -> str:
    """The one line of a machine without a usable GPU."""
    status = str(get(data, "status") or "no GPU")
    return "none: no GPU" if status == "no GPU" else f"none: {short_reason(status, WIDTH - 6)}"


class GpuPane(ReadingPane):
    TITLE = "GPU"

    def show(self, data: Any) -> None:
        super().show(data)
        self.set_class(not list(get(data, "gpus") or []), "-none")  # app.tcss collapses it to one line

    @staticmethod
    def describe(data: Any) -> Text:
        text = Text()
        gpus = list(get(data, "gpus") or [])
        if not gpus:
            text.append(no_gpu_line(data), style="bold")
        for k, g in enumerate(gpus):
            if k:
                text.append("\n")
            text.append(f"{na(get(g, 'index'))} ", style="bold")
            text.append(str(get(g, "name") or "GPU")[: WIDTH - 3])
            util = get(g, "util_percent")
            text.append("\n  util ", style="bold")
            text.append(f"{na(util, '{:.0f}', '%'):>4} ")
            text.append(bar(None if util is None else float(util) / 100, 6), style="green")
            text.append(f" {na(get(g, 'temp_c'), '{:.0f}', '°C')}")
            text.append(f" {na(get(g, 'power_w'), '{:.0f}')}/{na(get(g, 'power_limit_w'), '{:.0f}', ' W')}")
            used, total = get(g, "mem_used_bytes"), get(g, "mem_total_bytes")
            frac = _frac(used, total)
            text.append("\n  mem  ", style="bold")
            text.append(size_pair(used, total), style="bold red" if frac and frac > 0.95 else "")
            text.append(f"  SM {na(get(g, 'sm_clock_mhz'), '{:.0f}', ' MHz')}")
            why = get(g, "unavailable") or {}
            if why:
                text.append("\n  n/a: ", style="bold")
                text.append(", ".join(f"{k} ({short_reason(v, 16)})" for k, v in why.items())[: WIDTH - 7],
                            style="dim")
            reasons = get(g, "throttle_reasons")
            if reasons:
                text.append("\n  throttle: ", style="bold")
                text.append(", ".join(map(str, reasons)) if not isinstance(reasons, str) else reasons,
                            style="bold black on yellow")
        alloc, reserved, peak = get(data, "torch_allocated"), get(data, "torch_reserved"), get(data, "torch_max_allocated")
        if gpus and any(v is not None for v in (alloc, reserved, peak)):
            text.append("\ntorch ", style="bold")
            text.append(f"{size(alloc)} alloc · {size(reserved)} resv\n      {size(peak)} peak alloc")
        return text if text.plain else Text(NA)

    @staticmethod
    def reasons(data: Any) -> dict[str, str]:
        gpus = list(get(data, "gpus") or [])
        if not gpus:
            return {"GPU": str(get(data, "status") or "no GPU")}
        return {f"GPU {get(g, 'index')} {k}": v for g in gpus for k, v in (get(g, "unavailable") or {}).items()}
