"""torch.compile on this device: tokens/s gain and compile time (the first step) per config.

For each config, compile=false and compile=true are timed in alternating rounds in this one
process. The compile time is the first warm-up step's wall-clock with compile on (dynamo
trace + inductor codegen + C++ build); round 1 is a cold compile, later rounds may hit
inductor's on-disk cache, as a second run of the same config would.

    python benchmarks/compile_gain.py [CONFIG ...] [--rounds R] [--steps N] [--key=value ...]

Offline machines: add --data_path=../shared/data/tinyshakespeare.txt.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.cli.args import split_overrides  # noqa: E402
from tuigpt.cli.timing import bench_config  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402
from tuigpt.telemetry.cpuinfo import read_cpu_info  # noqa: E402

DEFAULT_CONFIGS = [str(REPO / "configs" / "train_shakespeare_char_tiny.yaml"),
                   str(REPO / "configs" / "train_cpu_optimized.yaml")]
VARIANTS = ("false", "true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", default=DEFAULT_CONFIGS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args, rest = parser.parse_known_args()
    overrides = split_overrides(rest)
    info = read_cpu_info()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {info.model_name} | {info.physical_cores} cores | "
          f"torch {torch.__version__} | {platform.python_version()} | {' '.join(rest)}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.configs:
            name = Path(path).stem
            tok_s: dict[str, list[float]] = {v: [] for v in VARIANTS}
            first: dict[str, list[float]] = {v: [] for v in VARIANTS}
            ratios = []
            for r in range(args.rounds):
                order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    torch._dynamo.reset()  # each compile starts from scratch in this process
                    cfg = load_config(path, {**overrides, "compile": variant, "out_dir": tmp,
                                             "run_name": f"{name}_{variant}_{r}", "telemetry_interval": "0"})
                    res = bench_config(cfg, steps=args.steps, warmup=args.warmup, quiet=True)
                    tok_s[variant].append(res.tokens_per_sec)
                    first[variant].append(res.first_step_ms / 1000)
                    dtype = res.dtype
                ratios.append(tok_s["true"][-1] / tok_s["false"][-1])
                print(f"{name} ({dtype}) round {r + 1}: eager {tok_s['false'][-1]:,.0f} tok/s | compiled "
                      f"{tok_s['true'][-1]:,.0f} tok/s | {ratios[-1]:.2f}x | compile (first step) "
                      f"{first['true'][-1]:.1f} s vs eager first step {first['false'][-1]:.2f} s", flush=True)
            rows.append((name, dtype, statistics.median(tok_s["false"]), statistics.median(tok_s["true"]),
                         statistics.median(ratios), first["true"], statistics.median(first["false"])))
    print(f"\nmedians of {args.rounds} alternating rounds ({args.warmup} warm-up + {args.steps} timed steps)")
    print("| config | dtype | eager tok/s | compiled tok/s | gain | compile time (first step, per round) |")
    print("|---|---|---|---|---|---|")
    for name, dtype, eager, compiled, ratio, compile_s, eager_first in rows:
        print(f"| {name} | {dtype} | {eager:,.0f} | {compiled:,.0f} | {ratio:.2f}x | "
              f"{', '.join(f'{s:.1f} s' for s in compile_s)} (eager first step {eager_first:.2f} s) |")


if __name__ == "__main__":
    main()
