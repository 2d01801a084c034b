"""Does a run that ends at a time end on time? One headless `tuigpt CONFIG --time T` run, started and timed by this
script, in one of these scenarios:

    plain     nothing happens to it
    slow      halfway through its time, a cgroup CPU quota (v1 cpu controller, or v2 cpu.max) holds it to half
              the CPU it was using (1 CPU of 2), or with --slow hog, as many busy processes as there are cores
              start beside it; what the run itself measured before and after is printed
    pause     halfway, `pause` goes to its control socket, and `resume` 30 s later (a time budget's end moves 30 s
              later; with --until, the deadline does not move)
    resume    the run ends, then `--resume --time T2` (--resume-time) continues it from stable.pt: the second
              run is timed against its own deadline, and its history is checked (one record an iteration, in
              order, from 0 to its end; the first plan's cooldown kept aside as metrics.final-N.jsonl)

It prints the deadline, when the run's last line came ("done at iter ...": the final eval and checkpoint are on
disk) and when the process exited, each against the deadline, and the issue's bar: within max(2%, 5 s).

    flock -x /tmp/tuigpt-cpu.lock python benchmarks/deadline_timing.py --time 2m [--scenario plain|slow|pause]
        [--slow cgroup|hog] [--config configs/train_cpu_optimized.yaml] [--key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


class Quota:
    """Hold a process (every thread) to ``cpus`` CPUs with the cgroup CPU controller; undone on exit."""

    def __init__(self, pid: int, cpus: float) -> None:
        self.path: Path | None = None
        v1 = Path("/sys/fs/cgroup/cpu")
        if (v1 / "cpu.cfs_quota_us").exists():
            self.path = v1 / f"tuigpt-deadline-{os.getpid()}-{pid}"
            self.path.mkdir()
            period = int((v1 / "cpu.cfs_period_us").read_text())
            (self.path / "cpu.cfs_period_us").write_text(str(period))
            (self.path / "cpu.cfs_quota_us").write_text(str(int(period * cpus)))
        elif (Path("/sys/fs/cgroup") / "cgroup.controllers").exists():
            self.path = Path("/sys/fs/cgroup") / f"tuigpt-deadline-{os.getpid()}-{pid}"
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{int(100000 * cpus)} 100000")
        else:
            raise SystemExit("no writable cgroup CPU controller here: use --slow hog")
        (self.path / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        if self.path is None:
            return
        root = self.path.parent
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                (root / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        self.path.rmdir()


class Hogs:
    """One busy process per core (the slowdown a second job on the machine causes)."""

    def __init__(self) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def send(sock_path: Path, command: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(sock_path))
        s.sendall(json.dumps({"cmd": command}).encode() + b"\n")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", default=None, help="a time budget, e.g. 2m")
    parser.add_argument("--until", default=None, help="a deadline instead, e.g. 14:30")
    parser.add_argument("--scenario", choices=["plain", "slow", "pause", "resume"], default="plain")
    parser.add_argument("--slow", choices=["cgroup", "hog"], default="cgroup")
    parser.add_argument("--pause", type=float, default=30.0)
    parser.add_argument("--resume-time", default="1m", help="the resume scenario's second budget")
    parser.add_argument("--config", default="configs/train_cpu_optimized.yaml")
    args, extra = parser.parse_known_args()
    if (args.time is None) == (args.until is None):
        raise SystemExit("give --time or --until")

    with tempfile.TemporaryDirectory(prefix="deadline-") as tmp:
        end_args = ["--time", args.time] if args.time else ["--until", args.until]
        timed(args, end_args, tmp, extra, args.scenario if args.scenario != "resume" else "plain")
        if args.scenario == "resume":
            timed(args, ["--resume", "--time", args.resume_time], tmp, extra, "plain")
            history(Path(tmp) / "timing")


def timed(args: argparse.Namespace, end_args: list[str], tmp: str, extra: list[str], scenario: str) -> None:
    """One run, timed against its deadline."""
    from tuigpt.run.deadline import parse_duration, resolve_deadline

    command = [sys.executable, "-m", "tuigpt", args.config, "--headless", *end_args, f"--data_path={DATA}",
               f"--out_dir={tmp}", "--run_name=timing", *extra]
    started = time.time()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    budget = end_args[end_args.index("--time") + 1] if "--time" in end_args else None
    deadline = started + parse_duration(budget) if budget else resolve_deadline(args.until, started)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    halfway = started + (deadline - started) / 2
    while time.time() < halfway and proc.poll() is None:
        time.sleep(0.1)
    slow = None
    paused = 0.0
    if proc.poll() is None and scenario == "slow":
        slow = Quota(proc.pid, 1.0) if args.slow == "cgroup" else Hogs()
        print(f"{time.time() - started:7.1f} s  slowdown on ({args.slow})", flush=True)
    elif proc.poll() is None and scenario == "pause":
        sock = Path(tmp) / "timing" / "control.sock"
        send(sock, "pause")
        t = time.time()
        print(f"{t - started:7.1f} s  paused", flush=True)
        time.sleep(args.pause)
        send(sock, "resume")
        paused = time.time() - t
        print(f"{time.time() - started:7.1f} s  resumed after {paused:.1f} s", flush=True)
    try:
        code = proc.wait()
    finally:
        if slow is not None:
            slow.close()
    exited = time.time()
    reader.join(10)
    if budget and scenario == "pause":
        deadline += paused  # a time budget counts run time: the pause moves its end
    for t, line in lines:
        if line.startswith(("tuigpt ", "plan ", "info: cooldown", "info: resume", "warning: plan", "done at",
                            "stopped at", "eval iter", "error")):
            print(f"{t - started:7.1f} s  {line[:160]}")
    done_at = next((t for t, line in reversed(lines) if re.match(r"(done|stopped) at iter", line)), None)
    bar = max(0.02 * (deadline - started - paused), 5.0)
    print(f"\n{' '.join(command[2:])}\nscenario {scenario}" + (f" ({args.slow})" if scenario == "slow" else "")
          + f" · exit {code} · load average {os.getloadavg()[0]:.1f}")
    print(f"deadline        {deadline - started:8.1f} s after the start")
    if done_at is not None:
        print(f"last line       {done_at - started:8.1f} s ({done_at - deadline:+.1f} s against the deadline)")
    print(f"process exited  {exited - started:8.1f} s ({exited - deadline:+.1f} s against the deadline; "
          f"the bar is ±{bar:.1f} s: {'met' if abs(exited - deadline) <= bar else 'MISSED'})\n", flush=True)


def history(run_dir: Path) -> None:
    """The resumed run's history: every logged iteration once, in order, from the first run's start on."""
    from tuigpt.run.metrics_log import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    iters = [r["iter"] for r in records if r["type"] == "iter"]
    starts = [r for r in records if r["type"] == "start"]
    kept = sorted(run_dir.glob("metrics.final-*.jsonl"))
    ordered = iters == sorted(iters) and len(set(iters)) == len(iters)
    print(f"history: {len(starts)} sessions, {len(iters)} logged iterations from {iters[0] if iters else '-'} to "
          f"{iters[-1] if iters else '-'}, {'in order, none twice' if ordered else 'OUT OF ORDER OR REPEATED'}; "
          f"kept aside: {', '.join(p.name for p in kept) or 'nothing'}; final models: "
          f"{', '.join(p.name for p in sorted(run_dir.glob('final-*.pt'))) or 'none'}")

if __name__ == "__main__":
    main()
