"""Data-parallel training over torch.distributed: who we are, the process group, and its small collectives.

The trainer stays one class; when torchrun started this process it gets a :class:`Cluster` and

- wraps the model in DistributedDataParallel (gradient all-reduce on the last micro-step only),
- broadcasts rank 0's commands at every iteration boundary (:meth:`Cluster.broadcast_words`, used by
  :mod:`tuigpt.engine.gate`),
- averages eval losses (:meth:`Cluster.mean`), gathers per-rank timings once per log interval
  (:meth:`Cluster.gather_timings`) and every rank's batch-sampler state before a checkpoint.

Every collective goes through this module, so a dead or hung peer always surfaces as one exception,
:class:`PeerLost`, within ``ddp_timeout`` seconds. Nothing here imports textual.
"""

from __future__ import annotations

import datetime
import gc
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from tuigpt.engine.netroute import Route
from tuigpt.engine.netroute import choose as choose_interface
from tuigpt.run.errors import UserError
from tuigpt.run.events import ClusterStats
from tuigpt.run.numbers import comm_over_compute, rank_busy_ms, slowest_over_fastest

BACKENDS = ("auto", "gloo", "nccl")
HEARTBEAT_SECONDS = 1.0  # while paused, rank 0 broadcasts at least this often so no peer hits ddp_timeout
STRAGGLER_RATIO = 1.15  # a rank this much slower than the fastest ...
STRAGGLER_GATHERS = 3  # ... at this many gathers in a row is reported as a straggler


class PeerLost(RuntimeError):
    """A collective failed or timed out: another rank died, hung or lost the network."""


@dataclass(frozen=True)
class LaunchEnv:
    """What torchrun tells a worker through its environment."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int


def launch_env(environ: dict[str, str] | None = None) -> LaunchEnv | None:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK), or None for a plain single process."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env["RANK"])
        local_rank = int(env.get("LOCAL_RANK", rank))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        raise UserError(f"torchrun environment is malformed (WORLD_SIZE={env.get('WORLD_SIZE')!r}, "
                        f"RANK={env.get('RANK')!r}): launch with torchrun or without those variables") from None
    return LaunchEnv(rank=rank, local_rank=local_rank, world_size=world, local_world_size=local_world)


def resolve_backend(requested: str, device: torch.device) -> str:
    """gloo for CPUs, NCCL for CUDA devices, unless the config names one."""
    if requested == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if requested == "nccl" and device.type != "cuda":
        raise UserError(f"ddp_backend=nccl needs CUDA devices but this run trains on {device.type}: "
                        f"use ddp_backend=gloo or ddp_backend=auto")
    return requested


def rank_seed(seed: int, rank: int) -> int:
    """The batch-sampler seed of a rank: rank 0 keeps ``seed`` (a 1-process run is unchanged); the
    others step by 2 because a sampler also uses seed + 1 for its val generator."""
    return seed + 2 * rank


def reseed(seed: int, rank: int, iter_num: int) -> int:
    """Seed for a rank that resumes without saved sampler state (the checkpoint came from fewer ranks):
    deterministic, and distinct from the seeds a fresh run draws at iteration 0."""
    return rank_seed(seed, rank) + 1_000_003 * (iter_num + 1)


# ---------------------------------------------------------------- per-rank timings

TIMING_FIELDS = ("ms_per_iter", "data_ms", "compute_ms", "comm_ms", "backward_ms")


class StepTimer:
    """Marks inside one optimizer step. On CUDA the marks are events on the compute stream (they time the
    device, not the kernel launches) and are read after the step has synchronised."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._marks: list[Any] = []

    def start(self) -> None:
        self._marks = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._marks.append(event)
        else:
            self._marks.append(time.perf_counter())

    def intervals(self) -> list[float]:
        """Milliseconds between consecutive marks (call after the device has synchronised)."""
        m = self._marks
        if self.cuda:
            return [m[i].elapsed_time(m[i + 1]) for i in range(len(m) - 1)]
        return [(m[i + 1] - m[i]) * 1000.0 for i in range(len(m) - 1)]


def split_step(intervals: Sequence[float], micro_steps: int) -> dict[str, float]:
    """data, compute, comm and backward milliseconds of one step from its marks.

    Each micro-step has three intervals: data (get_batch), forward, backward. Only the last
    micro-step's backward waits for the gradient all-reduce, so the exposed communication is
    that backward minus a backward without sync: the mean of the no_sync micro-steps' backwards,
    or, with one micro-step per rank, twice its forward (a backward costs twice the FLOPs).
    """
    data = [intervals[3 * i] for i in range(micro_steps)]
    fwd = [intervals[3 * i + 1] for i in range(micro_steps)]
    bwd = [intervals[3 * i + 2] for i in range(micro_steps)]
    plain_backward = sum(bwd[:-1]) / (micro_steps - 1) if micro_steps > 1 else 2.0 * fwd[-1]
    comm = max(0.0, bwd[-1] - plain_backward)
    backward = sum(bwd) - comm
    return {"data_ms": sum(data), "compute_ms": sum(fwd) + backward, "comm_ms": comm, "backward_ms": backward}


class TimingWindow:
    """Per-rank sums between two gathers."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(TIMING_FIELDS, 0.0)
        self.steps = 0

    def add(self, ms_per_iter: float, parts: dict[str, float]) -> None:
        self.sums["ms_per_iter"] += ms_per_iter
        for key, value in parts.items():
            self.sums[key] += value
        self.steps += 1

    def means(self) -> list[float]:
        n = max(1, self.steps)
        return [self.sums[k] / n for k in TIMING_FIELDS]


def cluster_summary(ranks: list[dict[str, Any]]) -> tuple[float, float | None]:
    """(slowest_over_fastest, comm_over_compute) of gathered per-rank means (formulas in run/numbers.py)."""
    return slowest_over_fastest(ranks), comm_over_compute(ranks)


class StragglerWatch:
    """Warns once when a rank is STRAGGLER_RATIO slower than the fastest for STRAGGLER_GATHERS gathers in
    a row, and once when communication outlasts the backward pass; warns again only after it cleared."""

    def __init__(self) -> None:
        self._slow_rank: int | None = None
        self._streak = 0
        self._straggler_warned = False
        self._comm_warned = False

    def check(self, ranks: list[dict[str, Any]]) -> tuple[int | None, list[str]]:
        """(rank flagged as straggler or None, warnings to publish now)."""
        warnings: list[str] = []
        busy = {r["rank"]: rank_busy_ms(r) for r in ranks}
        fastest = min(busy.values())
        slowest = max(busy, key=busy.__getitem__)
        if fastest > 0 and busy[slowest] >= STRAGGLER_RATIO * fastest:
            self._streak = self._streak + 1 if slowest == self._slow_rank else 1
            self._slow_rank = slowest
        else:
            self._streak, self._slow_rank, self._straggler_warned = 0, None, False
        straggler = self._slow_rank if self._streak >= STRAGGLER_GATHERS else None
        if straggler is not None and not self._straggler_warned:
            self._straggler_warned = True
            host = next(r["host"] for r in ranks if r["rank"] == straggler)
            warnings.append(f"straggler: rank {straggler} ({host}) works {busy[straggler] / fastest:.2f}x as long "
                            f"as the fastest rank per iteration over the last {self._streak} gathers; every rank "
                            f"waits for it (throttled CPU/GPU, busy machine, slow data?)")
        comm = sum(r["comm_ms"] for r in ranks) / len(ranks)
        backward = sum(r["backward_ms"] for r in ranks) / len(ranks)
        if backward > 0 and comm > backward:
            if not self._comm_warned:
                self._comm_warned = True
                warnings.append(f"communication outlasts the backward pass: the gradient all-reduce adds "
                                f"{comm:.1f} ms per iteration after a {backward:.1f} ms backward (slow network? "
                                f"raise gradient_accumulation_steps or batch_size to amortise it)")
        else:
            self._comm_warned = False
        return straggler, warnings


# ---------------------------------------------------------------- the process group


class Cluster:
    """This process's place in the group and the few collectives the trainer needs."""

    def __init__(self, env: LaunchEnv, backend: str, device: torch.device, timeout: float) -> None:
        self.rank = env.rank
        self.local_rank = env.local_rank
        self.world_size = env.world_size
        self.local_world_size = env.local_world_size
        self.backend = backend
        self.device = device  # this rank's training device
        self.timeout = timeout
        # NCCL collectives need CUDA tensors; gloo takes CPU tensors
        self.comm_device = device if backend == "nccl" else torch.device("cpu")
        self.host = socket.gethostname()
        self.hosts: list[str] = [self.host] * self.world_size
        self.route: Route | None = None  # gloo: the interface chosen to reach master_addr
        self.interfaces: list[str] = []  # every rank's, after start()

    def describe(self, micro_steps: int, batch_size: int, block_size: int) -> str:
        """The run's first notice: who trains where, and how tokens/s and MFU count."""
        hosts = sorted(set(self.hosts))
        return (f"data parallel: {self.world_size} ranks on {len(hosts)} host(s) ({', '.join(hosts)}), "
                f"{self.link()}; each rank runs {micro_steps} micro-step(s) of {batch_size} x {block_size} tokens "
                f"per iteration; tokens/s count every rank, MFU is per device")

    def link(self) -> str:
        """The backend and, for gloo, every host's interface: 'gloo over tnv0 (10.77.0.1), the interface ...'."""
        if self.route is None:
            return self.backend
        others = sorted({f"{iface} on {host}" for host, iface in zip(self.hosts, self.interfaces)
                         if host != self.host})
        return f"gloo over {self.route.describe()}" + (f" (other hosts: {', '.join(others)})" if others else "")

    def start(self) -> None:
        """Join the group (blocks until every rank has arrived, at most ``timeout`` seconds)."""
        if self.backend == "nccl":
            torch.cuda.set_device(self.device)
            # a hung NCCL collective then raises after `timeout` instead of aborting the process
            os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
        elif self.backend == "gloo":  # before init: gloo reads GLOO_SOCKET_IFNAME when it creates its device
            self.route = choose_interface(os.environ.get("MASTER_ADDR", "127.0.0.1"),
                                          int(os.environ.get("MASTER_PORT", "29500")),
                                          multi_node=self.world_size > self.local_world_size)
        try:
            dist.init_process_group(self.backend, timeout=datetime.timedelta(seconds=self.timeout),
                                    rank=self.rank, world_size=self.world_size)
        except Exception as exc:
            raise PeerLost(f"rank {self.rank} could not join the process group within {self.timeout:g}s "
                           f"({first_line(exc)})") from exc
        hosts: list[Any] = [None] * self.world_size
        mine = (self.host, self.route.interface if self.route is not None else "")
        self._guard("exchanging host names", lambda: dist.all_gather_object(hosts, mine))
        self.hosts = [str(h[0]) for h in hosts]
        self.interfaces = [str(h[1]) for h in hosts]

    def close(self) -> None:
        """Leave the group. Call it once nothing uses the group any more: DDP holds it in reference cycles, which
        are collected first, so gloo's threads end here and not during interpreter teardown (where gloo aborts
        the process, "terminate called without an active exception", and torchrun reports the rank as failed)."""
        gc.collect()
        if dist.is_initialized():
            dist.destroy_process_group()

    def _guard(self, what: str, op: Callable[[], Any]) -> Any:
        try:
            return op()
        except PeerLost:
            raise
        except Exception as exc:  # gloo/NCCL raise RuntimeError subclasses, timeouts included
            raise PeerLost(f"rank {self.rank} lost the group while {what} ({first_line(exc)})") from exc

    def broadcast_words(self, words: list[int] | None, size: int) -> list[int]:
        """Rank 0's ``words`` (int64) on every rank."""
        tensor = torch.tensor(words, dtype=torch.int64) if words is not None else torch.zeros(size, dtype=torch.int64)
        tensor = tensor.to(self.comm_device)
        self._guard("broadcasting commands", lambda: dist.broadcast(tensor, src=0))
        return tensor.tolist()

    def mean(self, values: Sequence[float], what: str = "averaging losses") -> list[float]:
        """Element-wise mean over ranks (SUM / world: gloo has no AVG)."""
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.comm_device)
        self._guard(what, lambda: dist.all_reduce(tensor, op=dist.ReduceOp.SUM))
        return (tensor / self.world_size).tolist()

    def mean_tensor(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """Mean over ranks of a scalar tensor on the training device (stays on the device)."""
        work = tensor.detach().to(self.comm_device, torch.float32).reshape(1).clone()
        self._guard(what, lambda: dist.all_reduce(work, op=dist.ReduceOp.SUM))
        return (work / self.world_size).to(tensor.device).reshape(())

    def reduce_buffers(self, tensors: Sequence[torch.Tensor], what: str) -> None:
        """All-reduce (SUM) every tensor in place, all launched before any is waited for, as DDP does with its
        gradient buckets (``tuigpt netcheck`` times the link this way)."""
        def op() -> None:
            works = [dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True) for t in tensors]
            for work in works:
                work.wait()

        self._guard(what, op)

    def gather_timings(self, means: list[float]) -> list[dict[str, Any]]:
        """One all_gather of every rank's TIMING_FIELDS means: a dict per rank with its rank and host."""
        local = torch.tensor(means, dtype=torch.float64, device=self.comm_device)
        parts = [torch.zeros_like(local) for _ in range(self.world_size)]
        self._guard("gathering timings", lambda: dist.all_gather(parts, local))
        out = []
        for rank, values in enumerate(parts):
            record: dict[str, Any] = {"rank": rank, "host": self.hosts[rank]}
            record.update({k: round(float(v), 3) for k, v in zip(TIMING_FIELDS, values.tolist())})
            out.append(record)
        return out

    def gather_objects(self, obj: Any, what: str) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order, on every rank."""
        out: list[Any] = [None] * self.world_size
        self._guard(what, lambda: dist.all_gather_object(out, obj))
        return out


def start_cluster(env: LaunchEnv, requested_backend: str, device: torch.device, timeout: float) -> Cluster:
    """Resolve the backend for ``device`` and join the group."""
    cluster = Cluster(env, resolve_backend(requested_backend, device), device, timeout)
    cluster.start()
    return cluster


def first_line(exc: BaseException) -> str:
    """The backend's reason without its source path: "Connection reset by peer", "Timed out ..."."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    reason = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", text[0]).split(". ")[0]
    return f"{type(exc).__name__}: {reason[:160]}"


def rank_device(requested: str, env: LaunchEnv) -> torch.device:
    """The device a rank trains on: cuda:LOCAL_RANK wherever the config asks for CUDA (auto included)."""
    from tuigpt.engine.device import resolve_device

    device = resolve_device(requested)
    if device.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {env.local_rank} has no GPU: this host has {torch.cuda.device_count()} "
                            f"CUDA device(s); launch at most that many processes per node (--nproc_per_node)")
        return torch.device("cuda", env.local_rank)
    return device


class ClusterReport:
    """Per-rank timings between two gathers and the straggler verdicts: what rank 0 publishes as ClusterStats."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._window = TimingWindow()
        self._watch = StragglerWatch()

    def add(self, ms_per_iter: float, parts: dict[str, float]) -> None:
        self._window.add(ms_per_iter, parts)

    def gather(self, iter_num: int) -> tuple[ClusterStats | None, list[str]]:
        """One all_gather on every rank; rank 0 gets (the stats, warnings to publish), the others (None, [])."""
        ranks = self.cluster.gather_timings(self._window.means())
        self._window.reset()
        if self.cluster.rank != 0:
            return None, []
        ratio, comm = cluster_summary(ranks)
        straggler, warnings = self._watch.check(ranks)
        stats = ClusterStats(iter=iter_num, ranks=ranks, slowest_over_fastest=round(ratio, 4),
                             comm_over_compute=None if comm is None else round(comm, 4), straggler=straggler,
                             backend=self.cluster.backend)
        return stats, warnings
