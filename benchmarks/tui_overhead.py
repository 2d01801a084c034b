"""Does the monitor slow training? Tokens/s with the Textual monitor vs --headless, same config, one run.

Each round trains CONFIG for --iters iterations twice, alternating: once headless (output to a
file) and once with the monitor drawing in a real terminal (a private tmux server, 120x40). The
throughput of each is read the same way: wall-clock time between the iteration records of
metrics.jsonl after the first 20% (warm-up), so everything the process does per step counts.
Prints tokens/s per round and the median ratio monitor/headless (target >= 0.97).

    python benchmarks/tui_overhead.py [CONFIG] [--iters N] [--rounds R] [--key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tokens_per_sec(run_dir: Path) -> float:
    records = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    start = next(r for r in records if r["type"] == "start")
    iters = [r for r in records if r["type"] == "iter"]
    window = iters[len(iters) // 5:]
    seconds = window[-1]["time"] - window[0]["time"]
    return start["tokens_per_iter"] * (window[-1]["iter"] - window[0]["iter"]) / seconds


def run_headless(args: list[str], run_dir: Path) -> float:
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        subprocess.run([sys.executable, "-m", "tuigpt", *args, "--headless"], cwd=REPO, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    return tokens_per_sec(run_dir)


def run_monitor(args: list[str], run_dir: Path) -> float:
    socket = f"tuigpt-bench-{os.getpid()}"
    done = run_dir.parent / f"{run_dir.name}.exit"
    quoted = " ".join(f"'{a}'" for a in args)
    command = (f"cd {REPO} && env -u COLUMNS -u LINES {sys.executable} -m tuigpt {quoted}; "
               f"echo $? > {done}")
    subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", "b", "-x", "120", "-y", "40", command],
                   check=True)
    try:
        while True:  # the monitor stays open on DONE: read the screen, then press q
            screen = subprocess.run(["tmux", "-L", socket, "capture-pane", "-p", "-t", "b"], capture_output=True,
                                    text=True).stdout
            if " DONE " in screen:
                subprocess.run(["tmux", "-L", socket, "send-keys", "-t", "b", "q"])
                break
            if done.exists():
                raise RuntimeError(f"the monitor exited early; screen:\n{screen}")
            time.sleep(0.5)
        while not done.exists():
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    return tokens_per_sec(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "train_shakespeare_char_tiny.yaml"))
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args, overrides = parser.parse_known_args()
    if shutil.which("tmux") is None:
        sys.exit("needs tmux")
    results: dict[str, list[float]] = {"headless": [], "monitor": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("headless", "monitor") if r % 2 == 0 else ("monitor", "headless")
            for mode in order:
                name = f"{mode}{r}"
                common = [args.config, f"--max_iters={args.iters}", f"--eval_interval={args.iters}",
                          "--log_interval=1", f"--out_dir={tmp}", f"--run_name={name}", *overrides]
                runner = run_headless if mode == "headless" else run_monitor
                results[mode].append(runner(common, Path(tmp) / name))
            print(f"round {r + 1}: headless {results['headless'][-1]:,.0f} tok/s | "
                  f"monitor {results['monitor'][-1]:,.0f} tok/s", flush=True)
    ratios = [m / h for m, h in zip(results["monitor"], results["headless"])]
    print(f"{Path(args.config).name} {' '.join(overrides)} | {args.iters} iterations x {args.rounds} rounds")
    print(f"monitor/headless tokens/s: median {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)}); target >= 0.97")


if __name__ == "__main__":
    main()
