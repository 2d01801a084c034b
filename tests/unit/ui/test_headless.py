"""The headless printer's lines, fed a scripted event stream."""

from __future__ import annotations

import io

from tuigpt.run.events import (CheckpointWritten, EvalProgress, EvalResult, IterationStats, NanDetected, Notice, Rewound,
                               RunFailed, RunFinished, RunStarted, RunState, Stalled, StateChanged)
from tuigpt.ui.headless import HeadlessPrinter


def started(**kw) -> RunStarted:
    values = dict(run_name="tiny", run_dir="checkpoints/tiny", config_path="c.yaml", config={"log_interval": 10},
                  n_params=800_000, device="cpu", dtype="bfloat16", dtype_reason="auto: CPU has AMX_BF16",
                  start_iter=0, max_iters=100, tokens_per_iter=768, flops_per_token=5_000_000, peak_flops=2e11,
                  peak_label="200 GFLOP/s (fp32, measured)", eval_interval=50, resumed=False)
    values.update(kw)
    return RunStarted(**values)


def stats(i: int, ms: float = 40.0) -> IterationStats:
    return IterationStats(iter=i, loss=2.5, lr=1e-3, ms_per_iter=ms, tokens_per_sec=768 / (ms / 1000), mfu=0.5,
                          tokens_seen=i * 768, train_seconds=i * ms / 1000)


def test_first_line_says_device_dtype_reason_and_peak() -> None:
    out = io.StringIO()
    HeadlessPrinter(out)(started())
    line = out.getvalue().strip()
    assert line.startswith("tuigpt training tiny | 0.80M params | cpu, bfloat16 (auto: CPU has AMX_BF16)")
    assert "MFU against 200 GFLOP/s (fp32, measured)" in line


def test_iteration_lines_every_log_interval_with_eta() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    printer(started())
    for i in range(1, 21):
        printer(stats(i))
    lines = out.getvalue().strip().splitlines()[1:]
    assert len(lines) == 2
    assert lines[1] == "iter 20/100 | loss 2.5000 | lr 1.00e-03 | 40.0 ms/it | 19.2k tok/s | MFU 50.0% | ETA 3s"


def test_eta_counts_the_evals_still_to_come() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    printer(started())
    printer(EvalResult(iter=0, train_loss=4.2, val_loss=4.2, best_val_loss=4.2, is_best=True, seconds=10.0))
    for i in range(1, 11):
        printer(stats(i))
    # 90 iterations x 40 ms = 3.6 s, plus 2 evals (50, 100) x 10 s
    assert out.getvalue().strip().splitlines()[-1].endswith("ETA 24s")


def test_eval_checkpoint_notice_pause_and_summary_lines() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    printer(started())
    printer(EvalResult(iter=50, train_loss=2.1, val_loss=2.2, best_val_loss=2.2, is_best=True, seconds=1.25))
    printer(CheckpointWritten(iter=50, path="checkpoints/tiny/last.pt", reason="eval", seconds=0.02))
    printer(Notice(level="warning", message="likely thermal throttling"))
    printer(StateChanged(state=RunState.PAUSED, iter=51))
    printer(StateChanged(state=RunState.RUNNING, iter=51))
    printer(RunFinished(iter=100, reason="done", best_val_loss=2.2, last_val_loss=2.3, wall_seconds=75,
                        train_seconds=60, eval_seconds=14, checkpoint_seconds=1, last_checkpoint="checkpoints/tiny/last.pt",
                        tokens_seen=76_800))
    lines = out.getvalue().strip().splitlines()[1:]
    assert lines == [
        "eval iter 50 | train loss 2.1000 | val loss 2.2000 (best) | 1.2s",
        "checkpoint checkpoints/tiny/last.pt (iter 50, eval, 0.02s)",
        "warning: likely thermal throttling",
        "paused at iter 51",
        "resumed at iter 51",
        "done at iter 100 in 1m15s (train 1m00s, eval 14s, checkpoints 1s) | best val loss 2.2000 | "
        "checkpoint checkpoints/tiny/last.pt",
        "!!! ALERT [done] tiny: finished at iter 100, best val 2.2000",  # not a terminal: no bell, no OSC
    ]


def test_failure_line_names_the_last_good_checkpoint() -> None:
    out = io.StringIO()
    HeadlessPrinter(out)(RunFailed(iter=7, message="RuntimeError: boom", traceback="...", last_checkpoint="x/last.pt"))
    assert out.getvalue().startswith("error at iter 7: RuntimeError: boom | last good checkpoint: x/last.pt")


def test_iteration_lines_add_the_gradient_norm_and_clip_rate() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    printer(started())
    printer(IterationStats(iter=10, loss=2.5, lr=1e-3, ms_per_iter=40.0, tokens_per_sec=19200, mfu=0.5, tokens_seen=7680,
                           train_seconds=0.4, grad_norm=0.8531, clipped=False, clip_rate=0.12))
    assert "| lr 1.00e-03 | grad 0.853 (12% clipped) | 40.0 ms/it" in out.getvalue()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nan_forensics_rewind_and_stall_lines_and_alerts_ring_a_terminal() -> None:
    out = Tty()
    printer = HeadlessPrinter(out)
    printer(started())
    printer(NanDetected(iter=31, cause="loss", loss=float("nan"), grad_norm=float("nan"), lr=6e-4,
                        layers=[{"name": "embed", "grad": float("inf")}, {"name": "block 0", "grad": 2.5}],
                        recent=[{"iter": 29, "loss": 2.4, "grad_norm": 0.9, "lr": 6e-4},
                                {"iter": 30, "loss": 2.6, "grad_norm": 40.0, "lr": 6e-4}],
                        recent_layers=[{"iter": 30, "layers": [{"name": "embed", "grad": 30.0, "weight": 12.0,
                                                                 "update": 0.01}]}],
                        batch_starts=[[101, 202, 303]], action="rewind"))
    printer(Rewound(from_iter=31, iter=20, checkpoint="runs/tiny/last.pt", lr_scale=0.5, rewinds=1, max_rewinds=3,
                    skipped=[31]))
    printer(Stalled(iter=44, seconds=42.0, median_ms=120.0, threshold_s=30.0))
    text = out.getvalue()
    assert "NaN/Inf loss at iteration 31 (lr 6.00e-04): loss nan, grad norm nan → rewind" in text
    assert "gradient norm per group at that step: embed inf · block 0 2.5" in text
    assert "last good steps: iter 29 loss 2.4 grad 0.9 · iter 30 loss 2.6 grad 40" in text
    assert "last logged group norms (iter 30; grad weight update): embed 30 12 0.01" in text
    assert "batch windows (train token offsets): 101, 202, 303" in text
    assert "rewound 1 of 3 after the NaN at iteration 31: restarted from runs/tiny/last.pt at iteration 20; " \
           "learning rate now ×0.5" in text
    assert "warning: stalled: no iteration for 42 s after iteration 44" in text
    alerts = [line for line in text.splitlines() if "!!! ALERT" in line]
    assert [a.split("!!! ALERT ")[1].split("]")[0] for a in alerts] == ["[nan", "[stall"]
    assert all(a.startswith("\x07") and "\x1b]9;tuigpt " in a for a in alerts)  # a terminal: bell + notification


def test_alerts_false_prints_no_alert_lines() -> None:
    out = Tty()
    printer = HeadlessPrinter(out)
    printer(started(config={"log_interval": 10, "alerts": False}))
    printer(Stalled(iter=44, seconds=42.0, median_ms=120.0, threshold_s=30.0))
    assert "ALERT" not in out.getvalue() and "\x07" not in out.getvalue() and "stalled" in out.getvalue()


def test_eval_progress_lines_for_the_first_eval_and_long_ones_only() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    printer(started())
    printer(EvalProgress(iter=0, done=1, total=40, seconds=0.6))  # the untrained eval: said at once
    printer(EvalProgress(iter=0, done=9, total=40, seconds=5.0))  # then every 10 s only
    printer(EvalProgress(iter=0, done=30, total=40, seconds=11.0))
    printer(EvalResult(iter=0, train_loss=4.2, val_loss=4.2, best_val_loss=4.2, is_best=True, seconds=14.0))
    printer(EvalProgress(iter=50, done=1, total=40, seconds=0.1))  # a quick later eval: only its result
    printer(EvalProgress(iter=50, done=20, total=40, seconds=2.5))  # a slow one: once it took 2 s
    lines = out.getvalue().strip().splitlines()[1:]
    assert lines == ["eval iter 0 (the untrained model) | evaluating 1/40 batches | 1s",
                     "eval iter 0 (the untrained model) | evaluating 30/40 batches | 11s",
                     "eval iter 0 | train loss 4.2000 | val loss 4.2000 (best) | 14.0s",
                     "eval iter 50 | evaluating 20/40 batches | 2s"]


def test_an_eval_line_shows_bits_per_byte_beside_each_loss() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(out)
    printer(started())
    printer(EvalResult(iter=50, train_loss=2.1, val_loss=2.2, best_val_loss=2.2, is_best=True, seconds=1.2,
                       train_bpb=3.0297, val_bpb=3.1740))
    assert out.getvalue().strip().splitlines()[-1] == \
        "eval iter 50 | train loss 2.1000 · 3.030 bpb | val loss 2.2000 · 3.174 bpb (best) | 1.2s"


def test_a_run_stopped_with_a_checkpoint_says_how_to_continue_it() -> None:
    from tuigpt.run.events import RunFinished
    from tuigpt.run.wording import lines_for

    def ending(reason: str, checkpoint: str | None) -> str:
        return lines_for(RunFinished(iter=588, reason=reason, best_val_loss=1.9, last_val_loss=1.9, wall_seconds=60,
                                     train_seconds=50, eval_seconds=5, checkpoint_seconds=1,
                                     last_checkpoint=checkpoint, tokens_seen=1))[0].text

    assert ending("stopped", "runs/x/last.pt").endswith("last.pt (continue: the same command with --resume)")
    assert "--resume" not in ending("done", "runs/x/last.pt") and "--resume" not in ending("stopped", None)
