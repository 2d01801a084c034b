"""How much CPU the telemetry thread costs: must stay under 1% of one core at a 1 s interval.

Runs the real CPU and GPU readers for ~10 s while the main thread sleeps, then reads
the telemetry thread's own CPU time (user + system, from /proc via psutil) and prints it
as a percentage of one core. Usage: python benchmarks/telemetry_overhead.py [seconds] [interval]
"""

from __future__ import annotations

import sys
import threading
import time

import psutil

from tuigpt.run.events import Event
from tuigpt.telemetry.cpu import CpuReader
from tuigpt.telemetry.gpu import GpuReader
from tuigpt.telemetry.poller import TelemetryPoller


def thread_cpu_seconds(native_id: int) -> float:
    for t in psutil.Process().threads():
        if t.id == native_id:
            return t.user_time + t.system_time
    raise LookupError(f"thread {native_id} not found")


def main(seconds: float = 10.0, interval: float = 1.0) -> int:
    published: list[Event] = []
    telemetry = TelemetryPoller(published.append, {"cpu": CpuReader(), "gpu": GpuReader()}, interval=interval)
    process = psutil.Process()
    proc_before = sum(process.cpu_times()[:2])
    telemetry.start()
    thread = next(t for t in threading.enumerate() if t.name == "tuigpt-telemetry")
    wall0 = time.monotonic()
    time.sleep(seconds)
    used = thread_cpu_seconds(thread.native_id)  # read before stop: the thread's record goes with it
    wall = time.monotonic() - wall0
    telemetry.stop()
    proc_used = sum(process.cpu_times()[:2]) - proc_before
    percent = used / wall * 100
    print(f"telemetry thread: {used * 1000:.1f} ms CPU over {wall:.1f} s wall, {len(published)} snapshots "
          f"at {interval:g} s interval -> {percent:.3f}% of one core")
    print(f"whole process meanwhile (main thread asleep): {proc_used * 1000:.1f} ms CPU -> {proc_used / wall * 100:.3f}%")
    print("OK: under 1% of one core" if percent < 1.0 else "TOO EXPENSIVE: over 1% of one core")
    return 0 if percent < 1.0 else 1


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:3]]
    sys.exit(main(*args))
