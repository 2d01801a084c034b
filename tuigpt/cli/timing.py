"""Timing a config's training steps: one config (`tuigpt bench`, each row of `tuigpt tune`) or several in
alternating rounds (`tuigpt bench --compare`).

A :class:`Bench` builds a Trainer for the config (out_dir in a temporary directory, telemetry off), runs warm-up
steps, then timed steps through ``Trainer.train_step()`` (no eval, no checkpoint), each batch of timed steps with
the share of our CPUs other processes took meanwhile (:class:`~tuigpt.telemetry.load.LoadMeter`): a load that
changed during a comparison voids it (:mod:`tuigpt.run.rounds`).
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from tuigpt.run.errors import UserError
from tuigpt.run.numbers import eta_seconds, evals_remaining, mfu, percentile, tokens_per_sec
from tuigpt.run.rounds import LoadChange, Verdict, load_change, paired_ratios
from tuigpt.telemetry.load import MIN_WINDOW_SECONDS, LoadMeter
from tuigpt.telemetry.process_memory import peak_rss_bytes, rss_bytes

FORWARD_REPEATS = 3  # forward-only batches timed for the eval estimate (after one untimed)


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
    forward_ms: float  # one forward-only batch, as an eval does it (a GPU's pass of several, over their number)
    peak_flops: float | None
    peak_label: str
    peak_rss_bytes: int | None  # the process's high-water mark so far
    gpu_max_bytes: int | None  # None when not on CUDA
    max_iters: int | None  # None: the config ends at a time (its plan decides)
    eval_interval: int
    eval_batches: int  # an eval's, both splits (engine.evaluation.eval_batches)
    peak_warning: str | None = None  # the peak was measured on a busy machine: MFU reads high
    rss_bytes: int | None = None  # the process's resident memory right after the timed steps, the trainer alive
    compile_reason: str = ""
    round_ms: list[float] = field(default_factory=list)  # mean ms/step of each round (one round outside a comparison)
    loads: list[float | None] = field(default_factory=list)  # per round: other processes' share of our CPUs
    stretches: list[float | None] = field(default_factory=list)  # per round: the slowdown waiting for a CPU
    cpus: int = 1  # how many CPUs those shares are of
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
        return tokens_per_sec(self.tokens_per_iter, self.mean_ms)

    @property
    def mfu(self) -> float | None:
        return mfu(self.flops_per_token, self.tokens_per_sec, self.peak_flops)

    @property
    def eval_seconds(self) -> float:
        """One evaluation: its forward-only batches of both splits."""
        return self.eval_batches * self.forward_ms / 1000.0

    def projected_seconds(self, steps: int) -> float:
        """Training ``steps`` from scratch: the untrained eval, then what a run's ETA says at iteration 0 (the
        same formula the monitor and the headless lines use)."""
        eta = eta_seconds(steps, self.mean_ms, evals_remaining(0, steps, self.eval_interval), self.eval_seconds)
        return self.eval_seconds + (eta or 0.0)


# ---------------------------------------------------------------- progress


class Progress:
    """A text bar on stderr: redrawn in place with \\r on a terminal; otherwise a line of dots, or with ``lines`` one
    line per update (a log then says what was timed when)."""

    def __init__(self, label: str, total: int, out: TextIO | None = None, lines: bool = False) -> None:
        self.label = label
        self.total = max(1, total)
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.lines = lines and not self.tty
        self.dots = 0
        if not self.tty and not self.lines:
            self.out.write(f"{label} ")
            self.out.flush()

    def update(self, done: int, note: str = "") -> None:
        if self.lines:
            self.out.write(f"{self.label} {done}/{self.total}: {note}\n")
        elif self.tty:
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
        if self.lines:
            self.out.write(f"{self.label} {note}\n")
        elif self.tty:
            self.out.write(f"\r{self.label} {note}\033[K\n")
        else:
            self.out.write(f" {note}\n")
        self.out.flush()


# ---------------------------------------------------------------- measuring


class Bench:
    """One config's trainer, warmed up once, timed in as many rounds as asked, then measured for the rest."""

    def __init__(self, config: Any, label: str = "") -> None:
        from tuigpt.engine.calibration import resolve_peak
        from tuigpt.engine.device import reset_peak_memory
        from tuigpt.engine.trainer import Trainer

        self.label = label
        self.planned = config.planned  # a run that ends at a time: its steps are timed as any (nothing plans them)
        built_at = time.perf_counter()
        self.trainer = Trainer(config.without_end() if self.planned else config)
        self.setup_seconds = time.perf_counter() - built_at
        try:
            peak = resolve_peak(str(self.trainer.device), self.trainer.precision.name, self.trainer.threads)
            self.peak_flops, self.peak_label = (peak.flops, peak.label) if peak is not None else (None, "no peak known")
            self.peak_warning = peak.warning if peak is not None else None
        except Exception as exc:  # a failed calibration must not stop the bench; MFU then says n/a
            self.peak_flops, self.peak_label, self.peak_warning = None, f"no peak ({type(exc).__name__}: {exc})", None
        reset_peak_memory(self.trainer.device)
        self.first_ms = 0.0
        self.step_ms: list[float] = []
        self.round_ms: list[float] = []
        self.loads: list[float | None] = []
        self.stretches: list[float | None] = []
        self.cpus = 1

    def warm_up(self, steps: int, tick: Callable[[float], None] | None = None) -> None:
        for i in range(steps):
            ms = self.trainer.train_step().ms
            if i == 0:
                self.first_ms = ms
            if tick is not None:
                tick(ms)

    def time_round(self, steps: int, tick: Callable[[float], None] | None = None) -> float:
        """``steps`` timed steps; their mean ms/step (also kept, with the load of other processes meanwhile)."""
        meter = LoadMeter()
        times = []
        for i in range(steps):
            ms = self.trainer.train_step().ms
            times.append(ms)
            if tick is not None:
                tick(ms)
        load = meter.stop(MIN_WINDOW_SECONDS)
        self.loads.append(load.others if load is not None else None)
        self.stretches.append(load.stretch if load is not None else None)
        self.cpus = load.cpus if load is not None else self.cpus
        self.step_ms += times
        self.round_ms.append(statistics.fmean(times))
        return self.round_ms[-1]

    def forget_rounds(self) -> None:
        """Before timing again: the rounds so far are void (the load changed under them)."""
        self.step_ms, self.round_ms, self.loads, self.stretches = [], [], [], []

    def finish(self) -> BenchResult:
        """Memory, one eval's forward time, and the result; the trainer is closed and freed."""
        from tuigpt.engine.device import peak_memory
        from tuigpt.engine.evaluation import forward_ms

        trainer = self.trainer
        rss_now = rss_bytes()
        forward = forward_ms(trainer.eval_model, trainer.raw_model, trainer.sampler, trainer.stepper.autocast,
                             trainer.device, FORWARD_REPEATS, trainer.config.eval_iters)
        config = trainer.config
        result = BenchResult(
            label=self.label, n_params=trainer.n_params,
            shape=f"{config.n_layer} layers x {config.n_embd}, context {config.block_size}, batch {config.batch_size}"
                  + (f" x {config.gradient_accumulation_steps} accumulation" if config.gradient_accumulation_steps > 1
                     else ""),
            tokens_per_iter=trainer.tokens_per_iter, flops_per_token=trainer.flops_per_token,
            device=str(trainer.device), dtype=trainer.precision.name, dtype_reason=trainer.precision.reason,
            threads=trainer.threads, compile=trainer.compiled, step_ms=self.step_ms, first_step_ms=self.first_ms,
            forward_ms=forward, peak_flops=self.peak_flops, peak_label=self.peak_label,
            peak_warning=self.peak_warning, peak_rss_bytes=peak_rss_bytes(), rss_bytes=rss_now,
            compile_reason=trainer.compile_reason,
            gpu_max_bytes=peak_memory(trainer.device),
            max_iters=None if self.planned else config.max_iters, eval_interval=config.eval_interval,
            eval_batches=trainer.eval_batches, round_ms=self.round_ms, loads=self.loads, stretches=self.stretches,
            cpus=self.cpus, setup_seconds=self.setup_seconds)
        self.close()
        return result

    def close(self) -> None:
        from tuigpt.engine.device import release_memory

        if self.trainer is None:
            return
        self.trainer.close()  # its run directory's lock (the folder is a temporary one)
        self.trainer = None  # type: ignore[assignment]
        gc.collect()
        release_memory()


def bench_config(config: Any, *, steps: int, warmup: int, label: str = "",
                 progress_out: TextIO | None = None, quiet: bool = False) -> BenchResult:
    """Build a Trainer for ``config`` (out_dir must be disposable) and time ``steps`` training steps after
    ``warmup`` untimed ones, as one round."""
    bench = Bench(config, label)
    try:
        bar = None if quiet else Progress(f"bench {label}".rstrip(), warmup + steps, progress_out)
        done = 0

        def tick(phase: str) -> Callable[[float], None]:
            def update(ms: float) -> None:
                nonlocal done
                done += 1
                if bar is not None:
                    bar.update(done, phase or f"{ms:.0f} ms/step")
            return update

        bench.warm_up(warmup, tick("warm-up"))
        mean = bench.time_round(steps, tick(""))
        result = bench.finish()
        if bar is not None:
            bar.close(f"done: {mean:.1f} ms/step over {steps} steps")
        return result
    finally:
        bench.close()


@dataclass
class Comparison:
    """Several configs timed in alternating rounds: the results (the first is the reference), each one's verdict
    against the first, and the load change that voided the rounds (after one re-timing), if any."""

    results: list[BenchResult]
    load: LoadChange | None
    retimed: LoadChange | None  # the first rounds saw the load change and were timed again

    def verdict(self, result: BenchResult) -> Verdict:
        return Verdict(tuple(paired_ratios(self.results[0].round_ms, result.round_ms)), self.load)


def compare_configs(configs: list[tuple[str, Any]], *, steps: int, warmup: int, rounds: int,
                    progress_out: TextIO | None = None) -> Comparison:
    """Every (label, config) built at once (so their rounds can alternate: memory for all of them together), warmed
    up, then ``rounds`` rounds of ``steps // rounds`` steps each, the order reversed every other round. Timed again
    once when the load changed during the rounds."""
    per_round = max(1, steps // rounds)
    benches: list[Bench] = []
    try:
        for label, config in configs:
            try:
                benches.append(Bench(config, label))
            except UserError as exc:  # e.g. a dtype this device cannot do: name the variant
                raise UserError(f"--compare {label}: {exc}") from None
        bar = Progress("bench", len(benches) * (warmup + rounds * per_round), progress_out)
        done = 0

        def tick(ms: float) -> None:
            nonlocal done
            done += 1
            bar.update(done, f"{ms:.0f} ms/step")

        for bench in benches:
            bench.warm_up(warmup, tick)
        retimed = None
        for attempt in range(2):
            shares: list[float | None] = []  # in the order the rounds ran
            stretches: list[float | None] = []
            for r in range(rounds):
                for bench in benches if r % 2 == 0 else benches[::-1]:
                    bench.time_round(per_round, tick)
                    shares.append(bench.loads[-1])
                    stretches.append(bench.stretches[-1])
            changed = load_change(shares, benches[0].cpus, stretches)
            if changed is None or attempt == 1:
                break
            retimed = changed
            bar.total += len(benches) * rounds * per_round
            bar.update(done, f"the load changed ({changed.describe()}): timing again")
            for bench in benches:
                bench.forget_rounds()
        bar.close("done")
        return Comparison([bench.finish() for bench in benches], changed, retimed)
    finally:
        for bench in benches:
            bench.close()
