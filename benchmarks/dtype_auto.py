"""Is `dtype: auto` within 7% of the faster dtype on every shipped config? (the CPU done-when of issue #12)

For each config: what `dtype: auto` picks here (its trial, measured once and cached, as a user's first run does),
then float32 and bfloat16 timed with `tuigpt bench`'s steps in alternating rounds (fp32, bf16, then bf16, fp32,
...). Prints the per-round ratios and, per config, auto's dtype against the faster one.

    python benchmarks/dtype_auto.py [CONFIG ...] [--rounds 3] [--steps N] [--fresh] [--key=value ...]

--fresh forgets the cached trials first, so auto measures now. Offline: --data_path=../shared/data/tinyshakespeare.txt
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
from tuigpt.engine.build import resolved_choices  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402
from tuigpt.telemetry.cpuinfo import read_cpu_info  # noqa: E402
from tuigpt.telemetry.peak_cache import forget_trials  # noqa: E402

CONFIGS = {  # config: timed steps a round (a few seconds each on 2 cores)
    "configs/train_cpu_optimized.yaml": 8,
    "configs/train_shakespeare_char_tiny.yaml": 40,
    "configs/train_shakespeare_char.yaml": 2,
}
DTYPES = ("float32", "bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", default=list(CONFIGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="timed steps a round (0: per config)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--fresh", action="store_true")
    args, rest = parser.parse_known_args()
    overrides = split_overrides(rest)
    info = read_cpu_info()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {info.model_name} | {info.physical_cores} cores | {info.bf16_reason}"
          f" | torch {torch.__version__} | Python {platform.python_version()} | {' '.join(rest)}", flush=True)
    if args.fresh:
        print(f"forgot {forget_trials()} cached trial(s)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.configs:
            steps = args.steps or CONFIGS.get(path, 5)
            base = {**overrides, "out_dir": tmp, "telemetry_interval": "0"}
            t0 = time.perf_counter()
            auto = resolved_choices(load_config(path, {**base, "compile": "false"}))
            print(f"{path}: auto picks {auto.dtype} ({time.perf_counter() - t0:.0f} s including its trial if "
                  f"not cached)", flush=True)
            ms: dict[str, list[float]] = {d: [] for d in DTYPES}
            ratios = []
            for r in range(args.rounds):
                for dtype in DTYPES if r % 2 == 0 else DTYPES[::-1]:
                    cfg = load_config(path, {**base, "dtype": dtype, "compile": "false", "run_name": f"d{r}{dtype}"})
                    ms[dtype].append(bench_config(cfg, steps=steps, warmup=args.warmup, quiet=True).mean_ms)
                ratios.append(ms["float32"][-1] / ms["bfloat16"][-1])
                print(f"  round {r + 1}: float32 {ms['float32'][-1]:.1f} ms/step | bfloat16 {ms['bfloat16'][-1]:.1f}"
                      f" ms/step | bf16 speed-up {ratios[-1]:.2f}x", flush=True)
            speedup = statistics.median(ratios)
            faster = "bfloat16" if speedup > 1 else "float32"
            # auto's speed relative to the faster dtype's, from the median per-round ratio
            auto_vs = 1.0 if auto.dtype == faster else (1 / speedup if faster == "bfloat16" else speedup)
            rows.append((Path(path).name, steps, speedup, ratios, faster, auto.dtype, auto_vs))
    print("\n| config | timed steps | bf16 speed-up (median; rounds) | faster | auto picks | auto vs faster |")
    print("|---|---|---|---|---|---|")
    for name, steps, speedup, ratios, faster, picked, vs in rows:
        print(f"| {name} | {steps} | {speedup:.2f}x ({', '.join(f'{x:.2f}' for x in ratios)}) | {faster} | {picked} |"
              f" **{vs:.2f}** (target >= 0.93) |")


if __name__ == "__main__":
    main()
