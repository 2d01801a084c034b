"""A deterministic fake RunController for UI tests and demos.

``FakeController(script)`` publishes a scripted event stream (fixed times) when
started and records every command it is sent. With ``react=True`` it answers
commands the way the trainer would (TogglePause -> StateChanged PAUSED, Stop ->
RunFinished, ...), synchronously, so Pilot tests can assert on the result.

``LiveFakeController`` runs a fake training loop on a thread in real time, for
looking at the app by hand or in tmux:

    .venv/bin/python -m tests.fake_run            # a live fake run
    .venv/bin/python -m tests.fake_run --static   # the snapshot tests' stream
    .venv/bin/python -m tests.fake_run --fail     # a run that fails at iter 300
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tuigpt.run.commands import CheckpointNow, Command, Sample, SetEvalInterval, Stop, TogglePause
from tuigpt.run.readings import CpuSnapshot, GpuReading, GpuSnapshot
from tuigpt.run.events import CheckpointWritten, EvalIntervalChanged, EvalResult, Event, EventBus, HistoryLoaded, IterationStats, Notice, RunFailed, RunFinished, RunStarted, RunState, SampleGenerated, StateChanged, TelemetrySnapshot

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: every scripted event is timed from here
MS_PER_ITER = 120.0
TOKENS_PER_ITER = 16_384
RUN_DIR = "checkpoints/shakespeare-char"
SAMPLE_TEXT = "ROMEO:\nWhat light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\nJULIET:\nAy me!"


def fake_loss(i: int) -> float:
    """A smooth decaying curve with deterministic wiggle, like a char-level GPT's loss."""
    return 1.45 + 2.8 * math.exp(-i / 180.0) + 0.06 * math.sin(i * 1.7) + 0.03 * math.sin(i * 0.31)


def run_started(*, max_iters: int = 5000, eval_interval: int = 250, start_iter: int = 0, peak: bool = True, time: float = T0) -> RunStarted:
    return RunStarted(
        run_name="shakespeare-char",
        run_dir=RUN_DIR,
        config_path="configs/shakespeare_char.py",
        config={"batch_size": 64, "block_size": 256, "max_new_tokens": 200, "log_interval": 10},
        n_params=10_745_088,
        device="cuda",
        dtype="bfloat16",
        dtype_reason="GPU supports bf16",
        start_iter=start_iter,
        max_iters=max_iters,
        tokens_per_iter=TOKENS_PER_ITER,
        flops_per_token=6 * 10_745_088,
        peak_flops=989e12 if peak else None,
        peak_label="H100 SXM bf16 dense 989 TFLOPS" if peak else "unknown device",
        eval_interval=eval_interval,
        resumed=start_iter > 0,
        time=time,
    )


def iteration(i: int, *, time: float, start_iter: int = 0, mfu: float | None = 0.38,
              ms: float | None = None, train: float | None = None) -> IterationStats:
    done = i - start_iter + 1
    # the run's training time so far (``train``), else steps of ``ms`` each (the default's wiggle averages out)
    step = ms if ms is not None else MS_PER_ITER
    ms = ms if ms is not None else MS_PER_ITER + (30.0 if i % 97 == 0 else 0.0) + 4.0 * math.sin(i * 0.9)
    return IterationStats(
        iter=i,
        loss=fake_loss(i),
        lr=1e-3,
        ms_per_iter=ms,
        tokens_per_sec=TOKENS_PER_ITER / (ms / 1000.0),
        mfu=None if mfu is None else mfu + 0.01 * math.sin(i * 0.5),
        tokens_seen=(i + 1) * TOKENS_PER_ITER,
        train_seconds=train if train is not None else done * step / 1000.0,
        time=time,
    )


def cpu_data(**overrides: Any) -> CpuSnapshot:
    values: dict[str, Any] = dict(
        per_core_percent=[92.0, 88.5, 15.0, 7.5, 100.0, 3.0, 45.0, 60.0],
        freq_mhz=3150.0,
        freq_min_mhz=800.0,
        freq_max_mhz=4500.0,
        per_core_freq_mhz=None,
        temperatures={"Package id 0": 71.0, "Core 0": 69.0},
        temp_max_c=71.0,
        throttle_count=0,
        throttling=False,
        package_power_w=48.5,
        load_avg=(3.12, 2.80, 2.41),
        process_rss_bytes=2_340_000_000,
        mem_used_bytes=18 * 2**30,
        mem_total_bytes=64 * 2**30,
        own_share=0.48,
        others_share=0.03,
        share_cpus=8,
        stretch=1.04,
        contended=False,
    )
    values.update(overrides)
    return CpuSnapshot(**values)


def gpu_data(n: int = 1, **overrides: Any) -> GpuSnapshot:
    gpus = [
        GpuReading(index=k, name="NVIDIA H100 80GB HBM3", mem_used_bytes=41 * 2**30, mem_total_bytes=80 * 2**30,
                   util_percent=97.0, temp_c=64.0, power_w=512.0, power_limit_w=700.0, sm_clock_mhz=1980.0,
                   throttle_reasons=[])
        for k in range(n)
    ]
    values: dict[str, Any] = dict(gpus=gpus, torch_allocated=12 * 2**30, torch_reserved=14 * 2**30,
                                  torch_max_allocated=13 * 2**30, status="ok")
    values.update(overrides)
    return GpuSnapshot(**values)


def demo_script(*, iters: int = 1200, max_iters: int = 5000, eval_interval: int = 250, start_iter: int = 0, peak: bool = True) -> list[Event]:
    """A run part-way through: started, some evals, a checkpoint, a sample, telemetry.

    Every event's time is fixed (T0 + its position in the run), so what the
    app shows for it is the same on every machine.
    """
    t = T0
    events: list[Event] = [run_started(max_iters=max_iters, eval_interval=eval_interval, start_iter=start_iter, peak=peak, time=t)]
    if start_iter:
        past: list[Event] = [iteration(i, time=t - (start_iter - i) * MS_PER_ITER / 1000.0) for i in range(start_iter)]
        past += [EvalResult(iter=i, train_loss=fake_loss(i) - 0.05, val_loss=fake_loss(i) + 0.08, best_val_loss=0.0,
                            is_best=False, seconds=2.5, time=t) for i in range(0, start_iter, eval_interval)]
        events.append(HistoryLoaded(events=past, time=t))
    events.append(StateChanged(state=RunState.RUNNING, iter=start_iter, time=t))
    best = math.inf
    for i in range(start_iter, start_iter + iters):
        t += MS_PER_ITER / 1000.0
        events.append(iteration(i, time=t, start_iter=start_iter, mfu=0.38 if peak else None))
        if i % eval_interval == 0 and i > start_iter:
            val = fake_loss(i) + 0.08
            is_best = val < best
            best = min(best, val)
            events.append(StateChanged(state=RunState.EVALUATING, iter=i, time=t))
            t += 2.5
            events.append(EvalResult(iter=i, train_loss=fake_loss(i) - 0.05, val_loss=val, best_val_loss=best, is_best=is_best, seconds=2.5, time=t))
            if is_best:
                events.append(CheckpointWritten(iter=i, path=f"{RUN_DIR}/best.pt", reason="best", seconds=0.4, time=t))
            events.append(StateChanged(state=RunState.RUNNING, iter=i, time=t))
        if i % 400 == 0:
            events.append(TelemetrySnapshot(kind="cpu", data=cpu_data(), time=t))
            events.append(TelemetrySnapshot(kind="gpu", data=gpu_data(), time=t))
    events.append(SampleGenerated(iter=start_iter + iters - 1, prompt="\n", text=SAMPLE_TEXT, seconds=0.8, time=t))
    events.append(Notice(level="warning", message="data loader is slower than the GPU (waited 12 ms/iter)", time=t))
    events.append(TelemetrySnapshot(kind="cpu", data=cpu_data(), time=t))
    events.append(TelemetrySnapshot(kind="gpu", data=gpu_data(), time=t))
    return events


def script_end_time(script: Sequence[Event]) -> float:
    return max(e.time for e in script) if script else T0


class FakeController:
    """Implements tuigpt.control.RunController with a scripted, synchronous event stream."""

    def __init__(self, script: Iterable[Event] = (), *, react: bool = True) -> None:
        self.script = list(script)
        self.react = react
        self.commands: list[Command] = []
        self.started = False
        self.bus = EventBus()
        self._ended = threading.Event()
        self._state = RunState.STARTING
        self._iter = 0
        self._now = script_end_time(self.script)
        self._eval_interval = 250
        for event in self.script:
            self._track(event)

    # ---- RunController
    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        return self.bus.subscribe(subscriber)

    def send(self, command: Command) -> None:
        self.commands.append(command)
        if self.react and not self._ended.is_set():
            self._react(command)

    def start(self) -> None:
        self.started = True
        for event in self.script:
            self.bus.publish(event)

    def wait(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)

    # ---- test helpers
    def emit(self, *events: Event) -> None:
        """Publish more events (from the calling thread)."""
        for event in events:
            self._track(event)
            self.bus.publish(event)

    def tick(self, seconds: float = 1.0) -> float:
        """Advance the fake clock; returns the new time."""
        self._now += seconds
        return self._now

    def _track(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self._state = event.state
        elif isinstance(event, IterationStats):
            self._iter = event.iter
        elif isinstance(event, RunStarted):
            self._eval_interval = event.eval_interval
        elif isinstance(event, EvalIntervalChanged):
            self._eval_interval = event.eval_interval
        elif isinstance(event, (RunFinished, RunFailed)):
            self._ended.set()

    def _react(self, command: Command) -> None:
        t = self.tick()
        if isinstance(command, TogglePause):
            paused = self._state == RunState.PAUSED
            self.emit(StateChanged(state=RunState.RUNNING if paused else RunState.PAUSED, iter=self._iter, time=t))
        elif isinstance(command, CheckpointNow):
            self.emit(CheckpointWritten(iter=self._iter, path=f"{RUN_DIR}/last.pt", reason="command", seconds=0.5, time=t))
        elif isinstance(command, Sample):
            self.emit(SampleGenerated(iter=self._iter, prompt=command.prompt, text="fresh sample text", seconds=0.7, time=t))
        elif isinstance(command, SetEvalInterval):
            nxt = (self._iter // command.interval + 1) * command.interval
            self.emit(EvalIntervalChanged(eval_interval=command.interval, next_eval_iter=nxt, time=t))
        elif isinstance(command, Stop):
            if command.save:
                self.emit(CheckpointWritten(iter=self._iter, path=f"{RUN_DIR}/last.pt", reason="stop", seconds=0.5, time=t))
            self.emit(
                StateChanged(state=RunState.STOPPED, iter=self._iter, time=t),
                RunFinished(
                    iter=self._iter, reason="stopped", best_val_loss=1.6, last_val_loss=1.62, wall_seconds=t - T0,
                    train_seconds=150.0, eval_seconds=10.0, checkpoint_seconds=0.9,
                    last_checkpoint=f"{RUN_DIR}/last.pt" if command.save else None, tokens_seen=(self._iter + 1) * TOKENS_PER_ITER, time=t,
                ),
            )


class LiveFakeController(FakeController):
    """A fake training loop on a thread, in real time, reacting to commands at iteration boundaries."""

    def __init__(self, *, max_iters: int = 3000, eval_interval: int = 200, ms_per_iter: float = 40.0, fail_at: int | None = None) -> None:
        super().__init__(react=False)
        self.max_iters = max_iters
        self._eval_interval = eval_interval
        self.ms_per_iter = ms_per_iter
        self.fail_at = fail_at
        self._queue: queue.Queue[Command] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="fake-trainer", daemon=True)

    def send(self, command: Command) -> None:
        self.commands.append(command)
        self._queue.put(command)

    def start(self) -> None:
        self.started = True
        self._thread.start()

    def _loop(self) -> None:
        start = time.time()
        pub = self.bus.publish
        pub(run_started(max_iters=self.max_iters, eval_interval=self._eval_interval, time=start))
        pub(StateChanged(state=RunState.RUNNING, iter=0))
        paused, best, last_tel, evals_s, ckpt_s = False, math.inf, 0.0, 0.0, 0.0
        i = 0
        while i < self.max_iters:
            while True:  # commands at the iteration boundary
                try:
                    cmd = self._queue.get(timeout=0.1) if paused else self._queue.get_nowait()
                except queue.Empty:
                    if paused:
                        continue
                    break
                if isinstance(cmd, TogglePause):
                    paused = not paused
                    pub(StateChanged(state=RunState.PAUSED if paused else RunState.RUNNING, iter=i))
                elif isinstance(cmd, CheckpointNow):
                    pub(StateChanged(state=RunState.CHECKPOINTING, iter=i))
                    time.sleep(0.3)
                    ckpt_s += 0.3
                    pub(CheckpointWritten(iter=i, path=f"{RUN_DIR}/last.pt", reason="command", seconds=0.3))
                    pub(StateChanged(state=RunState.PAUSED if paused else RunState.RUNNING, iter=i))
                elif isinstance(cmd, Sample):
                    pub(StateChanged(state=RunState.SAMPLING, iter=i))
                    time.sleep(0.3)
                    pub(SampleGenerated(iter=i, prompt=cmd.prompt, text=SAMPLE_TEXT, seconds=0.3))
                    pub(StateChanged(state=RunState.PAUSED if paused else RunState.RUNNING, iter=i))
                elif isinstance(cmd, SetEvalInterval):
                    self._eval_interval = cmd.interval
                    pub(EvalIntervalChanged(eval_interval=cmd.interval, next_eval_iter=(i // cmd.interval + 1) * cmd.interval))
                elif isinstance(cmd, Stop):
                    if cmd.save:
                        time.sleep(0.5)
                        pub(CheckpointWritten(iter=i, path=f"{RUN_DIR}/last.pt", reason="stop", seconds=0.5))
                    pub(StateChanged(state=RunState.STOPPED, iter=i))
                    self._finish(i, "stopped", best, start, evals_s, ckpt_s)
                    return
            if self.fail_at is not None and i == self.fail_at:
                pub(RunFailed(iter=i, message="RuntimeError: CUDA error: an illegal memory access was encountered", traceback="Traceback (most recent call last):\n  ...\nRuntimeError: CUDA error", last_checkpoint=f"{RUN_DIR}/best.pt"))
                pub(StateChanged(state=RunState.ERROR, iter=i))
                self._ended.set()
                return
            time.sleep(self.ms_per_iter / 1000.0)
            pub(iteration(i, time=time.time()))
            if i % self._eval_interval == 0 and i > 0:
                pub(StateChanged(state=RunState.EVALUATING, iter=i))
                time.sleep(0.5)
                evals_s += 0.5
                val = fake_loss(i) + 0.08
                pub(EvalResult(iter=i, train_loss=fake_loss(i) - 0.05, val_loss=val, best_val_loss=min(best, val), is_best=val < best, seconds=0.5))
                if val < best:
                    pub(CheckpointWritten(iter=i, path=f"{RUN_DIR}/best.pt", reason="best", seconds=0.1))
                best = min(best, val)
                pub(StateChanged(state=RunState.RUNNING, iter=i))
            if time.time() - last_tel > 1.0:
                last_tel = time.time()
                pub(TelemetrySnapshot(kind="cpu", data=cpu_data()))
                pub(TelemetrySnapshot(kind="gpu", data=gpu_data()))
            i += 1
        pub(StateChanged(state=RunState.DONE, iter=i))
        self._finish(i, "done", best, start, evals_s, ckpt_s)

    def _finish(self, i: int, reason: str, best: float, start: float, evals_s: float, ckpt_s: float) -> None:
        self.bus.publish(
            RunFinished(
                iter=i, reason=reason, best_val_loss=None if best == math.inf else best, last_val_loss=None if best == math.inf else best,
                wall_seconds=time.time() - start, train_seconds=i * self.ms_per_iter / 1000.0, eval_seconds=evals_s,
                checkpoint_seconds=ckpt_s, last_checkpoint=f"{RUN_DIR}/last.pt", tokens_seen=i * TOKENS_PER_ITER,
            )
        )
        self._ended.set()


def main(argv: Sequence[str]) -> int:
    from tuigpt.ui.app import TuiGptApp

    if "--static" in argv:
        controller: FakeController = FakeController(demo_script())
        app = TuiGptApp(controller, config_path="configs/shakespeare_char.py", clock=lambda: script_end_time(controller.script))
    else:
        controller = LiveFakeController(fail_at=300 if "--fail" in argv else None, max_iters=600 if "--short" in argv else 3000)
        app = TuiGptApp(controller, config_path="configs/shakespeare_char.py")
    app.run()
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
