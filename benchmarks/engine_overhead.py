"""Engine overhead: tuigpt's trainer (headless printer, metrics.jsonl, telemetry on) vs a minimal PyTorch loop.

Both train the same GPT on the same data with the same dtype, batch and optimizer, in this one
process, alternating rounds so machine noise hits both alike. Prints tokens/s of each and the
ratio tuigpt / plain (target >= 0.97).

    python benchmarks/engine_overhead.py [CONFIG] [--steps N] [--rounds R] [--key=value ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.cli.args import split_overrides  # noqa: E402
from tuigpt.engine.model import GPT  # noqa: E402
from tuigpt.engine.trainer import Trainer  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402
from tuigpt.run.events import IterationStats  # noqa: E402
from tuigpt.run.metrics_log import MetricsWriter  # noqa: E402
from tuigpt.run.rundir import METRICS_FILE  # noqa: E402
from tuigpt.telemetry.sampler import TelemetrySampler, default_samplers  # noqa: E402
from tuigpt.ui.headless import HeadlessPrinter  # noqa: E402


def plain_loop(trainer: Trainer, steps: int) -> float:
    """The loop a user writes by hand (nanoGPT's train.py core), on the trainer's own data and model shape."""
    cfg = trainer.config
    torch.manual_seed(cfg.seed)
    model = GPT(trainer.model_args).to(trainer.device)
    opt = torch.optim.AdamW(model.param_groups(cfg.weight_decay), lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))
    data = torch.from_numpy(trainer.data.train.astype("int64"))
    g = torch.Generator().manual_seed(cfg.seed)
    ctx = (torch.autocast(trainer.device.type, dtype=trainer.precision.torch_dtype) if trainer.precision.autocast
           else contextlib.nullcontext())
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        for _ in range(cfg.gradient_accumulation_steps):
            ix = torch.randint(len(data) - cfg.block_size - 1, (cfg.batch_size,), generator=g)
            x = torch.stack([data[i:i + cfg.block_size] for i in ix])
            y = torch.stack([data[i + 1:i + 1 + cfg.block_size] for i in ix])
            with ctx:
                _, loss = model(x, y)
            (loss / cfg.gradient_accumulation_steps).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - t0)
    return _tokens_per_sec(times, trainer.tokens_per_iter)


def tuigpt_loop(config, steps: int, out_dir: str) -> float:  # noqa: ANN001
    config.max_iters = steps
    config.eval_interval = steps * 10  # no eval inside the timed window (only the untrained one, before it)
    trainer = Trainer(config)
    stamps: list[float] = []
    trainer.bus.subscribe(lambda e: stamps.append(time.perf_counter()) if isinstance(e, IterationStats) else None)
    trainer.bus.subscribe(HeadlessPrinter(out=io.StringIO()))
    writer = MetricsWriter(trainer.run_dir / METRICS_FILE, config.log_interval)
    trainer.bus.subscribe(writer)
    sampler = TelemetrySampler(trainer.bus.publish, default_samplers(str(trainer.device)), interval=1.0)
    sampler.start()
    trainer.run()
    sampler.stop()
    writer.close()
    # wall time between consecutive iteration events: includes everything the engine does per step
    times = [b - a for a, b in zip(stamps, stamps[1:])]
    return _tokens_per_sec(times, trainer.tokens_per_iter)


def _tokens_per_sec(step_seconds: list[float], tokens_per_iter: int) -> float:
    kept = step_seconds[len(step_seconds) // 5:]  # drop warm-up
    return tokens_per_iter * len(kept) / sum(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "train_shakespeare_char_tiny.yaml"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args, rest = parser.parse_known_args()
    overrides = split_overrides(rest)
    results: dict[str, list[float]] = {"plain": [], "tuigpt": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            cfg = load_config(args.config, {**overrides, "out_dir": tmp, "run_name": f"bench{r}"})
            tok_s = tuigpt_loop(cfg, args.steps, tmp)
            results["tuigpt"].append(tok_s)
            cfg2 = load_config(args.config, {**overrides, "out_dir": tmp, "run_name": f"plain{r}"})
            reference = Trainer(cfg2)  # same data, device and dtype resolution; its loop is not used
            results["plain"].append(plain_loop(reference, args.steps))
            print(f"round {r + 1}: tuigpt {results['tuigpt'][-1]:,.0f} tok/s | plain {results['plain'][-1]:,.0f} tok/s",
                  flush=True)
    ratios = [a / b for a, b in zip(results["tuigpt"], results["plain"])]
    print(f"config {Path(args.config).name} {' '.join(rest)} | dtype {reference.precision.name} | "
          f"threads {torch.get_num_threads()} | {args.steps} steps x {args.rounds} rounds")
    print(f"tuigpt/plain tokens/s ratio: median {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)}); target >= 0.97")


if __name__ == "__main__":
    main()
