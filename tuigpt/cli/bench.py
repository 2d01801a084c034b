"""`tuigpt bench CONFIG`: time training steps of a config and project how long a run would take.

Builds a Trainer for the config (out_dir in a temporary directory, telemetry off), runs a few
warm-up steps, then N timed steps through ``Trainer.train_step()`` (no eval, no checkpoint),
and prints ms/step, tokens/s, MFU, memory, and the wall-clock a run of 100 ... 10k steps and of
the config's max_iters would take, with the clock time it would finish if started now.
``--compare KEY=V1,V2`` does the same for each value and prints the variants side by side.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from tuigpt.cli.args import Parser, split_overrides
from tuigpt.run import fmt
from tuigpt.run.errors import UserError
from tuigpt.run.numbers import eta_seconds, evals_in_run, evals_remaining, mfu, mfu_plausible, percentile
from tuigpt.telemetry.process_memory import peak_rss_bytes, rss_bytes

PROJECTED_STEPS = (100, 500, 1_000, 5_000, 10_000)
FORWARD_REPEATS = 3  # forward-only batches timed for the eval estimate (after one untimed)

BENCH_HELP = """\
usage: tuigpt bench CONFIG.yaml [--steps N] [--warmup W] [--compare KEY=V1,V2[,...]] [--key=value ...]

Time training steps of CONFIG (no eval, no checkpoint; nothing is written to your
checkpoints) and print ms/step (mean, p50, p90), tokens/s, MFU against this device's
peak, peak RSS and GPU memory, and the projected wall-clock for 100 / 500 / 1k / 5k /
10k steps and for the config's max_iters (evals included), each with the time it
would finish if started now.

  --steps N              timed steps (default 50)
  --warmup W             untimed steps first: allocation, autotuning, compile (default 5)
  --compare KEY=V1,V2    bench each value of a config key and print them side by side
                         with speed-ups against the first, e.g. dtype=float32,bfloat16
                         or block_size=128,256 or compile=false,true
  --key=value            override any config key, as for training (e.g. --device=cpu)
  -h, --help             this help

Progress goes to stderr, results to stdout. Exit 2 on a bad config, key or value.
"""


@dataclass
class BenchResult:
    """What one variant measured; times in milliseconds."""

    label: str  # "" for a single run, "dtype=bfloat16" in a comparison
    n_params: int
    shape: str  # "4 layers x 128, context 64, batch 12"
    tokens_per_iter: int
    flops_per_token: float
    device: str
    dtype: str
    dtype_reason: str
    threads: int
    compile: bool
    step_ms: list[float]  # the timed steps
    first_step_ms: float  # the first warm-up step: includes compile when compile is on
    forward_ms: float  # one forward-only batch, as an eval does it
    peak_flops: float | None
    peak_label: str
    peak_rss_bytes: int | None  # the process's high-water mark so far
    gpu_max_bytes: int | None  # None when not on CUDA
    max_iters: int | None  # None: the config ends at a time (its plan decides)
    eval_interval: int
    eval_iters: int
    peak_warning: str | None = None  # the peak was measured on a busy machine: MFU reads high
    rss_bytes: int | None = None  # the process's resident memory right after the timed steps, the trainer alive
    compile_reason: str = ""
    setup_seconds: float = 0.0  # building the trainer: data, model, optimizer, dtype/compile (cached or timed)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.step_ms)

    @property
    def p50_ms(self) -> float:
        return percentile(self.step_ms, 50)

    @property
    def p90_ms(self) -> float:
        return percentile(self.step_ms, 90)

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens_per_iter / (self.mean_ms / 1000.0)

    @property
    def mfu(self) -> float | None:
        return mfu(self.flops_per_token, self.tokens_per_sec, self.peak_flops)

    @property
    def eval_seconds(self) -> float:
        """One evaluation: eval_iters forward-only batches on each of the two splits."""
        return self.eval_iters * 2 * self.forward_ms / 1000.0

    def projected_seconds(self, steps: int) -> float:
        """Training ``steps`` from scratch: the untrained eval, then what a run's ETA says at iteration 0 (the
        same formula the monitor and the headless lines use)."""
        eta = eta_seconds(steps, self.mean_ms, evals_remaining(0, steps, self.eval_interval), self.eval_seconds)
        return self.eval_seconds + (eta or 0.0)


# ---------------------------------------------------------------- helpers


def finish_clock(seconds: float, now: _dt.datetime) -> str:
    """The local clock time ``seconds`` after ``now`` (fmt.clock's style)."""
    return fmt.clock(now.timestamp() + seconds, now.timestamp())


# ---------------------------------------------------------------- progress


class Progress:
    """A text bar on stderr: redrawn in place with \\r on a terminal, a line of dots otherwise."""

    def __init__(self, label: str, total: int, out: TextIO | None = None) -> None:
        self.label = label
        self.total = max(1, total)
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.dots = 0
        if not self.tty:
            self.out.write(f"{label} ")
            self.out.flush()

    def update(self, done: int, note: str = "") -> None:
        if self.tty:
            width = 30
            filled = width * done // self.total
            self.out.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {note}"
                           f"\033[K")
        else:
            want = 20 * done // self.total  # at most 20 dots a variant: a log stays readable
            self.out.write("." * (want - self.dots))
            self.dots = want
        self.out.flush()

    def close(self, note: str) -> None:
        if self.tty:
            self.out.write(f"\r{self.label} {note}\033[K\n")
        else:
            self.out.write(f" {note}\n")
        self.out.flush()


# ---------------------------------------------------------------- measuring


def bench_config(config: Any, *, steps: int, warmup: int, label: str = "",
                 progress_out: TextIO | None = None, quiet: bool = False) -> BenchResult:
    """Build a Trainer for ``config`` (out_dir must be disposable) and time its training steps."""
    import torch

    from tuigpt.engine.calibration import resolve_peak
    from tuigpt.engine.trainer import Trainer

    planned = config.planned  # a run that ends at a time: its steps are timed as any (no plan, nothing ends)
    config = config.without_end() if planned else config
    built_at = time.perf_counter()
    trainer = Trainer(config)
    setup_seconds = time.perf_counter() - built_at
    try:
        peak = resolve_peak(str(trainer.device), trainer.precision.name, trainer.threads)
        peak_flops, peak_label = (peak.flops, peak.label) if peak is not None else (None, "no peak known")
        peak_warning = peak.warning if peak is not None else None
    except Exception as exc:  # a failed calibration must not stop the bench; MFU then says n/a
        peak_flops, peak_label, peak_warning = None, f"no peak ({type(exc).__name__}: {exc})", None
    on_cuda = trainer.device.type == "cuda"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)

    bar = None if quiet else Progress(f"bench {label}".rstrip(), warmup + steps, progress_out)
    first_ms = 0.0
    times: list[float] = []
    for i in range(warmup + steps):
        loss, ms = trainer.train_step(run_ahead=i < warmup + steps - 1)  # the last leaves none queued
        if i == 0:
            first_ms = ms
        if i >= warmup:
            times.append(ms)
        if bar is not None:
            phase = "warm-up" if i < warmup else f"{ms:.0f} ms/step"
            bar.update(i + 1, phase)
    rss_now = rss_bytes()
    forward_ms = _time_forward(trainer)
    if bar is not None:
        bar.close(f"done: {statistics.fmean(times):.1f} ms/step over {steps} steps")

    config_ = trainer.config
    result = BenchResult(
        label=label, n_params=trainer.n_params,
        shape=f"{config_.n_layer} layers x {config_.n_embd}, context {config_.block_size}, batch {config_.batch_size}"
              + (f" x {config_.gradient_accumulation_steps} accumulation" if config_.gradient_accumulation_steps > 1
                 else ""),
        tokens_per_iter=trainer.tokens_per_iter, flops_per_token=trainer.flops_per_token,
        device=str(trainer.device), dtype=trainer.precision.name, dtype_reason=trainer.precision.reason,
        threads=trainer.threads, compile=trainer.compiled, step_ms=times, first_step_ms=first_ms,
        forward_ms=forward_ms, peak_flops=peak_flops, peak_label=peak_label, peak_warning=peak_warning,
        peak_rss_bytes=peak_rss_bytes(), rss_bytes=rss_now, compile_reason=trainer.compile_reason,
        gpu_max_bytes=int(torch.cuda.max_memory_allocated(trainer.device)) if on_cuda else None,
        max_iters=None if planned else config_.max_iters, eval_interval=config_.eval_interval,
        eval_iters=config_.eval_iters, setup_seconds=setup_seconds)
    trainer.close()  # its run directory's lock (the folder is a temporary one)
    del trainer
    gc.collect()
    if on_cuda:
        torch.cuda.empty_cache()
    return result


def _time_forward(trainer: Any) -> float:
    """Milliseconds of one forward-only batch in eval mode under the run's autocast: what evals cost."""
    import torch

    precision = trainer.precision
    autocast: Callable[[], Any] = (
        (lambda: torch.autocast(device_type=trainer.device.type, dtype=precision.torch_dtype))
        if precision.autocast else contextlib.nullcontext)
    trainer.raw_model.eval()
    samples = []
    try:
        with torch.no_grad():
            for i in range(FORWARD_REPEATS + 1):  # the first one untimed (eval-mode recompile, allocation)
                x, y = trainer.sampler.get_batch("val")
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize(trainer.device)
                t0 = time.perf_counter()
                with autocast():
                    _, loss = trainer.model(x, y)
                loss.item()
                if i:
                    samples.append((time.perf_counter() - t0) * 1000.0)
    finally:
        trainer.raw_model.train()
    return statistics.median(samples)


# ---------------------------------------------------------------- reporting


def report(result: BenchResult, now: _dt.datetime, out: TextIO) -> None:
    """The full report of one run."""
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"model      {fmt.count(result.n_params)} params ({result.shape}; {result.tokens_per_iter:,} tokens/step)")
    p(f"device     {result.device} · {result.threads} threads · dtype {result.dtype} ({result.dtype_reason}) · "
      f"compile {'on' if result.compile else 'off'} ({result.compile_reason})")
    p(f"steps      {len(result.step_ms)} timed after warm-up · first step {fmt.ms(result.first_step_ms)}"
      + (" (includes compile)" if result.compile else ""))
    p("")
    p(f"ms/step    mean {result.mean_ms:.1f} · p50 {result.p50_ms:.1f} · p90 {result.p90_ms:.1f}")
    p(f"tokens/s   {result.tokens_per_sec:,.0f}")
    p(f"MFU        {fmt.mfu(result.mfu)} of {result.peak_label} · {result.flops_per_token / 1e6:.2f} MFLOP/token")
    p(f"memory     peak RSS {fmt.size(result.peak_rss_bytes)} · GPU max allocated "
      f"{fmt.size(result.gpu_max_bytes)}")
    p("")
    p(f"projected wall-clock from now (train at {result.mean_ms:.1f} ms/step + an eval every {result.eval_interval} "
      f"steps at {result.eval_seconds:.1f} s: {result.eval_iters} x 2 splits x {result.forward_ms:.1f} ms forward; "
      f"checkpoint writes not counted)")
    rows = [(f"{fmt.steps(s)} steps", s) for s in PROJECTED_STEPS]
    if result.max_iters is not None:
        rows.append((f"max_iters {result.max_iters:,}", result.max_iters))
    width = max(len(name) for name, _ in rows)
    for name, steps in rows:
        seconds = result.projected_seconds(steps)
        p(f"  {name:<{width}}  {fmt.duration(seconds):>7}  → {finish_clock(seconds, now)}"
          f"   ({evals_in_run(steps, result.eval_interval)} evals)")


def report_comparison(key: str, results: list[BenchResult], now: _dt.datetime, out: TextIO) -> None:
    """Variants side by side, speed-ups against the first.

    MFU compares variants only against one peak: when their peaks differ (dtype=float32,bfloat16 divides by the
    fp32 and the bf16 peak) the common column divides every row by the first variant's peak, so it ranks
    throughput like tokens/s, and a second column gives each row's MFU against its own peak.
    """
    p = lambda *a: print(*a, file=out)  # noqa: E731
    base = results[0]
    p(f"{base.device} · {base.threads} threads · {len(base.step_ms)} timed steps each · speed-up from mean ms/step "
      f"against {base.label}")
    for r in results:
        p(f"  {r.label}: {fmt.count(r.n_params)} params ({r.shape}), dtype {r.dtype} ({r.dtype_reason}), "
          f"compile {'on' if r.compile else 'off'}, first step {fmt.ms(r.first_step_ms)}, peak {r.peak_label}")
    one_peak = all(r.peak_flops == base.peak_flops for r in results)
    common = [mfu(r.flops_per_token, r.tokens_per_sec, base.peak_flops) for r in results]
    p("\n" + (f"MFU: every variant against {base.peak_label}" if one_peak else
                f"MFU common: every variant against {base.label}'s peak, {base.peak_label} (ranks throughput); "
                f"MFU own: each against its own peak (above)"))
    header = ["variant", "ms/step", "p50 ms", "p90 ms", "tokens/s", "MFU" if one_peak else "MFU common",
              *([] if one_peak else ["MFU own"]), "speed-up", f"max_iters {base.max_iters or 1000:,}"]
    rows = []
    for r, shared in zip(results, common):
        seconds = r.projected_seconds(r.max_iters or 1000)  # a planned config: 1,000 steps as a yardstick
        rows.append([r.label, f"{r.mean_ms:.1f}", f"{r.p50_ms:.1f}", f"{r.p90_ms:.1f}", f"{r.tokens_per_sec:,.0f}",
                     fmt.mfu(shared, short=True), *([] if one_peak else [fmt.mfu(r.mfu, short=True)]),
                     f"{r.tokens_per_sec / base.tokens_per_sec:.2f}x",
                     f"{fmt.duration(seconds)} → {finish_clock(seconds, now)}"])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    align = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(row, widths)))
    for row in [header, ["-" * w for w in widths], *rows]:
        p(align(row))
    if any(not mfu_plausible(v) for v in [*common, *(r.mfu for r in results)]):
        p(f"?! over 100%: {fmt.STALE_PEAK}")


# ---------------------------------------------------------------- command line


def parse_compare(text: str) -> tuple[str, list[str]]:
    """``KEY=V1,V2`` into the key and its values, each typed and checked like a --key=value override."""
    from tuigpt.run.configfile import parse_override

    key, eq, values_text = text.partition("=")
    key = key.strip().removeprefix("--").replace("-", "_")
    values = [v.strip() for v in values_text.split(",")] if eq else []
    if not key or not eq or len(values) < 2 or not all(values):
        raise UserError(f"--compare {fmt.shown(text)} must look like KEY=V1,V2[,...] with at least two values "
                        f"(e.g. --compare dtype=float32,bfloat16)")
    if key in ("out_dir", "run_name"):
        raise UserError(f"--compare {key}=... changes nothing the bench measures: compare a model, batch or system "
                        f"key (dtype, compile, block_size, batch_size, num_threads, ...)")
    for value in values:
        try:
            parse_override(key, value)
        except UserError as exc:
            raise UserError(f"--compare {key}: {exc}") from None
    return key, values


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(BENCH_HELP, end="")
        return 0
    parser = Parser(prog="tuigpt bench", add_help=False, allow_abbrev=False)
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compare", default=None)
    ns, rest = parser.parse_known_args(args)
    if ns.config.startswith("--"):
        raise UserError(f"the first argument must be a config file, not {fmt.shown(ns.config)} "
                        f"(e.g. tuigpt bench configs/train_cpu_optimized.yaml)")
    if ns.steps < 1:
        raise UserError(f"--steps must be a positive integer, not {ns.steps}")
    if ns.warmup < 0:
        raise UserError(f"--warmup must be 0 or more, not {ns.warmup}")

    import dataclasses

    from tuigpt.run.config import RESUME, SCRATCH
    from tuigpt.run.configfile import load_config

    overrides = split_overrides(rest)
    key, values = parse_compare(ns.compare) if ns.compare else ("", [""])
    with tempfile.TemporaryDirectory(prefix="tuigpt-bench-") as tmp:
        # every variant is checked before any is timed: a typo in the third value fails in a second, not minutes
        configs = []
        for i, value in enumerate(values):
            # a nanoGPT-style .py config names the run's folder with out_dir alone
            where = ({"out_dir": f"{tmp}/bench{i}"} if ns.config.endswith(".py")
                     else {"out_dir": tmp, "run_name": f"bench{i}"})
            variant = dict(overrides, **where, telemetry_interval="0")
            if key:
                variant[key] = value
            try:
                config = load_config(ns.config, variant)
                # init_from=resume: the same model, timed from fresh weights (nothing of the run is touched)
                configs.append(dataclasses.replace(config, init_from=SCRATCH) if config.init_from == RESUME
                               else config)
            except UserError as exc:
                raise UserError(f"--compare {key}={value}: {exc}" if key else str(exc)) from None
        results = []
        for value, config in zip(values, configs):
            label = f"{key}={value}" if key else ""
            try:
                results.append(bench_config(config, steps=ns.steps, warmup=ns.warmup, label=label))
            except UserError as exc:  # e.g. a dtype this device cannot do: name the variant
                raise UserError(f"--compare {label}: {exc}" if key else str(exc)) from None
    for warning in dict.fromkeys(r.peak_warning for r in results if r.peak_warning):
        print(f"warning: {warning}", file=sys.stderr)
    now = _dt.datetime.now()
    print(f"tuigpt bench {os.path.basename(ns.config)}" + (f" {' '.join(rest)}" if rest else "")
          + f" · {now:%Y-%m-%d %H:%M}")
    if key:
        report_comparison(key, results, now, sys.stdout)
    else:
        report(results[0], now, sys.stdout)
    return 0
