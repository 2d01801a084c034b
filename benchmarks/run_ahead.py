"""Running a step ahead on a GPU, on and off: `tuigpt bench` with TUIGPT_RUN_AHEAD=1 and =0, alternating.

With run-ahead the trainer queues the next step on the GPU before it reads the last one (engine/step.py), so the
host's work between two steps (reading the loss, publishing the iteration, taking commands, launching the next
step) overlaps the GPU's instead of leaving it idle. This prints each round's ms/step (mean and median of the
timed steps, compile and warm-up left out) and MFU for both variants, and the ratio inline / ahead per round.

    python benchmarks/run_ahead.py [--config configs/train_gpt2_shakespeare.yaml] [--rounds 2] [--steps 40]
        [--first ahead|inline] [--key=value ...]   (overrides go to `tuigpt bench`, e.g. --batch_size=32)

Environment: CUDA_VISIBLE_DEVICES picks the GPU; TIKTOKEN_CACHE_DIR for the gpt2 BPE files (offline).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench(config: str, steps: int, overrides: list[str], ahead: bool) -> tuple[float, float, str] | None:
    """(mean ms, p50 ms, MFU text) of one `tuigpt bench`, or None when it failed."""
    env = dict(os.environ, TUIGPT_RUN_AHEAD="1" if ahead else "0", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "tuigpt", "bench", config, "--steps", str(steps), "--warmup", "8", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    ms = re.search(r"ms/step\s+mean ([\d.]+) · p50 ([\d.]+)", out)
    if proc.returncode != 0 or ms is None:
        print(out[-2000:], file=sys.stderr)
        return None
    mfu = re.search(r"MFU\s+(\S+)", out)
    return float(ms.group(1)), float(ms.group(2)), mfu.group(1) if mfu else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/train_gpt2_shakespeare.yaml")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--first", choices=("ahead", "inline"), default="ahead")
    args, overrides = parser.parse_known_args()
    order = [True, False] if args.first == "ahead" else [False, True]
    ratios = []
    print(f"{'round':>5}  {'variant':<7}  {'mean ms':>8}  {'p50 ms':>8}  MFU", flush=True)
    for r in range(1, args.rounds + 1):
        got = {}
        for ahead in order:
            result = bench(args.config, args.steps, overrides, ahead)
            if result is None:
                sys.exit(f"bench failed (run-ahead {'on' if ahead else 'off'})")
            got[ahead] = result
            print(f"{r:>5}  {'ahead' if ahead else 'inline':<7}  {result[0]:>8.2f}  {result[1]:>8.2f}  {result[2]}",
                  flush=True)
        ratios.append((got[False][0] / got[True][0], got[False][1] / got[True][1]))
        print(f"{r:>5}  ratio inline/ahead: mean {ratios[-1][0]:.3f}x · p50 {ratios[-1][1]:.3f}x", flush=True)
    print(f"median over {len(ratios)} rounds: mean {statistics.median(x for x, _ in ratios):.3f}x · "
          f"p50 {statistics.median(y for _, y in ratios):.3f}x (above 1: run-ahead is faster)")


if __name__ == "__main__":
    main()
