"""Where a config's eager GPU step goes: the trainer's own step for a few variants of one config, alternating.

Each variant is a Trainer built from the config with its overrides (``name=key:value,key:value``); every round
times ``--steps`` of each in turn (after a warm-up), then one profiled round each prints the span from the first
kernel to the last, the time the GPU was busy (the union of kernels and copies) and idle, and the kernels that
took most of the first variant's step, with their launches a step (a step mostly idle is bound by launches; a
busy one by its kernels).

    python benchmarks/baby_step_profile.py --config configs/train_shakespeare_char.yaml --data DATA \
        --variant shipped= --variant nodrop=dropout:0 --variant gpt2=arch:gpt2,optimizer:adamw,schedule:cosine
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuigpt.engine.trainer import Trainer  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402


def kernels(run, steps: int) -> tuple[float, float, dict[str, list[float]]]:  # noqa: ANN001
    """(span ms, busy ms, {kernel: [ms, launches]}), each a step, of ``run(steps)`` on the GPU."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run(steps)
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    spans = sorted((e.time_range.start, e.time_range.end) for e in events)
    by_name: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for e in events:
        entry = by_name[e.name[:100]]
        entry[0] += (e.time_range.end - e.time_range.start) / 1000 / steps
        entry[1] += 1 / steps
    busy, end = 0.0, None
    for s, e in spans:
        if end is None or s > end:
            busy, end = busy + e - s, e
        elif e > end:
            busy, end = busy + e - end, e
    return (spans[-1][1] - spans[0][0]) / 1000 / steps, busy / 1000 / steps, by_name


def trainer_steps(config: str, data: str, overrides: dict[str, str]):  # noqa: ANN201
    over = dict(compile="false", dtype="bfloat16", data_path=data, out_dir=tempfile.mkdtemp(), run_name="p",
                eval_interval="1000000", max_iters="1000000", telemetry_interval="0")
    over.update(overrides)
    trainer = Trainer(load_config(config, over))

    def run(n: int) -> None:
        for _ in range(n):
            trainer.train_step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/train_shakespeare_char.yaml")
    parser.add_argument("--data", default="../shared/data/tinyshakespeare.txt")
    parser.add_argument("--variant", action="append", default=[], help="name=key:value,key:value")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    variants = {}
    for spec in args.variant or ["shipped="]:
        name, _, rest = spec.partition("=")
        overrides = dict(kv.split(":", 1) for kv in rest.split(",") if kv)
        variants[name] = trainer_steps(args.config, args.data, overrides)
    for run in variants.values():
        run(10)
    wall: dict[str, list[float]] = collections.defaultdict(list)
    names = list(variants)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            variants[name](args.steps)
            torch.cuda.synchronize()
            wall[name].append((time.perf_counter() - t0) * 1000 / args.steps)
    base = statistics.median(wall[names[0]])
    profiles = {}
    for name in names:
        span, busy, by_name = profiles[name] = kernels(variants[name], args.steps)
        med = statistics.median(wall[name])
        print(f"{name}: {med:.2f} ms a step ({', '.join(f'{w:.2f}' for w in wall[name])}; {med / base:.3f}x "
              f"{names[0]}); profiled: span {span:.2f}, GPU busy {busy:.2f}, idle {span - busy:.2f}, "
              f"{sum(v[1] for v in by_name.values()):.0f} kernels a step", flush=True)
    for name in names:
        by_name = profiles[name][2]
        print(f"--- {name}: top kernels, ms a step (launches a step)")
        for k, (ms, count) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:args.top]:
            print(f"  {ms:7.3f} ({count:4.0f})  {k}")


if __name__ == "__main__":
    main()
