"""`tuigpt watch` on a million-line history of mixed records: peak RSS of the watching process.

Writes a synthetic metrics.jsonl (a finished run: iterations, evals, checkpoints, notices, samples, telemetry,
state changes and several resumed sessions, in the proportions given below), then opens the real monitor on it
in a child process (Textual headless: WatchController, the app, every pane) and prints the child's peak RSS
once the history has been replayed and drawn, next to the same child on a 100-line history (the baseline the
process costs anyway). The goal: under 150 MiB for the million lines.

    python benchmarks/watch_memory.py [--lines 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_MIB = 150

# kind -> share of the lines; the adversarial mix: many non-iteration records, each kept by the old loader
MIX = {"iter": 0.40, "eval": 0.15, "checkpoint": 0.10, "notice": 0.15, "sample": 0.05, "telemetry": 0.10,
       "state": 0.04, "start": 0.01}


def write_history(path: Path, lines: int) -> None:
    """A deterministic million-line history (no randomness: the same file every run)."""
    counts = {k: int(v * lines) for k, v in MIX.items()}
    counts["iter"] += lines - sum(counts.values()) - 1  # the finish line makes it exact
    pattern = [k for k, n in counts.items() for _ in range(max(1, round(n / min(counts.values()))))]
    left = dict(counts)
    config = {"n_layer": 4, "n_embd": 128, "max_iters": 10**9, "run_name": "synthetic"}
    t0 = 1.7e9
    it = 0
    written = 0
    with open(path, "w") as f:
        while written < lines - 1:
            for kind in pattern:
                if left[kind] <= 0 or written >= lines - 1:
                    continue
                left[kind] -= 1
                written += 1
                t = t0 + written * 0.01
                if kind == "iter":
                    it += 1
                    rec = {"type": "iter", "iter": it, "loss": 2.0 + 1.0 / it, "lr": 1e-3, "ms_per_iter": 10.0,
                           "tokens_per_sec": 4e4, "mfu": 0.1, "tokens_seen": it * 4096, "train_seconds": it * 0.01}
                elif kind == "eval":
                    rec = {"type": "eval", "iter": it, "train_loss": 2.0, "val_loss": 2.1, "best_val_loss": 2.1,
                           "is_best": written % 7 == 0, "seconds": 0.5}
                elif kind == "checkpoint":
                    rec = {"type": "checkpoint", "iter": it, "path": "/runs/synthetic/last.pt", "reason": "eval",
                           "seconds": 0.2}
                elif kind == "notice":
                    rec = {"type": "notice", "level": "warning", "message": f"control socket: watcher {written} "
                           f"dropped: idle (a reconnect loop's notice)"}
                elif kind == "sample":
                    rec = {"type": "sample", "iter": it, "prompt": "\n", "text": "ROMEO: " + "x" * 600, "seconds": 1}
                elif kind == "telemetry":
                    rec = {"type": "telemetry", "kind": "cpu", "data": {"percent": 50.0}}
                elif kind == "state":
                    rec = {"type": "state", "state": "RUNNING", "iter": it}
                else:
                    rec = {"type": "start", "run_name": "synthetic", "run_dir": "/runs/synthetic", "config_path": None,
                           "config": config, "n_params": 800_000, "device": "cpu", "dtype": "float32",
                           "dtype_reason": "", "start_iter": it, "max_iters": 10**9, "tokens_per_iter": 4096,
                           "flops_per_token": 6_000_000, "peak_flops": None, "peak_label": "none",
                           "eval_interval": 100, "resumed": True}
                rec["time"] = t
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        f.write(json.dumps({"type": "finish", "iter": it, "reason": "done", "best_val_loss": 2.1,
                            "last_val_loss": 2.1, "wall_seconds": 1e4, "train_seconds": 9e3, "eval_seconds": 500,
                            "checkpoint_seconds": 100, "last_checkpoint": None, "tokens_seen": it * 4096,
                            "time": t0 + lines * 0.01}, separators=(",", ":")) + "\n")


CHILD = r"""
import asyncio, resource, sys, time
sys.path.insert(0, sys.argv[2])
from tuigpt.control.follower import WatchController
from tuigpt.ui.app import TuiGptApp

async def main() -> None:
    controller = WatchController(sys.argv[1])
    app = TuiGptApp(controller, config_path=sys.argv[1], watching=True)
    t0 = time.perf_counter()
    async with app.run_test(size=(160, 48)) as pilot:
        while not (controller.wait(0) and app.model.version > 0):  # replayed, up to its finish record
            await pilot.pause(0.05)
        for _ in range(10):  # let every pane draw the history
            await pilot.pause(0.05)
        seconds = time.perf_counter() - t0
        controller.close()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, seconds)

asyncio.run(main())
"""


def peak_rss(run_dir: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(run_dir), str(REPO)], check=True, capture_output=True,
                         text=True, timeout=600).stdout.split()
    return float(out[-2]), float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the histories here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        big, small = root / "big", root / "small"
        for d, n in ((big, args.lines), (small, 100)):
            d.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            write_history(d / "metrics.jsonl", n)
            size = (d / "metrics.jsonl").stat().st_size
            print(f"wrote {n:,} lines ({size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s")
        base, _ = peak_rss(small)
        rss, seconds = peak_rss(big)
    print(f"peak RSS of `tuigpt watch`: {rss:.0f} MiB on {args.lines:,} mixed lines (replayed and drawn in "
          f"{seconds:.1f} s), {base:.0f} MiB on 100 lines; goal < {GOAL_MIB} MiB: "
          f"{'met' if rss < GOAL_MIB else 'NOT met'}")


if __name__ == "__main__":
    main()
