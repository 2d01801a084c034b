"""GPU telemetry: per-GPU util, memory, temperature, power, clock, throttling; torch memory.

With no readings (no GPU, NVML missing) it shows the sampler's status text.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tuigpt.ui.widgets.reading_pane import ReadingPane
from tuigpt.run.fmt import NA, bar, na, size


def _get(obj: Any, name: str) -> Any:
    """A reading's field, None when it is missing (a reading from another tuigpt version)."""
    return getattr(obj, name, None)


def _frac(used: Any, total: Any) -> float | None:
    try:
        return float(used) / float(total) if used is not None and total else None
    except (TypeError, ValueError):
        return None


class GpuPane(ReadingPane):
    TITLE = "GPU"

    @staticmethod
    def describe(data: Any) -> Text:
        text = Text()
        gpus = list(_get(data, "gpus") or [])
        if not gpus:
            text.append(str(_get(data, "status") or "no GPU"), style="bold")
        for k, g in enumerate(gpus):
            if k:
                text.append("\n")
            text.append(f"{na(_get(g, 'index'))} ", style="bold")
            text.append(str(_get(g, "name") or "GPU"))
            util = _get(g, "util_percent")
            text.append("\n  util ", style="bold")
            text.append(f"{na(util, '{:.0f}', '%'):>4} ")
            text.append(bar(None if util is None else float(util) / 100, 8), style="green")
            used, total = _get(g, "mem_used_bytes"), _get(g, "mem_total_bytes")
            frac = _frac(used, total)
            text.append(" mem ", style="bold")
            text.append(f"{size(used)}/{size(total)}", style="bold red" if frac and frac > 0.95 else "")
            text.append("\n  ")
            text.append(na(_get(g, "temp_c"), "{:.0f}", "°C"))
            text.append(f"  {na(_get(g, 'power_w'), '{:.0f}')}/{na(_get(g, 'power_limit_w'), '{:.0f}', ' W')}")
            text.append(f"  SM {na(_get(g, 'sm_clock_mhz'), '{:.0f}', ' MHz')}")
            reasons = _get(g, "throttle_reasons")
            if reasons:
                text.append("\n  throttle: ", style="bold")
                text.append(", ".join(map(str, reasons)) if not isinstance(reasons, str) else reasons, style="bold black on yellow")
        alloc, reserved, peak = _get(data, "torch_allocated"), _get(data, "torch_reserved"), _get(data, "torch_max_allocated")
        if any(v is not None for v in (alloc, reserved, peak)):
            text.append("\ntorch ", style="bold")
            text.append(f"{size(alloc)} alloc · {size(reserved)} resv\n      {size(peak)} peak alloc")
        return text if text.plain else Text(NA)
