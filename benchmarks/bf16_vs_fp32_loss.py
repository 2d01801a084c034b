"""Does bf16 autocast hurt learning? Val loss of the same run in float32 and in bfloat16.

Trains the config (default: the tiny Shakespeare config, 2,000 iterations) twice from the same
seed, once per dtype, in this one process, with a throw-away out_dir, and prints the val loss
at every eval and the final difference (target: |bf16 - fp32| <= 0.03).

    python benchmarks/bf16_vs_fp32_loss.py [CONFIG] [--dtypes float32,bfloat16] [--key=value ...]

Offline machines: add --data_path=../shared/data/tinyshakespeare.txt.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.cli.args import split_overrides  # noqa: E402
from tuigpt.engine.trainer import Trainer  # noqa: E402
from tuigpt.run.configfile import load_config  # noqa: E402
from tuigpt.run.events import EvalResult  # noqa: E402

TARGET = 0.03


def train_once(config_path: str, overrides: dict[str, str], dtype: str, out_dir: str) -> tuple[list[EvalResult], float]:
    """Train to max_iters in ``dtype``; the evals it made and its wall-clock seconds."""
    config = load_config(config_path, {**overrides, "dtype": dtype, "out_dir": out_dir, "run_name": f"loss_{dtype}",
                                       "telemetry_interval": "0"})
    trainer = Trainer(config)
    evals: list[EvalResult] = []

    def on_event(event: object) -> None:
        if isinstance(event, EvalResult):
            evals.append(event)
            print(f"  {dtype:9s} iter {event.iter:5d} | train {event.train_loss:.4f} | val {event.val_loss:.4f}",
                  flush=True)

    trainer.bus.subscribe(on_event)
    t0 = time.perf_counter()
    outcome = trainer.run()
    if outcome.reason != "done":
        raise SystemExit(f"{dtype} run ended with {outcome.reason} at iteration {outcome.iter}")
    print(f"  {dtype}: {trainer.precision.reason}; {trainer.threads} threads; {time.perf_counter() - t0:.0f} s",
          flush=True)
    return evals, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "train_shakespeare_char_tiny.yaml"))
    parser.add_argument("--dtypes", default="float32,bfloat16", help="the reference first (default float32,bfloat16)")
    args, rest = parser.parse_known_args()
    overrides = split_overrides(rest)
    dtypes = args.dtypes.split(",")
    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {platform.processor() or platform.machine()} | "
          f"torch {torch.__version__} | config {Path(args.config).name} {' '.join(rest)}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in dtypes:
            results[dtype] = train_once(args.config, overrides, dtype, tmp)
    ref = dtypes[0]
    ref_evals = {e.iter: e.val_loss for e in results[ref][0]}
    print("\niter   " + "".join(f"{d:>11s}" for d in dtypes) + "".join(f"  {d}-{ref}" for d in dtypes[1:]))
    for it in sorted(ref_evals):
        row = [next(e.val_loss for e in results[d][0] if e.iter == it) for d in dtypes]
        print(f"{it:5d}  " + "".join(f"{v:11.4f}" for v in row) + "".join(f"  {v - row[0]:+11.4f}" for v in row[1:]))
    final = {d: results[d][0][-1].val_loss for d in dtypes}
    for d in dtypes[1:]:
        diff = final[d] - final[ref]
        verdict = "within" if abs(diff) <= TARGET else "OUTSIDE"
        print(f"final val loss {d} {final[d]:.4f} vs {ref} {final[ref]:.4f}: {diff:+.4f} ({verdict} ±{TARGET})")


if __name__ == "__main__":
    main()
