"""Two machines on one box: two Linux network namespaces joined by a veth pair, each with its own host name,
the link shaped like gigabit Ethernet or Wi-Fi, and optionally one side's CPU limited (a throttled laptop).

Used by tests/e2e/test_twonode.py and benchmarks/twonode_speedup.py. Needs root and iproute2 (`ip`, `tc`)
and `unshare`; :func:`unavailable` says why not where they are missing.

Shaping: ``tc netem`` where the kernel has it (delay, jitter, loss and rate in one qdisc). Kernels built
without CONFIG_NET_SCH_NETEM (no module to load) get ``tbf``: the rate is shaped exactly, no delay is added
(a cable's ~0.1 ms is below gloo's own round trip anyway), and the Wi-Fi profile's jitter is its rate
changing every RATE_STEP_S seconds, as a Wi-Fi link's rate adapts; the queue a slower rate builds is the
latency jitter. :attr:`NetnsPair.shaping` says which was used.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

SUBNET = "10.77.0"  # inside the two namespaces only: no clash with the host or with another pair
RATE_STEP_S = 0.1
_ids = itertools.count()


@dataclass(frozen=True)
class Profile:
    name: str
    rate_mbit: int
    delay_ms: float  # one way, netem only
    jitter_ms: float  # netem only
    loss_pct: float  # netem only
    rate_range_mbit: tuple[int, int] | None = None  # tbf: the rate wanders in this range (Wi-Fi)

    def netem(self) -> list[str]:
        args = ["netem", "delay", f"{self.delay_ms}ms"]
        if self.jitter_ms:
            args += [f"{self.jitter_ms}ms", "distribution", "normal"]
        if self.loss_pct:
            args += ["loss", f"{self.loss_pct}%"]
        return args + ["rate", f"{self.rate_mbit}mbit"]

    @staticmethod
    def tbf(rate_mbit: int) -> list[str]:
        # burst: 1 ms at the rate (32 KiB at least), so a small gradient cannot slip through unshaped;
        # latency: how long a packet may queue before it is dropped (a NIC's or access point's buffer)
        burst_kb = max(32, rate_mbit * 1000 // 8 // 1000)
        return ["tbf", "rate", f"{rate_mbit}mbit", "burst", f"{burst_kb}kb", "latency", "20ms"]


GIGABIT = Profile("gigabit", rate_mbit=1000, delay_ms=0.1, jitter_ms=0.0, loss_pct=0.0)
WIFI = Profile("wifi", rate_mbit=200, delay_ms=3.0, jitter_ms=2.0, loss_pct=0.1, rate_range_mbit=(60, 300))
PROFILES = {p.name: p for p in (GIGABIT, WIFI)}


def unavailable() -> str | None:
    """Why two shaped namespaces and cgroups cannot be made here, or None (tries a pair and a group)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc", "unshare", "taskset", "hostname"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (apt-get install iproute2 util-linux hostname)"
    try:
        NetnsPair().close()
        CpuGroup(owned=True).remove()
    except (RuntimeError, OSError) as exc:
        return f"cannot make them here: {exc}"
    return None


def _run(*cmd: str) -> str:
    done = subprocess.run(list(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout


class CpuGroup:
    """A cgroup for the processes of one "machine" (cgroup v2 where it has the cpu controller, else v1):
    ``quota`` caps them at that fraction of one CPU (a throttled laptop); ``owned`` gives them the largest CPU
    weight, so that on a shared box they get their core whatever else runs (a machine of their own)."""

    PERIOD_US = 10_000  # short periods: a quota is a steady slowdown, not 100 ms stalls
    V2_WEIGHT, V1_SHARES = 10_000, 102_400  # the v2 maximum, and the same weight in v1 shares

    def __init__(self, quota: float | None = None, owned: bool = False) -> None:
        name = f"tuigpt-test-{os.getpid()}-{next(_ids)}"
        root = Path("/sys/fs/cgroup")
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            self.path = root / name
            self.path.mkdir()
            if quota is not None:
                (self.path / "cpu.max").write_text(f"{self._quota(quota)} {self.PERIOD_US}")
            if owned:
                (self.path / "cpu.weight").write_text(str(self.V2_WEIGHT))
        else:
            self.path = root / "cpu" / name
            self.path.mkdir()
            if quota is not None:
                (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(self._quota(quota)))
            if owned:
                (self.path / "cpu.shares").write_text(str(self.V1_SHARES))
        self.procs = self.path / "cgroup.procs"

    def _quota(self, fraction: float) -> int:
        return max(1000, int(self.PERIOD_US * fraction))

    @property
    def prefix(self) -> list[str]:
        """Run a command inside the group: it joins, then execs the command."""
        return ["sh", "-c", f'echo $$ > {self.procs} && exec "$@"', "sh"]

    def add(self, pid: int) -> None:
        """Move a running process, all its threads, into the group (a laptop that starts to throttle)."""
        self.procs.write_text(str(pid))

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass


def pinned(cpu: int | None) -> list[str]:
    """The prefix that pins a command to one core."""
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


class NetnsPair:
    """Namespaces ``<prefix>a`` (node 0, SUBNET.1) and ``<prefix>b`` (node 1, SUBNET.2) on one veth pair."""

    def __init__(self, profile: Profile = GIGABIT) -> None:
        tag = f"tg{os.getpid() % 100000}x{next(_ids)}"
        self.ns = (f"{tag}a", f"{tag}b")
        self.dev = (f"{tag}a", f"{tag}b")  # one end in each namespace
        self.addr = (f"{SUBNET}.1", f"{SUBNET}.2")
        self.hostnames = ("tg-node0", "tg-node1")
        self.profile: Profile | None = None
        self.shaping = "none"
        self._batch: list[subprocess.Popen] = []
        self._wander: threading.Thread | None = None
        self._stop = threading.Event()
        try:
            self._up()
            self.shape(profile)
        except BaseException:
            self.close()  # nothing half made may stay behind
            raise

    def _up(self) -> None:
        for ns in self.ns:
            _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", self.dev[0], "type", "veth", "peer", "name", self.dev[1])
        for ns, dev, addr in zip(self.ns, self.dev, self.addr):
            _run("ip", "link", "set", dev, "netns", ns)
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")

    def shape(self, profile: Profile) -> None:
        """Shape both directions (each end's egress) like ``profile``."""
        self._stop_wander()
        for ns, dev in zip(self.ns, self.dev):
            subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], capture_output=True)
        try:
            for ns, dev in zip(self.ns, self.dev):
                _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", *profile.netem())
            self.shaping = "netem " + " ".join(profile.netem()[1:])
        except RuntimeError:  # no sch_netem in this kernel: shape the rate with tbf
            for ns, dev in zip(self.ns, self.dev):
                subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], capture_output=True)
                _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", *Profile.tbf(profile.rate_mbit))
            self.shaping = f"tbf rate {profile.rate_mbit}mbit (no netem in this kernel: no added delay)"
            if profile.rate_range_mbit is not None:
                lo, hi = profile.rate_range_mbit
                self.shaping = (f"tbf rate wandering {lo}-{hi} Mbit/s every {RATE_STEP_S * 1000:.0f} ms (no netem "
                                f"in this kernel: jitter from the changing rate and its queue)")
                self._start_wander(lo, hi)
        self.profile = profile

    def _start_wander(self, lo: int, hi: int) -> None:
        self._stop.clear()
        self._batch = [subprocess.Popen(["tc", "-n", ns, "-force", "-batch", "-"], stdin=subprocess.PIPE, text=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for ns in self.ns]
        rng = random.Random(0)

        def wander() -> None:
            while not self._stop.wait(RATE_STEP_S):
                for proc, dev in zip(self._batch, self.dev):
                    rate = rng.randint(lo, hi)
                    try:
                        proc.stdin.write("qdisc change dev %s root %s\n" % (dev, " ".join(Profile.tbf(rate))))
                        proc.stdin.flush()
                    except (BrokenPipeError, ValueError):
                        return

        self._wander = threading.Thread(target=wander, name="netns-wifi-rate", daemon=True)
        self._wander.start()

    def _stop_wander(self) -> None:
        self._stop.set()
        if self._wander is not None:
            self._wander.join()
            self._wander = None
        for proc in self._batch:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            proc.wait()
        self._batch = []

    def command(self, node: int, argv: Sequence[str], cpu: int | None = None,
                group: CpuGroup | None = None) -> list[str]:
        """``argv`` as run on ``node``: in its namespace, under its own host name (a private UTS namespace),
        pinned to ``cpu`` and inside ``group`` when given."""
        # the cgroup is joined before entering the namespace: `ip netns exec` mounts a sysfs of its own, without
        # /sys/fs/cgroup
        return [*(group.prefix if group is not None else []), "ip", "netns", "exec", self.ns[node], "unshare",
                "--uts", "sh", "-c", f'hostname {self.hostnames[node]} && exec "$@"', "sh", *pinned(cpu), *argv]

    def torchrun(self, node: int, python: str, args: Sequence[str], port: int = 29500) -> list[str]:
        """`torchrun --nnodes=2 --node_rank=node --master_addr=<node 0> -m tuigpt ARGS` as launched on a node."""
        return [python, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}", "--nproc_per_node=1",
                f"--master_addr={self.addr[0]}", f"--master_port={port}", "-m", "tuigpt", *args]

    def close(self) -> None:
        self._stop_wander()
        for ns in self.ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes its end of the veth with it
        subprocess.run(["ip", "link", "del", self.dev[0]], capture_output=True)  # a veth never moved into one

    def __enter__(self) -> "NetnsPair":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wall_ms_per_iter(metrics: Path, skip: int) -> float:
    """Wall-clock ms per iteration from a run's metrics.jsonl: the time between its iteration records after the
    first ``skip`` iterations (warm-up) and the last one, over the iterations between them. Boundaries, command
    broadcasts and cluster gathers included (what the run's end time feels); evals at either end are not."""
    from tuigpt.run.metrics_log import read_metrics

    iters = [r for r in read_metrics(metrics) if r.get("type") == "iter" and r["iter"] >= skip]
    first, last = iters[0], iters[-1]
    if last["iter"] <= first["iter"]:
        raise ValueError(f"{metrics}: too few iteration records after iteration {skip}")
    return (last["time"] - first["time"]) * 1000.0 / (last["iter"] - first["iter"])
