"""`tuigpt bench CONFIG`: time training steps of a config and project how long a run would take.

Builds a Trainer for the config (out_dir in a temporary directory, telemetry off), runs a few
warm-up steps, then N timed steps through ``Trainer.train_step()`` (no eval, no checkpoint),
and prints ms/step, tokens/s, MFU, memory, and the wall-clock a run of 100 ... 10k steps and of
the config's max_iters would take, with the clock time it would finish if started now.
``--compare KEY=V1,V2`` times every value in alternating rounds and prints the variants side by side, with a
speed-up only where it beats the round-to-round spread under a steady load (:mod:`tuigpt.run.rounds`).
The timing itself: :mod:`tuigpt.cli.timing`.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import tempfile
from typing import TextIO

from tuigpt.cli.args import Parser, split_overrides
from tuigpt.cli.timing import BenchResult, Comparison, bench_config, compare_configs
from tuigpt.run import fmt
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_ERROR, EXIT_OK
from tuigpt.run.numbers import evals_in_run, mfu, mfu_plausible
from tuigpt.telemetry.load import MIN_WINDOW_SECONDS, LoadMeter

PROJECTED_STEPS = (100, 500, 1_000, 5_000, 10_000)

BENCH_HELP = """\
usage: tuigpt bench CONFIG.yaml [--steps N] [--warmup W] [--compare KEY=V1,V2[,...]] [--rounds R]
                    [--key=value ...]

Time training steps of CONFIG (no eval, no checkpoint; nothing is written to your
checkpoints) and print ms/step (mean, p50, p90), tokens/s, MFU against this device's
peak, peak RSS and GPU memory, and the projected wall-clock for 100 / 500 / 1k / 5k /
10k steps and for the config's max_iters (evals included), each with the time it
would finish if started now.

  --steps N              timed steps (default 50; with --compare, each variant's, over the rounds)
  --warmup W             untimed steps first: allocation, autotuning, compile (default 5)
  --compare KEY=V1,V2    bench each value of a config key and print them side by side
                         with speed-ups against the first, e.g. dtype=float32,bfloat16
                         or block_size=128,256 or compile=false,true. The variants are
                         built together (memory for all of them at once) and timed in
                         alternating rounds; a speed-up is called faster or slower only
                         beyond its round-to-round spread, and a load that changed while
                         timing (another process started or stopped) is timed again once,
                         then refused (exit 1)
  --rounds R             rounds of a --compare (default 5, at least 2)
  --key=value            override any config key, as for training (e.g. --device=cpu)
  -h, --help             this help

Progress goes to stderr, results to stdout. Exit 2 on a bad config, key or value.
"""


# ---------------------------------------------------------------- helpers


def finish_clock(seconds: float, now: _dt.datetime) -> str:
    """The local clock time ``seconds`` after ``now`` (fmt.clock's style)."""
    return fmt.clock(now.timestamp() + seconds, now.timestamp())


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
      f"steps at {result.eval_seconds:.1f} s: {result.eval_batches} batches x {result.forward_ms:.1f} ms forward; "
      f"checkpoint writes not counted)")
    rows = [(f"{fmt.steps(s)} steps", s) for s in PROJECTED_STEPS]
    if result.max_iters is not None:  # a config that ends at a time has no max_iters to project
        rows.append((f"max_iters {result.max_iters:,}", result.max_iters))
    width = max(len(name) for name, _ in rows)
    for name, steps in rows:
        seconds = result.projected_seconds(steps)
        p(f"  {name:<{width}}  {fmt.duration(seconds):>7}  → {finish_clock(seconds, now)}"
          f"   ({evals_in_run(steps, result.eval_interval)} evals)")


def report_comparison(key: str, comparison: Comparison, now: _dt.datetime, out: TextIO) -> bool:
    """Variants side by side, speed-ups against the first with their round-to-round spread, and a verdict line
    per variant; False when the load changed while timing (twice), so no variant is called faster or slower.

    MFU compares variants only against one peak: when their peaks differ (dtype=float32,bfloat16 divides by the
    fp32 and the bf16 peak) the common column divides every row by the first variant's peak, so it ranks
    throughput like tokens/s, and a second column gives each row's MFU against its own peak.
    """
    p = lambda *a: print(*a, file=out)  # noqa: E731
    results = comparison.results
    base = results[0]
    p(f"{base.device} · {base.threads} threads · {len(base.step_ms)} timed steps each in {len(base.round_ms)} "
      f"alternating rounds · speed-up: {base.label}'s ms/step over each variant's, the median round ± half the "
      f"range of the rounds")
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
        judged = comparison.verdict(r)
        speed = "1.00x" if r is base else (judged.describe().split(" over ")[0] if judged.speedup else "n/a")
        rows.append([r.label, f"{r.mean_ms:.1f}", f"{r.p50_ms:.1f}", f"{r.p90_ms:.1f}", f"{r.tokens_per_sec:,.0f}",
                     fmt.mfu(shared, short=True), *([] if one_peak else [fmt.mfu(r.mfu, short=True)]),
                     speed, f"{fmt.duration(seconds)} → {finish_clock(seconds, now)}"])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    align = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(row, widths)))
    for row in [header, ["-" * w for w in widths], *rows]:
        p(align(row))
    if any(not mfu_plausible(v) for v in [*common, *(r.mfu for r in results)]):
        p(f"?! over 100%: {fmt.STALE_PEAK}")
    p("")
    if comparison.retimed is not None:
        p(f"the machine's load changed during the first rounds ({comparison.retimed.describe()}): timed again")
    if comparison.load is not None:
        p(f"no verdict: the machine's load changed while timing, twice ({comparison.load.describe()}); the "
          f"speed-ups above mix a quiet and a busy machine. Run again when the machine is steady")
        return False
    for r in results[1:]:
        judged = comparison.verdict(r)
        if judged.faster:
            p(f"verdict: {r.label} is faster than {base.label}: {judged.describe()}")
        elif judged.speedup is not None and judged.spread is not None and 1.0 - judged.speedup > judged.spread:
            p(f"verdict: {r.label} is slower than {base.label}: {judged.describe()}")
        else:
            p(f"verdict: {r.label} is not clearly faster or slower than {base.label}: {judged.why_not()}")
    return True


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
    parser.add_argument("--rounds", type=int, default=5)
    ns, rest = parser.parse_known_args(args)
    if ns.config.startswith("--"):
        raise UserError(f"the first argument must be a config file, not {fmt.shown(ns.config)} "
                        f"(e.g. tuigpt bench configs/train_cpu_optimized.yaml)")
    if ns.steps < 1:
        raise UserError(f"--steps must be a positive integer, not {ns.steps}")
    if ns.warmup < 0:
        raise UserError(f"--warmup must be 0 or more, not {ns.warmup}")
    if ns.rounds < 2:
        raise UserError(f"--rounds must be at least 2, not {ns.rounds}: one round measures no round-to-round "
                        f"spread to judge a speed-up by")
    if ns.compare and ns.steps < ns.rounds:
        raise UserError(f"--steps {ns.steps} is fewer than --rounds {ns.rounds}: each round times at least one step")

    import dataclasses

    from tuigpt.run.config import RESUME, SCRATCH
    from tuigpt.run.configfile import load_config

    overrides = split_overrides(rest, parser.options())
    key, values = parse_compare(ns.compare) if ns.compare else ("", [""])
    load = None
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
        if key:
            comparison = compare_configs([(f"{key}={value}", config) for value, config in zip(values, configs)],
                                         steps=ns.steps, warmup=ns.warmup, rounds=ns.rounds)
            results = comparison.results
        else:
            meter = LoadMeter()
            results = [bench_config(configs[0], steps=ns.steps, warmup=ns.warmup)]
            load = meter.stop(min_seconds=MIN_WINDOW_SECONDS)
    for warning in dict.fromkeys(r.peak_warning for r in results if r.peak_warning):
        print(f"warning: {warning}", file=sys.stderr)
    now = _dt.datetime.now()
    print(f"tuigpt bench {os.path.basename(ns.config)}" + (f" {' '.join(rest)}" if rest else "")
          + f" · {now:%Y-%m-%d %H:%M}")
    if key:
        return EXIT_OK if report_comparison(key, comparison, now, sys.stdout) else EXIT_ERROR
    report(results[0], now, sys.stdout)
    if load is not None:  # the figures are this machine's under that load: say which (a busy box read 3 s steps)
        busy = "; the figures above are this machine's speed under that load, not its own" if load.busy else ""
        print(f"\nload while timing: {load.describe()}{busy}")
    return EXIT_OK
