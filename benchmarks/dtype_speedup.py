"""bf16 autocast vs float32 on this CPU: tokens/s of the four model shapes of issue #6.

For each model, float32 and bfloat16 are timed in alternating rounds in this one process
(a round times fp32 then bf16, the next bf16 then fp32), so machine noise hits both alike.
Each timing is `tuigpt bench`'s: warm-up steps, then timed Trainer.train_step() calls.
Prints per-round figures, then the median tokens/s of each dtype and the median speed-up.

    python benchmarks/dtype_speedup.py [--rounds R] [--models tiny,4x256,...] [--key=value ...]

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

BASE = REPO / "configs" / "train_shakespeare_char_tiny.yaml"
# name: (layers, heads, width, block, batch, timed steps a round); steps keep each timing to a few seconds
MODELS = {
    "6x384": (6, 6, 384, 256, 64, 3),  # shakespeare baby GPT
    "12x768": (12, 12, 768, 128, 4, 4),  # 85M
    "4x256": (4, 4, 256, 128, 16, 10),
    "tiny": (4, 4, 128, 64, 12, 30),
}
DTYPES = ("float32", "bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    args, rest = parser.parse_known_args()
    overrides = split_overrides(rest)
    info = read_cpu_info()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {info.model_name} | {info.physical_cores} cores | "
          f"{info.bf16_reason} | torch {torch.__version__} | {platform.python_version()} | {' '.join(rest)}",
          flush=True)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            layers, heads, width, block, batch, steps = MODELS[name]
            tok_s: dict[str, list[float]] = {d: [] for d in DTYPES}
            ms: dict[str, list[float]] = {d: [] for d in DTYPES}
            mfu: dict[str, list[float]] = {d: [] for d in DTYPES}
            ratios = []
            for r in range(args.rounds):
                order = DTYPES if r % 2 == 0 else DTYPES[::-1]
                for dtype in order:
                    cfg = load_config(BASE, {**overrides, "n_layer": str(layers), "n_head": str(heads),
                                             "n_embd": str(width), "block_size": str(block),
                                             "batch_size": str(batch), "dtype": dtype, "out_dir": tmp,
                                             "run_name": f"{name}_{dtype}_{r}", "telemetry_interval": "0"})
                    res = bench_config(cfg, steps=steps, warmup=args.warmup, quiet=True)
                    tok_s[dtype].append(res.tokens_per_sec)
                    ms[dtype].append(res.mean_ms)
                    if res.mfu is not None:
                        mfu[dtype].append(res.mfu)
                    flops_per_token, threads = res.flops_per_token, res.threads
                ratios.append(tok_s["bfloat16"][-1] / tok_s["float32"][-1])
                print(f"{name:7s} round {r + 1}: fp32 {tok_s['float32'][-1]:9,.0f} tok/s | bf16 "
                      f"{tok_s['bfloat16'][-1]:9,.0f} tok/s | {ratios[-1]:.2f}x", flush=True)
            med = {d: statistics.median(tok_s[d]) for d in DTYPES}
            summary.append((name, layers, width, block, batch, flops_per_token, med, statistics.median(ratios),
                            {d: statistics.median(ms[d]) for d in DTYPES},
                            {d: statistics.median(mfu[d]) if mfu[d] else None for d in DTYPES}, threads, steps))
    print(f"\nmedians of {args.rounds} alternating rounds (each: {args.warmup} warm-up + N timed steps)")
    print("| model (layers/width/block/batch) | MFLOP/token | steps | fp32 ms/step | bf16 ms/step | fp32 tok/s | "
          "bf16 tok/s | speed-up | fp32 MFU | bf16 MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, layers, width, block, batch, fpt, med, ratio, ms_, mfu_, threads, steps in summary:
        pct = lambda v: "n/a" if v is None else f"{v * 100:.1f}%"  # noqa: E731
        print(f"| {layers}/{width}/{block}/{batch} ({name}) | {fpt / 1e6:.1f} | {steps} | {ms_['float32']:.1f} | "
              f"{ms_['bfloat16']:.1f} | {med['float32']:,.0f} | {med['bfloat16']:,.0f} | {ratio:.2f}x | "
              f"{pct(mfu_['float32'])} | {pct(mfu_['bfloat16'])} |")
    print(f"threads {threads}")


if __name__ == "__main__":
    main()
