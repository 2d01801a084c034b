"""The MFU pane never shows an MFU over 100% as if it were true: it flags it and says what to do."""

from __future__ import annotations

from rich.text import Text

from tuigpt.run.events import IterationStats
from tuigpt.run.numbers import WARMUP_ITERS
from tuigpt.run.model import RunModel
from tuigpt.ui.widgets.mfu import MfuPane
from support.fake_run import run_started


def shown(mfu: float) -> str:
    model = RunModel()
    model.record(run_started(time=0.0))
    for i in range(WARMUP_ITERS + 3):
        model.record(IterationStats(iter=i, loss=3.0, lr=1e-3, ms_per_iter=10.0, tokens_per_sec=100.0, mfu=mfu,
                                      tokens_seen=0, train_seconds=0.0, time=0.0))
    pane = MfuPane()
    drawn: list[Text] = []
    pane.update = lambda text, **_: drawn.append(text)  # type: ignore[method-assign]
    pane.show(model.snapshot().progress, 100e9, "100 GFLOP/s (fp32, measured 2026-11-22 10:32 while busy: MFU reads high)")
    return drawn[-1].plain


def test_an_impossible_mfu_is_flagged_with_the_fix() -> None:
    text = shown(1.397)
    assert "139.7%?! now" in text and "avg 139.7%?!" in text
    assert "the peak looks stale, run `tuigpt calibrate`" in text
    assert "measured 2026-11-22 10:32 while busy" in text


def test_a_possible_mfu_is_shown_plain() -> None:
    text = shown(0.525)
    assert "52.5% now" in text and "?!" not in text and "stale" not in text
