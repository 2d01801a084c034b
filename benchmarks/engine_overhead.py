"""tuigpt as shipped against nanoGPT's CPU path, in tokens/s, on the shipped CPU configs.

tuigpt: the config as a user runs it (dtype and compile auto: measured and cached; fused AdamW), through its
trainer with everything a headless run attaches (log printer, metrics.jsonl, telemetry at 1 s); its speed is
the wall time between consecutive iteration events. nanoGPT: benchmarks/nanogpt_loop.py on the same model
shape and batch (fp32 on a CPU, the for-loop AdamW, batches stacked from a memmap). Rounds alternate the two in
this process so machine noise hits both alike; the first fifth of each timing is warm-up and left out.
Targets: >= 1.3x on the default config and on 4/256/128/16, never below 1.0x on the tiny and baby configs.

    python benchmarks/engine_overhead.py [--models default,4x256,tiny,baby] [--rounds 3] [--scale 1.0]
        [--same-dtype] [--data ../shared/data/tinyshakespeare.txt] [--key=value ...]

--same-dtype times the plain loop in tuigpt's own dtype instead: the engine's overhead alone (target >= 0.97).
--cpu-time times each iteration by the training thread's CPU time instead of the wall clock; with
--num_threads=1 (torch then computes on that thread) that is what a quiet core would take, which keeps the
comparison meaningful on a machine busy with other work.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import nanogpt_loop  # noqa: E402

from tuigpt.cli.args import split_overrides  # noqa: E402
from tuigpt.engine.model import GPT  # noqa: E402
from tuigpt.engine.trainer import Trainer  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402
from tuigpt.run.events import IterationStats  # noqa: E402
from tuigpt.run.metrics_log import MetricsWriter  # noqa: E402
from tuigpt.telemetry.cpuinfo import read_cpu_info  # noqa: E402
from tuigpt.telemetry.poller import TelemetryPoller, default_readers  # noqa: E402
from tuigpt.ui.headless import HeadlessPrinter  # noqa: E402

CONFIGS = REPO / "configs"
# name: (config file, overrides, timed steps a round at --scale 1: a few seconds to a minute each on 2 cores)
MODELS = {
    "default": (CONFIGS / "train_cpu_optimized.yaml", {}, 40),
    "4x256": (CONFIGS / "train_shakespeare_char_tiny.yaml", {"n_embd": "256", "block_size": "128",
                                                             "batch_size": "16"}, 40),
    "tiny": (CONFIGS / "train_shakespeare_char_tiny.yaml", {}, 200),
    "baby": (CONFIGS / "train_shakespeare_char.yaml", {}, 10),
}


CLOCK = time.perf_counter  # or time.thread_time (--cpu-time)


def iteration_gaps(config, steps: int, clock=None) -> tuple[list[float], Trainer]:  # noqa: ANN001
    """tuigpt's Trainer with a headless run's sinks (the log printer, metrics.jsonl, telemetry at 1 s): the time
    between consecutive iteration events by ``clock`` (CLOCK by default), so everything the engine does per step
    counts. Also step_gap.py's tuigpt side."""
    clock = clock or CLOCK
    config.max_iters = steps
    config.eval_interval = steps * 10  # no eval inside the timed window (only the untrained one, before it)
    config.eval_iters = 1
    trainer = Trainer(config)
    stamps: list[float] = []
    # the bus calls subscribers on the training thread, as each iteration ends
    trainer.bus.subscribe(lambda e: stamps.append(clock()) if isinstance(e, IterationStats) else None)
    trainer.bus.subscribe(HeadlessPrinter(out=io.StringIO()))
    writer = MetricsWriter(trainer.run_dir.metrics, config.log_interval)
    trainer.bus.subscribe(writer)
    poller = TelemetryPoller(trainer.bus.publish, default_readers(str(trainer.device)), interval=1.0)
    poller.start()
    trainer.run()
    poller.stop()
    writer.close()
    return [b - a for a, b in zip(stamps, stamps[1:])], trainer


def tuigpt_loop(config, steps: int) -> tuple[float, Trainer]:  # noqa: ANN001
    gaps, trainer = iteration_gaps(config, steps)
    return _tokens_per_sec(gaps, trainer.tokens_per_iter), trainer


def nanogpt(config, steps: int, data_dir: str, vocab: int, out_dir: str) -> float:  # noqa: ANN001
    """nanoGPT's loop on the same shape and batch; its first (untrained) eval is left out by the warm-up cut."""
    cfg = dict(nanogpt_loop.MACBOOK, batch_size=config.batch_size, block_size=config.block_size,
               n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout,
               bias=config.bias, learning_rate=config.learning_rate, max_iters=steps - 1, lr_decay_iters=steps,
               warmup_iters=min(config.warmup_iters, steps - 1), gradient_accumulation_steps=
               config.gradient_accumulation_steps, eval_interval=steps * 10, eval_iters=1, log_interval=10**9,
               weight_decay=config.weight_decay, beta1=config.beta1, beta2=config.beta2,
               grad_clip=config.grad_clip)
    result = nanogpt_loop.run(cfg, data_dir, vocab, out_dir, log=lambda _line: None, clock=CLOCK)
    tokens = config.batch_size * config.block_size * config.gradient_accumulation_steps
    return _tokens_per_sec([ms / 1000 for ms in result["ms"]], tokens)


def plain_same_dtype(trainer: Trainer, steps: int) -> float:
    """A minimal hand-written loop in the trainer's own dtype (the engine's overhead alone)."""
    cfg = trainer.config
    torch.manual_seed(cfg.seed)
    model = GPT(trainer.model_args).to(trainer.device)
    opt = model.make_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), trainer.device.type)
    data = torch.from_numpy(trainer.data.train.astype("int64"))
    g = torch.Generator().manual_seed(cfg.seed)
    ctx = (torch.autocast(trainer.device.type, dtype=trainer.precision.torch_dtype) if trainer.precision.autocast
           else contextlib.nullcontext())
    times = []
    for _ in range(steps):
        t0 = CLOCK()
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
        times.append(CLOCK() - t0)
    return _tokens_per_sec(times, trainer.tokens_per_iter)


def _tokens_per_sec(step_seconds: list[float], tokens_per_iter: int) -> float:
    kept = step_seconds[len(step_seconds) // 5:]  # drop warm-up
    return tokens_per_iter * len(kept) / sum(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every model's timed steps")
    parser.add_argument("--same-dtype", action="store_true")
    parser.add_argument("--cpu-time", action="store_true")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tinyshakespeare.txt"))
    args, rest = parser.parse_known_args()
    overrides = split_overrides(rest)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.thread_time
        torch.set_num_threads(int(overrides.get("num_threads", "0")) or torch.get_num_threads())
    info = read_cpu_info()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {info.model_name} | {info.physical_cores} cores | torch "
          f"{torch.__version__} | Python {platform.python_version()} | {' '.join(rest)}"
          f"{' | timed in CPU seconds of the training thread' if args.cpu_time else ''}", flush=True)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        vocab = nanogpt_loop.prepare_char(args.data, tmp)
        for name in args.models.split(","):
            path, model_overrides, steps = MODELS[name]
            steps = max(5, int(steps * args.scale))
            base = {**model_overrides, **overrides, "data_path": args.data, "out_dir": tmp}
            got: dict[str, list[float]] = {"tuigpt": [], "other": []}
            ratios, setup = [], ""
            for r in range(args.rounds):
                for who in (("tuigpt", "other") if r % 2 == 0 else ("other", "tuigpt")):
                    cfg = load_config(path, {**base, "run_name": f"{name}{r}{who}"})
                    if who == "tuigpt":
                        tok_s, trainer = tuigpt_loop(cfg, steps)
                        setup = (f"{trainer.precision.name} ({trainer.precision.reason}), compile "
                                 f"{'on' if trainer.compiled else 'off'} ({trainer.compile_reason})")
                    elif args.same_dtype:  # the trainer only resolves data, device and dtype; its loop is not used
                        tok_s = plain_same_dtype(Trainer(cfg), steps)
                    else:
                        tok_s = nanogpt(cfg, steps, tmp, vocab, tmp)
                    got[who].append(tok_s)
                ratios.append(got["tuigpt"][-1] / got["other"][-1])
                print(f"{name} round {r + 1}: tuigpt {got['tuigpt'][-1]:,.0f} tok/s | "
                      f"{'same-dtype loop' if args.same_dtype else 'nanoGPT'} {got['other'][-1]:,.0f} tok/s | "
                      f"{ratios[-1]:.2f}x", flush=True)
            print(f"  tuigpt: {setup}", flush=True)
            summary.append((name, steps, statistics.median(got["tuigpt"]), statistics.median(got["other"]),
                            statistics.median(ratios), ratios))
    other = "same-dtype loop" if args.same_dtype else "nanoGPT loop (fp32)"
    print(f"\n| model | timed steps | tuigpt tok/s | {other} tok/s | ratio (median) | rounds |")
    print("|---|---|---|---|---|---|")
    for name, steps, t, o, ratio, rounds in summary:
        print(f"| {name} | {steps} | {t:,.0f} | {o:,.0f} | **{ratio:.2f}x** | {', '.join(f'{x:.2f}' for x in rounds)} |")


if __name__ == "__main__":
    main()
