"""Health overhead: tuigpt's training iteration with its health numbers vs the same iteration without them.

"on" is the trainer's own iteration: the gradient norm read with the loss every step, per-group gradient
and weight norms and ‖Δw‖/‖w‖ on every log_interval-th step, the clip rate, the loss watch (spikes and
divergence), the stall watch subscriber and the bigger metrics.jsonl records. "off" is the step as it was
before (clip_grad_norm_ only when clipping, loss.item(), no per-group numbers) with the plain
IterationStats. One trainer, one model; the variants alternate in chunks of steps and swap order every
round, so machine noise hits both alike. Prints ms/iter of each and the ratio on/off (target <= 1.02).

    python benchmarks/health_overhead.py [CONFIG] [--steps N] [--chunk C] [--rounds R] [--key=value ...]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.cli.args import split_overrides  # noqa: E402
from tuigpt.engine.step import Stepper, StepResult  # noqa: E402
from tuigpt.engine.trainer import Trainer  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402
from tuigpt.run.events import IterationStats  # noqa: E402
from tuigpt.run.metrics_log import MetricsWriter  # noqa: E402


def update_without_health(stepper: Stepper, loss_sum: torch.Tensor,
                          detail: bool) -> tuple[torch.Tensor, StepResult]:
    """Stepper.update as it was before the health numbers (the baseline): what to read, and the result."""
    if stepper.grad_clip:
        stepper.scaler.unscale_(stepper.optimizer)
        torch.nn.utils.clip_grad_norm_(stepper.raw_model.parameters(), stepper.grad_clip)
    loss_value = loss_sum.item()
    if not math.isfinite(loss_value):
        stepper.optimizer.zero_grad(set_to_none=True)
        return loss_sum.reshape(1), StepResult(loss_value, 0.0, False)
    stepper.scaler.step(stepper.optimizer)
    stepper.scaler.update()
    stepper.optimizer.zero_grad(set_to_none=True)
    return loss_sum.reshape(1), StepResult(loss_value, 0.0, True)


def chunk(trainer: Trainer, steps: int, health: bool) -> float:
    """Seconds for ``steps`` iterations of the trainer's loop body, with or without the health numbers."""
    stepper = trainer.stepper
    if health:
        stepper.__dict__.pop("update", None)  # the class's own (health) update
    else:
        stepper.update = lambda loss_sum, detail=False: update_without_health(stepper, loss_sum, detail)  # type: ignore[method-assign]
    t0 = time.perf_counter()
    for _ in range(steps):
        step = trainer.train_step()
        loss, ms = step.loss, step.ms
        if health:
            for event in trainer._loss_watch.check(trainer.iter_num, loss):
                trainer.bus.publish(event)
            trainer._publish_iteration(step)
        else:
            tps = trainer.tokens_per_iter / (ms / 1000.0)
            trainer.bus.publish(IterationStats(iter=trainer.iter_num, loss=loss, lr=trainer.optimizer.param_groups[0]["lr"],
                                               ms_per_iter=ms, tokens_per_sec=tps, mfu=None,
                                               tokens_seen=trainer.tokens_seen, train_seconds=trainer.train_seconds))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "train_cpu_optimized.yaml"))
    parser.add_argument("--steps", type=int, default=200, help="iterations per variant per round")
    parser.add_argument("--chunk", type=int, default=50, help="iterations before switching variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    args, rest = parser.parse_known_args()
    overrides = split_overrides(rest)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(args.config, {**overrides, "out_dir": tmp, "run_name": "health",
                                           "max_iters": str(10 ** 9), "telemetry_interval": "0"})
        trainer = Trainer(config)
        writer = MetricsWriter(trainer.run_dir.metrics, config.log_interval)  # the records the health fields grow
        trainer.bus.subscribe(writer)
        chunk(trainer, args.warmup, True)
        chunk(trainer, args.warmup, False)
        totals = {True: 0.0, False: 0.0}
        ratios = []
        for r in range(args.rounds):
            spent = {True: 0.0, False: 0.0}
            order = (True, False) if r % 2 == 0 else (False, True)
            for _ in range(max(1, args.steps // args.chunk)):
                for health in order:
                    spent[health] += chunk(trainer, args.chunk, health)
            ratios.append(spent[True] / spent[False])
            totals[True] += spent[True]
            totals[False] += spent[False]
            print(f"round {r + 1}: on {spent[True] / args.steps * 1000:.2f} ms/iter | off "
                  f"{spent[False] / args.steps * 1000:.2f} ms/iter | on/off {ratios[-1]:.4f}", flush=True)
        writer.close()
    n = args.rounds * (args.steps // args.chunk) * args.chunk
    print(f"config {Path(args.config).name} {' '.join(rest)} | {trainer.device} {trainer.precision.name} | threads "
          f"{torch.get_num_threads()} | log_interval {config.log_interval} | {n} iterations per variant")
    print(f"health on/off time ratio: {totals[True] / totals[False]:.4f} (median of rounds "
          f"{statistics.median(ratios):.4f}: {', '.join(f'{x:.4f}' for x in ratios)}); target <= 1.02")


if __name__ == "__main__":
    main()
