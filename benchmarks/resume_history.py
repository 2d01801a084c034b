"""How long resuming takes to read back a long run's history: metrics.jsonl of N lines (default 1M).

    python benchmarks/resume_history.py [--lines N]

Writes a synthetic metrics.jsonl shaped like the writer's, then times cut_after (dropping the
records past the checkpoint) and load_history (what the monitor receives), and reports peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuigpt.run.metrics_log import cut_after, load_history  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.jsonl"
        with open(path, "w") as f:
            for i in range(1, args.lines + 1):
                f.write(json.dumps({"type": "iter", "time": 1.7e9 + i, "iter": i, "loss": 3.0, "lr": 1e-3,
                                    "ms_per_iter": 10.0, "tokens_per_sec": 1e4, "mfu": 0.5, "tokens_seen": i * 768,
                                    "train_seconds": i * 0.01}, separators=(",", ":")) + "\n")
                if i % 250 == 0:
                    f.write(json.dumps({"type": "eval", "iter": i, "train_loss": 2.0, "val_loss": 2.1},
                                       separators=(",", ":")) + "\n")
        size = path.stat().st_size
        t0 = time.perf_counter()
        cut_after(path, args.lines - 100)  # a crash lost the last 100 iterations
        t1 = time.perf_counter()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        records = load_history(path)
        t2 = time.perf_counter()
        peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before  # KiB
        print(f"metrics.jsonl: {args.lines:,} iteration lines, {size / 1e6:.0f} MB")
        print(f"cut_after:    {(t1 - t0) * 1000:.1f} ms")
        print(f"load_history: {t2 - t1:.2f} s -> {len(records):,} records for the monitor, "
              f"peak RSS grew by {peak_growth / 1024:.0f} MB")


if __name__ == "__main__":
    main()
