"""MFU now and averaged, always with the peak it is measured against (the whole label, wrapped, never cut).

Shown with ``fmt.mfu``: a value over 100% is flagged as a stale peak, never shown plain.
"""

from __future__ import annotations

from rich.text import Text

from tuigpt.run import fmt
from tuigpt.run.model import Progress
from tuigpt.run.numbers import WARMUP_ITERS, mfu_plausible
from tuigpt.ui.isolation import guarded
from tuigpt.ui.widgets.text_pane import TextPane


class MfuPane(TextPane):
    def on_mount(self) -> None:
        self.border_title = "MFU"
        self.update(Text("MFU n/a (waiting for the run)", style="dim"))

    @guarded()
    def show(self, view: Progress, peak_flops: float | None, peak_label: str) -> None:
        text = Text()
        if not peak_flops:
            text.append("MFU n/a: no peak FLOP/s known", style="bold")
            if peak_label:
                text.append(f"\n{peak_label}", style="dim")
            self.show_text(text)
            return
        now = view.last.mfu if view.last is not None else None
        text.append(fmt.bar(min(now, 1.0) if now is not None else None, 12), style="green")
        text.append(f" {fmt.mfu(now, short=True)} now\n", style="bold")
        text.append("avg ", style="bold")
        text.append(fmt.mfu(view.mfu_avg, short=True))
        text.append(f" (skips {WARMUP_ITERS} warm-up iters)" if view.mfu_avg is not None else "", style="dim")
        if not (mfu_plausible(now) and mfu_plausible(view.mfu_avg)):
            text.append(f"\n{fmt.STALE_PEAK}", style="bold yellow")
        text.append(f"\nof {peak_label}", style="dim")
        self.show_text(text)
