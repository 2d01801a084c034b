"""Time to a validation loss: nanoGPT's "I only have a macbook" recipe against tuigpt's shipped laptop config.

Both run as a user runs them, as separate processes on this machine: nanoGPT's loop (benchmarks/nanogpt_loop.py:
4 layers x 128, context 64, batch 12, 2,000 iterations, lr 1e-3, fp32, eval every 250 with 20 batches a split)
and `tuigpt CONFIG --headless` (its own evals, checkpoints and dtype/compile choices included). The clock is
this script's, from starting the process to the eval line that first reports val <= the target; the run is then
stopped. The target is the val loss nanoGPT's recipe ends at in the first round (its README says 1.88; ~1.91 on
our 2-core box) unless --target gives one. Rounds alternate the order, so a busy spell hits both alike; the
ratio is tuigpt's time / nanoGPT's per round, and its median and spread are printed.

    python benchmarks/time_to_loss.py [--config configs/train_cpu_optimized.yaml] [--rounds 3] [--target 1.91]
        [--timeout 1200] [--data ../shared/data/tinyshakespeare.txt] [--key=value ...  (tuigpt overrides)]

Before the first round, tuigpt's dtype/compile trials for the config run once (`tuigpt calibrate CONFIG`), as
they would on a user's first run; pass --first-run to count them in round 1 instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NANO_EVAL = re.compile(r"^eval (\d+) val ([\d.]+) at")
TUI_EVAL = re.compile(r"^eval iter (\d+) \| train loss [\d.]+(?: · [\d.]+ bpb)? \| val loss ([\d.]+)")  # bpb since issue 25


def race(command: list[str], pattern: re.Pattern[str], target: float | None, timeout: float,
         env: dict[str, str], on_line: Callable[[str], None] | None = None) -> dict:
    """Run ``command``; the wall time when an eval line first reports val <= target (None target: run to the end).
    Returns {"reached": seconds or None, "cpu": the process's CPU seconds then, "evals": [(iter, val, seconds, cpu)],
    "total": seconds, "first": line}. ``on_line`` sees every line (benchmarks/recipe.py reads step times)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=REPO, bufsize=1, start_new_session=True)
    out: dict = {"reached": None, "cpu": None, "evals": [], "first": None, "tail": []}
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.perf_counter() - t0 < timeout:
            if not sel.select(timeout=1.0):
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            now = time.perf_counter() - t0
            out["tail"] = (out["tail"] + [line.rstrip()])[-5:]
            if on_line is not None:
                on_line(line)
            if out["first"] is None and line.startswith("tuigpt training"):
                out["first"] = line.rstrip()
            m = pattern.match(line)
            if m:
                val = float(m.group(2))
                out["evals"].append((int(m.group(1)), val, now, _cpu_seconds(proc.pid)))
                if target is not None and val <= target:
                    out["reached"], out["cpu"] = now, out["evals"][-1][3]
                    break
    finally:
        out["total"] = time.perf_counter() - t0
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the whole run, nothing else
        proc.wait()
    return out


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (with one thread a run, the time it would take alone)."""
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except Exception:  # noqa: BLE001 - a figure we cannot read is left out
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/train_cpu_optimized.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tinyshakespeare.txt"))
    parser.add_argument("--first-run", action="store_true")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for both (0: each one's default, the physical cores). With 1, the CPU "
                             "seconds printed beside the wall time are what a quiet core would take")
    args, rest = parser.parse_known_args()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    py = sys.executable
    import torch

    from tuigpt.telemetry.cpuinfo import read_cpu_info

    info = read_cpu_info()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} | {info.model_name} | {info.physical_cores} cores, "
          f"{info.logical_cores} threads | torch {torch.__version__} | Python {platform.python_version()} | "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ttl-") as tmp:
        threads = [f"--num_threads={args.threads}"] if args.threads else []
        tui = [py, "-m", "tuigpt", args.config, "--headless", f"--data_path={args.data}", f"--out_dir={tmp}",
               *threads, *rest]
        if not args.first_run:
            subprocess.run([py, "-m", "tuigpt", "calibrate", args.config, f"--data_path={args.data}", *threads,
                            *rest],
                           env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        nano = [py, "benchmarks/nanogpt_loop.py", f"--data={args.data}",
                *([f"--threads={args.threads}"] if args.threads else [])]
        target = args.target
        rows = []
        for r in range(args.rounds):
            order = ("nanogpt", "tuigpt") if r % 2 == 0 else ("tuigpt", "nanogpt")
            got = {}
            for who in order:
                if who == "nanogpt":
                    got[who] = race(nano, NANO_EVAL, target, args.timeout, env)
                    if target is None:  # the first nanoGPT run sets the target: the val its recipe ends at
                        target = got[who]["evals"][-1][1]
                        got[who]["reached"], got[who]["cpu"] = next((s, c) for _, v, s, c in got[who]["evals"]
                                                                    if v <= target)
                        print(f"target: val {target:.4f}, where nanoGPT's recipe ended", flush=True)
                else:
                    got[who] = race([*tui, f"--run_name=ttl{r}"], TUI_EVAL, target, args.timeout, env)
            n, t = got["nanogpt"], got["tuigpt"]
            ratio = t["reached"] / n["reached"] if t["reached"] and n["reached"] else None
            rows.append((n, t, ratio))
            print(f"round {r + 1} ({' then '.join(order)}): nanoGPT {_when(n, target)} · tuigpt {_when(t, target)} · "
                  f"ratio {f'{ratio:.2f}' if ratio else 'n/a'}", flush=True)
            if r == 0:
                print(f"  tuigpt: {t['first'] or t['tail']}", flush=True)
    ratios = [x for _, _, x in rows if x is not None]
    cpu = [t["cpu"] / n["cpu"] for n, t, _ in rows if t["cpu"] and n["cpu"]]
    nano_s = [n["reached"] for n, _, _ in rows if n["reached"]]
    tui_s = [t["reached"] for _, t, _ in rows if t["reached"]]
    print(f"\ntime to val <= {target:.4f} (wall-clock from process start, evals and checkpoints included), "
          f"{args.rounds} rounds")
    if nano_s:
        print(f"  nanoGPT macbook recipe: median {statistics.median(nano_s):.1f} s (rounds {_list(nano_s)})")
    if tui_s:
        print(f"  tuigpt {args.config} {' '.join(rest)}: median {statistics.median(tui_s):.1f} s "
              f"(rounds {_list(tui_s)})")
    if ratios:
        print(f"  tuigpt / nanoGPT: median {statistics.median(ratios):.2f} (rounds {_list(ratios, 2)}; "
              f"target <= 0.6)")
    if cpu:
        print(f"  in CPU seconds (rounds where both were measured at the target): tuigpt / nanoGPT median "
              f"{statistics.median(cpu):.2f} (rounds {_list(cpu, 2)})")


def _when(result: dict, target: float | None) -> str:
    last = result["evals"][-1] if result["evals"] else None
    if result["reached"] is not None:
        cpu = f", {result['cpu']:.1f} CPU s" if result.get("cpu") else ""
        return f"{result['reached']:.1f} s{cpu} (iter {last[0]}, val {last[1]:.4f})"
    ended = f"ended at iter {last[0]}, val {last[1]:.4f}" if last else f"no eval line; {result['tail']}"
    return f"did not reach {target} in {result['total']:.0f} s ({ended})"


def _list(values: list[float], digits: int = 1) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


if __name__ == "__main__":
    main()
