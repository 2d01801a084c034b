"""What the dashboards cost training: a headless run with log_to: [tensorboard, wandb, trackio] against the same
run with none, alternating in every round (the order swapped each round, so machine noise hits both alike).

Each variant is a real `tuigpt CONFIG --headless` process, the packages offline with their files in a temporary
folder. Read from each run's metrics.jsonl: steady tokens/s (wall-clock time between the iteration records after
the first 20%, so everything the process does per step counts, the dashboards' threads and the GIL they take
included), the time from the run's start record to its first iteration, the process's whole wall time (start
to exit: the packages' import and start, and finishing their runs at the end) and the CPU time it and the processes
it waited for used (W&B's wandb-core service among them). Prints each round and the medians, the ratio all/none of
steady tokens/s, and the extra CPU seconds of "all".

    python benchmarks/dashboards_overhead.py [CONFIG] [--iters N] [--rounds R] [--log_interval N] [--key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"none": "none", "all": "tensorboard,wandb,trackio"}


def measure(run_dir: Path) -> tuple[float, float]:
    """(steady tokens/s, seconds from the start record to the first iteration record)."""
    records = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    start = next(r for r in records if r["type"] == "start")
    iters = [r for r in records if r["type"] == "iter"]
    window = iters[len(iters) // 5:]
    seconds = window[-1]["time"] - window[0]["time"]
    return start["tokens_per_iter"] * (window[-1]["iter"] - window[0]["iter"]) / seconds, iters[0]["time"] - start["time"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], run_dir: Path, log_to: str, env: dict[str, str]) -> tuple[float, float, float, float]:
    """(steady tokens/s, first iteration after, wall seconds, CPU seconds) of one headless run."""
    t0, cpu0 = time.perf_counter(), children_cpu()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        subprocess.run([sys.executable, "-m", "tuigpt", *args, f"--log_to={log_to}", "--headless"], cwd=REPO,
                       stdout=log, stderr=subprocess.STDOUT, check=True, env=env)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    return (*measure(run_dir), wall, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "train_cpu_optimized.yaml"))
    parser.add_argument("--iters", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log_interval", type=int, default=None, help="log every N iterations (default: the config's)")
    args, rest = parser.parse_known_args()
    tmp = Path(tempfile.mkdtemp(prefix="tuigpt-dashboards-bench-"))
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_ERROR_REPORTING="false",
               WANDB_CONFIG_DIR=str(tmp / "wandb-config"), WANDB_CACHE_DIR=str(tmp / "wandb-cache"),
               WANDB_DATA_DIR=str(tmp / "wandb-data"), TRACKIO_DIR=str(tmp / "trackio"), HF_HUB_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False")
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in VARIANTS}
    try:
        for r in range(args.rounds):
            order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                run_name = f"r{r}-{name}"
                common = [args.config, f"--out_dir={tmp}", f"--run_name={run_name}", f"--max_iters={args.iters}",
                          "--eval_interval=1000000", *([f"--log_interval={args.log_interval}"] if args.log_interval
                                                       else []), *rest]
                results[name].append(run(common, tmp / run_name, VARIANTS[name], env))
            line = "  ".join(f"{name}: {results[name][-1][0]:,.0f} tok/s, first iter after "
                             f"{results[name][-1][1]:.2f} s, wall {results[name][-1][2]:.1f} s, CPU "
                             f"{results[name][-1][3]:.1f} s" for name in VARIANTS)
            print(f"round {r + 1}: {line}  ratio {results['all'][-1][0] / results['none'][-1][0]:.3f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [a[0] / n[0] for a, n in zip(results["all"], results["none"])]
    for name in VARIANTS:
        tps, first, wall, cpu = (statistics.median(v[k] for v in results[name]) for k in range(4))
        print(f"median {name:>4}: {tps:,.0f} tok/s steady, first iteration {first:.2f} s after the start, "
              f"process {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(f"steady tokens/s all/none: rounds {', '.join(f'{x:.3f}' for x in ratios)} -> median "
          f"{statistics.median(ratios):.3f}")
    extra = [a[3] - n[3] for a, n in zip(results["all"], results["none"])]
    print(f"CPU seconds all - none: rounds {', '.join(f'{x:.1f}' for x in extra)} -> median "
          f"{statistics.median(extra):.1f}")


if __name__ == "__main__":
    main()
