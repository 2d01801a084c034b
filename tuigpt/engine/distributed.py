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
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from tuigpt.engine.netroute import Route
from tuigpt.engine.netroute import choose as choose_interface
from tuigpt.run.config import TrainConfig
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import shown
from tuigpt.run.numbers import BatchSplit

BACKENDS = ("auto", "gloo", "nccl")
HEARTBEAT_SECONDS = 1.0  # while paused, rank 0 broadcasts at least this often so no peer hits ddp_timeout


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
        raise UserError(f"torchrun environment is malformed (WORLD_SIZE={shown(env.get('WORLD_SIZE'), 40)}, "
                        f"RANK={shown(env.get('RANK'), 40)}): launch with torchrun or without those variables") from None
    return LaunchEnv(rank=rank, local_rank=local_rank, world_size=world, local_world_size=local_world)


# The all-reduce bucket size; TUIGPT_DDP_BUCKET_MB overrides it (benchmarks/gpu_speed.sh sweeps it). On CUDA 100 MB:
# GPT-2 on 2 H200s (NCCL), alternating runs, measured 44.6/45.3 ms/iter against 57.2/59.7 at torch's 25 MB
# (docs/PERFORMANCE.md). gloo keeps torch's 25 MB: netcheck's and the two-node figures were measured with it.
DDP_BUCKET_MB = {"cuda": 100.0, "cpu": 25.0}


def ddp_options(device: torch.device, compiled: bool, micro_steps: int,
                environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The DistributedDataParallel keywords a run wraps its model with.

    - gradient_as_bucket_view: gradients live in the all-reduce buckets instead of being copied in and out (one
      copy of the gradients less in memory and time).
    - static_graph: every step uses every parameter in the same order (no unused parameters, no control flow), so
      DDP can skip its per-step bookkeeping. Only where it is valid: eager, and one micro-step a rank (with
      no_sync accumulation the reducer fails an internal assert, torch 2.13); TUIGPT_DDP_STATIC_GRAPH=0/1
      overrides it.
    - bucket_cap_mb: the all-reduce granularity, by device type (DDP_BUCKET_MB; TUIGPT_DDP_BUCKET_MB overrides it).
    """
    env = os.environ if environ is None else environ
    static = env.get("TUIGPT_DDP_STATIC_GRAPH", "").strip()
    bucket = env.get("TUIGPT_DDP_BUCKET_MB", "").strip()
    try:
        bucket_mb = float(bucket) if bucket else DDP_BUCKET_MB.get(device.type, 25.0)
    except ValueError:
        raise UserError(f"TUIGPT_DDP_BUCKET_MB={bucket!r} is not a number of megabytes (e.g. 25 or 100)") from None
    return {"device_ids": [device.index] if device.type == "cuda" else None, "gradient_as_bucket_view": True,
            "static_graph": static == "1" if static in ("0", "1") else not compiled and micro_steps == 1,
            "bucket_cap_mb": bucket_mb}


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

    def describe(self, split: BatchSplit, config: TrainConfig) -> str:
        """The run's first notice: who trains where, how the ranks share an iteration, how tokens/s and MFU count."""
        hosts = sorted(set(self.hosts))
        shared = ""
        if split.micro_batch != config.batch_size:  # the accumulation alone could not be shared: say what changed
            tokens = config.batch_size * config.gradient_accumulation_steps * config.block_size
            shared = (f" (batch_size {config.batch_size} x gradient_accumulation_steps "
                      f"{config.gradient_accumulation_steps} shared by {self.world_size} ranks as "
                      f"{split.micro_steps} x {split.micro_batch} each: the same {tokens:,} tokens per iteration, so "
                      f"the same learning dynamics, as one process)")
        return (f"data parallel: {self.world_size} ranks on {len(hosts)} host(s) ({', '.join(hosts)}), {self.link()}; "
                f"each rank runs {split.micro_steps} micro-step(s) of {split.micro_batch} x {config.block_size} tokens "
                f"per iteration{shared}; tokens/s count every rank, MFU is per device")

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

    def wrap(self, model: Any, compiled: bool, micro_steps: int) -> Any:
        """The model in DistributedDataParallel (with :func:`ddp_options`); its constructor broadcasts rank 0's
        weights, so every replica starts equal."""
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, **ddp_options(self.device, compiled, micro_steps))

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
        return (self.sum_tensor(tensor.reshape(1), what) / self.world_size).reshape(())

    def sum_tensor(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """Sum over ranks of a tensor on the training device (stays on the device: no sync)."""
        work = tensor.detach().to(self.comm_device, torch.float32).clone()
        self._guard(what, lambda: dist.all_reduce(work, op=dist.ReduceOp.SUM))
        return work.to(tensor.device)

    def reduce_buffers(self, tensors: Sequence[torch.Tensor], what: str) -> None:
        """All-reduce (SUM) every tensor in place, all launched before any is waited for, as DDP does with its
        gradient buckets (``tuigpt netcheck`` times the link this way)."""
        def op() -> None:
            works = [dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True) for t in tensors]
            for work in works:
                work.wait()

        self._guard(what, op)

    def all_gather_into(self, out: torch.Tensor, mine: torch.Tensor, what: str) -> Callable[[], None]:
        """Start gathering every rank's equal-sized ``mine`` into ``out`` (rank order along dim 0); returns what
        waits for it to land (the caller computes meanwhile). gloo's tensors go through the CPU."""
        on_device = self.comm_device == out.device
        target = out if on_device else torch.empty(out.shape, dtype=out.dtype, device=self.comm_device)
        source = mine if mine.device == self.comm_device else mine.to(self.comm_device)
        if self.backend == "nccl":  # one flat buffer, no copies
            work = self._guard(what, lambda: dist.all_gather_into_tensor(target, source, async_op=True))
        else:
            parts = list(target.chunk(self.world_size))
            work = self._guard(what, lambda: dist.all_gather(parts, source, async_op=True))

        def wait() -> None:
            self._guard(what, work.wait)
            if not on_device:
                out.copy_(target)

        return wait

    def gather_timings(self, means: dict[str, float]) -> list[dict[str, Any]]:
        """One all_gather of every rank's timing means (the same names on every rank): a dict per rank with its
        rank and host."""
        local = torch.tensor(list(means.values()), dtype=torch.float64, device=self.comm_device)
        parts = [torch.zeros_like(local) for _ in range(self.world_size)]
        self._guard("gathering timings", lambda: dist.all_gather(parts, local))
        out = []
        for rank, values in enumerate(parts):
            record: dict[str, Any] = {"rank": rank, "host": self.hosts[rank]}
            record.update({k: round(float(v), 3) for k, v in zip(means, values.tolist())})
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
