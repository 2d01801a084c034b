"""`tuigpt netcheck`: will these ranks train faster than one process? Measured on the config's own model.

Every rank (launched by torchrun exactly as for training) does the same, in lockstep:

1. assembles the config's model, optimizer and batch sampler (:func:`tuigpt.engine.build.assemble`) and wraps
   the model in DistributedDataParallel as the trainer does, so the gradients travel in DDP's own buckets;
2. times iterations shaped like the trainer's: the boundary broadcast (the gate's 17 words), the rank's
   micro-steps through the trainer's :class:`~tuigpt.engine.step.Stepper` with one extra micro-step under
   ``no_sync`` first (pure compute, to compare the synced backward with), the loss all-reduce, clip + optimizer
   step. :func:`~tuigpt.engine.rank_timing.split_step` turns the marks into compute and *exposed*
   communication (the synced backward minus a plain one), as for the Cluster pane. WARMUP_ROUNDS untimed
   first (DDP builds its buckets), then at least ``rounds`` and until ``min_seconds`` have been timed;
3. times the link alone: all-reduces of buffers the size of DDP's buckets, launched together as DDP launches
   them (→ all-reduce time, bus bandwidth), and one-number all-reduces back to back (→ latency);
4. gathers every rank's rounds; rank 0 predicts the speed-up with :func:`tuigpt.run.numbers.predicted_speedup`
   and words the verdict.

The pace of the group is taken round by round (the slowest rank of each iteration), and averaged: on a busy
or throttled machine the ranks take turns being late, and every iteration waits for the later one.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from tuigpt.engine.build import assemble
from tuigpt.engine.distributed import Cluster
from tuigpt.engine.gate import WORDS
from tuigpt.engine.rank_timing import STRAGGLER_RATIO, StepTimer, split_step
from tuigpt.engine.step import Stepper
from tuigpt.run import fmt
from tuigpt.run.config import TrainConfig
from tuigpt.run.numbers import rank_busy_ms, slowest_over_fastest
from tuigpt.run.speedup import WORTH_IT, SpeedupPrediction, predicted_speedup, speedup_verdict

ROUNDS = 5  # at least this many timed iterations ...
MIN_SECONDS = 3.0  # ... and more until this long has been timed (small models: many rounds, stable means)
MAX_ROUNDS = 500
WARMUP_ROUNDS = 2  # untimed: DDP builds its buckets on the first synced backward, allocations settle
LINK_ROUNDS = 10  # all-reduces of the gradient buckets, the link alone
LATENCY_ROUNDS = 20
ROUND_FIELDS = ("data_ms", "compute_ms", "comm_ms", "backward_ms", "sync_ms", "update_ms")
HIDDEN_ENOUGH = 0.25  # an all-reduce of which at most this fraction is exposed "hides under the backward"
SHORT_ITERATION_MS = 20.0  # below this the prediction says it leaves the trainer's per-iteration costs out
GRAD_BYTES = 4  # gradients are float32 (autocast leaves the parameters, and so their gradients, in float32)


@dataclass
class NetcheckResult:
    """What rank 0 knows after a netcheck: every rank's means, the group's pace, the link, the prediction."""

    config: TrainConfig
    world_size: int
    hosts: list[str]
    link: str  # "gloo over tnv0 (10.77.0.1), the interface routing to master_addr ..."
    ranks: list[dict[str, Any]]  # per rank: rank, host, threads and the mean of each ROUND_FIELDS (per micro-step)
    pace: dict[str, float]  # the group's: micro_ms, comm_ms, update_ms, sync_ms (see group_pace)
    params: int
    buckets: list[int]  # DDP's gradient buckets, bytes
    allreduce_ms: float
    latency_ms: float
    rounds: int
    prediction: SpeedupPrediction

    @property
    def slowest(self) -> dict[str, Any]:
        return max(self.ranks, key=rank_busy_ms)

    @property
    def verdict(self) -> str:
        return speedup_verdict(self.prediction.speedup, self.world_size, len(set(self.hosts)))

    @property
    def backward_ms(self) -> float:
        """The backward the all-reduce can hide under: the slowest rank's, per micro-step."""
        return float(self.slowest["backward_ms"])

    def hides(self) -> bool:
        """Whether the all-reduce hides under the backward, as measured: at most HIDDEN_ENOUGH of it is exposed."""
        return self.pace["comm_ms"] <= HIDDEN_ENOUGH * self.allreduce_ms

    def _comm_line(self) -> str:
        reduce, exposed, backward = fmt.ms(self.allreduce_ms), fmt.ms(self.pace["comm_ms"]), fmt.ms(self.backward_ms)
        if self.hides():
            return (f"comm vs backward: the all-reduce ({reduce}) hides under the backward ({backward} per "
                    f"micro-step): {exposed} of it is exposed per iteration")
        if self.allreduce_ms > self.backward_ms:
            why = f"it outlasts the backward ({backward} per micro-step)"
        elif len(self.buckets) == 1:
            why = (f"all gradients travel in one DDP bucket, sent only when the backward ({backward} per micro-step) "
                   f"has ended")
        else:
            why = f"the backward ({backward} per micro-step) cannot cover it on these cores"
        return f"comm vs backward: the all-reduce ({reduce}) does not hide: {exposed} per iteration is exposed; {why}"

    def lines(self) -> list[str]:
        """The report, its first line naming the interface."""
        c, p, pace = self.config, self.prediction, self.pace
        hosts = sorted(set(self.hosts))
        per_rank = c.gradient_accumulation_steps // self.world_size
        grad = sum(self.buckets)
        out = [f"netcheck: {self.world_size} ranks on {len(hosts)} host(s) ({', '.join(hosts)}), {self.link}",
               f"model: {self.params / 1e6:.2f}M parameters, {fmt.size(grad)} of gradients in {len(self.buckets)} "
               f"DDP bucket(s); {c.gradient_accumulation_steps} micro-batch(es) of {c.batch_size} x {c.block_size} "
               f"tokens per iteration, {per_rank} per rank; means of {self.rounds} timed iterations"]
        for r in self.ranks:
            out.append(f"rank {r['rank']} on {r['host']}: compute {fmt.ms(rank_busy_ms(r))} per micro-step "
                       f"(data {fmt.ms(r['data_ms'])}, backward {fmt.ms(r['backward_ms'])}), exposed comm "
                       f"{fmt.ms(r['comm_ms'])}, update {fmt.ms(r['update_ms'])}, {r['threads']} thread(s)")
        busbw = 2 * (self.world_size - 1) / self.world_size * grad / (self.allreduce_ms / 1000.0) \
            if self.allreduce_ms > 0 else None
        out.append(f"link: all-reduce of the gradients {fmt.ms(self.allreduce_ms)} ({fmt.bandwidth(busbw)} bus "
                   f"bandwidth), latency {fmt.ms(self.latency_ms)} per small collective back to back, "
                   f"{fmt.ms(pace['sync_ms'])} per iteration for the command broadcast and the loss mean")
        out.append(self._comm_line())
        ratio = slowest_over_fastest(self.ranks)
        slow = self.slowest
        flag = (f": rank {slow['rank']} ({slow['host']}) is a straggler, every rank waits for it"
                if ratio >= STRAGGLER_RATIO else f" (slowest: rank {slow['rank']} on {slow['host']})")
        out.append(f"balance: slowest/fastest rank {ratio:.2f}{flag}")
        fast = min(rank_busy_ms(r) for r in self.ranks)
        out.append(f"prediction: one process {fmt.ms(p.one_ms)}/iter ({c.gradient_accumulation_steps} x "
                   f"{fmt.ms(fast)} + {fmt.ms(pace['update_ms'])} update), {self.world_size} ranks "
                   f"{fmt.ms(p.ranks_ms)}/iter ({per_rank} x {fmt.ms(pace['micro_ms'])} at the slowest rank's pace "
                   f"+ {fmt.ms(pace['comm_ms'])} comm + {fmt.ms(pace['update_ms'])} update + "
                   f"{fmt.ms(pace['sync_ms'])} sync)")
        if p.ranks_ms < SHORT_ITERATION_MS:
            out.append(f"note: an iteration of {fmt.ms(p.ranks_ms)} is mostly fixed costs; the trainer's own "
                       f"bookkeeping per iteration (~1-3 ms) is not in this prediction: expect less")
        out.append(f"verdict: {self.verdict}{self._advice()}")
        return out

    def _advice(self) -> str:
        if self.prediction.speedup >= WORTH_IT:
            return ""
        if slowest_over_fastest(self.ranks) >= STRAGGLER_RATIO:
            slow = self.slowest
            return f" (rank {slow['rank']} on {slow['host']} is slow: cool it, or free it of other work)"
        return (" (the all-reduce and the syncs are paid once per iteration: raise gradient_accumulation_steps or "
                "batch_size to amortise them, or use a faster link)")

    def summary(self) -> str:
        """One line for a training run's events log (``tuigpt CONFIG --netcheck``)."""
        return (f"netcheck: {self.verdict} (predicted {fmt.ms(self.prediction.one_ms)}/iter on one process, "
                f"{fmt.ms(self.prediction.ranks_ms)}/iter on {self.world_size} ranks; all-reduce "
                f"{fmt.ms(self.allreduce_ms)}, {fmt.ms(self.pace['comm_ms'])} of it exposed, vs backward "
                f"{fmt.ms(self.backward_ms)})")


def measure(config: TrainConfig, cluster: Cluster, rounds: int = ROUNDS,
            min_seconds: float = MIN_SECONDS) -> NetcheckResult | None:
    """Run the measurement on this rank (every rank must call it); rank 0 gets the result, the others None."""
    built = assemble(config, cluster)
    device = built.setup.device
    micro = built.split.micro_steps + 1  # + the no_sync micro-step
    model = cluster.wrap(built.model, False, micro)  # DDP as the trainer wraps it (eager: netcheck never compiles)
    stepper = Stepper(model, built.model, built.optimizer, built.scaler, built.sampler, built.setup.precision,
                      device, micro, config.grad_clip, cluster)
    timer = StepTimer(device)
    samples = []
    started = time.perf_counter()
    while True:
        done = len(samples) - WARMUP_ROUNDS
        go = cluster.rank == 0 and (done < rounds or (time.perf_counter() - started < min_seconds
                                                        and done < MAX_ROUNDS))
        sample = _round(stepper, cluster, timer, go)  # rank 0 decides, for every rank, in the round's broadcast
        if sample is None:
            break
        if len(samples) == WARMUP_ROUNDS - 1:
            started = time.perf_counter()
        samples.append(sample)
    samples = samples[WARMUP_ROUNDS:]
    buckets = _bucket_bytes(model, built.model)
    latency = _latency_ms(cluster)
    buffers = [torch.zeros(max(1, n // GRAD_BYTES), dtype=torch.float32, device=cluster.comm_device) for n in buckets]
    allreduce = []
    for _ in range(max(rounds, LINK_ROUNDS)):
        cluster.mean([0.0], "netcheck: lining the ranks up")
        t0 = time.perf_counter()
        cluster.reduce_buffers(buffers, "netcheck: timing the gradient all-reduce")
        allreduce.append((time.perf_counter() - t0) * 1000.0)
    everyone = cluster.gather_objects({"threads": built.setup.threads, "rounds": samples},
                                      "netcheck: gathering every rank's timings")
    params, split = built.model.num_params(non_embedding=False), built.split
    del stepper, model, built  # DDP sits in reference cycles: free it now, not beside the trainer's (--netcheck)
    gc.collect()
    if cluster.rank != 0:
        return None
    ranks, pace = group_pace(everyone, cluster.hosts)
    # the micro-steps of every rank in one iteration: what one process would run, one after another
    prediction = predicted_speedup(min(rank_busy_ms(r) for r in ranks), pace["micro_ms"], cluster.world_size,
                                   split.micro_steps * cluster.world_size, update_ms=pace["update_ms"],
                                   exposed_comm_ms=pace["comm_ms"], sync_ms=pace["sync_ms"])
    return NetcheckResult(config=config, world_size=cluster.world_size, hosts=list(cluster.hosts), link=cluster.link(),
                          ranks=ranks, pace=pace, params=params, buckets=buckets,
                          allreduce_ms=statistics.median(allreduce), latency_ms=latency, rounds=len(samples),
                          prediction=prediction)


def _round(stepper: Stepper, cluster: Cluster, timer: StepTimer, go: bool) -> dict[str, float] | None:
    """One training iteration's shape on this rank, timed: the boundary broadcast (cold, as the trainer's),
    the micro-steps (the first under no_sync), the loss all-reduce, clip + optimizer step. None: rank 0 said stop."""
    t0 = time.perf_counter()
    words = cluster.broadcast_words([int(go)] + [0] * (WORDS - 1) if cluster.rank == 0 else None, WORDS)
    sync = (time.perf_counter() - t0) * 1000.0
    if not words[0]:
        return None
    timer.start()
    timer.mark()
    loss_sum = torch.zeros((), device=stepper.device)
    for i in range(stepper.micro_steps):
        loss_sum += stepper.micro_step(i == stepper.micro_steps - 1, timer)
    stepper.sync()
    parts = split_step(timer.intervals(), stepper.micro_steps)
    t1 = time.perf_counter()
    loss_sum = cluster.mean_tensor(loss_sum, "netcheck: averaging the loss")
    stepper.sync()
    t2 = time.perf_counter()
    stepper.update(loss_sum)
    stepper.sync()
    t3 = time.perf_counter()
    n = stepper.micro_steps
    return {"data_ms": parts["data_ms"] / n, "compute_ms": parts["compute_ms"] / n, "comm_ms": parts["comm_ms"],
            "backward_ms": parts["backward_ms"] / n, "sync_ms": sync + (t2 - t1) * 1000.0,
            "update_ms": (t3 - t2) * 1000.0}


def group_pace(everyone: list[dict[str, Any]], hosts: list[str]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per rank: the mean of each timing over the rounds. The pace of the group: per round, the slowest rank's
    micro-step and that rank's exposed all-reduce (the others' includes waiting for it), the slowest update, and
    the smallest sync (the last rank to arrive waits least: the rest is skew, already in the slowest micro-step);
    means over the rounds. Means, not medians: a run's wall time is a sum, its stalls included."""
    ranks = []
    for rank, mine in enumerate(everyone):
        rows = mine["rounds"]
        record: dict[str, Any] = {"rank": rank, "host": hosts[rank], "threads": mine["threads"]}
        record.update({k: statistics.fmean(r[k] for r in rows) for k in ROUND_FIELDS})
        ranks.append(record)
    count = min(len(m["rounds"]) for m in everyone)
    micro, comm, update, sync = [], [], [], []
    for i in range(count):
        row = [m["rounds"][i] for m in everyone]
        slow = max(row, key=rank_busy_ms)
        micro.append(rank_busy_ms(slow))
        comm.append(slow["comm_ms"])
        update.append(max(r["update_ms"] for r in row))
        sync.append(min(r["sync_ms"] for r in row))
    pace = {"micro_ms": statistics.fmean(micro), "comm_ms": statistics.fmean(comm),
            "update_ms": statistics.fmean(update), "sync_ms": statistics.fmean(sync)}
    return ranks, pace


def _latency_ms(cluster: Cluster) -> float:
    samples = []
    for _ in range(LATENCY_ROUNDS):
        t0 = time.perf_counter()
        cluster.mean([0.0], "netcheck: timing the latency")
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def _bucket_bytes(ddp: DistributedDataParallel, model: torch.nn.Module) -> list[int]:
    """The sizes of DDP's gradient buckets (what travels per iteration), from DDP's own logging data; the whole
    gradient as one bucket where this torch does not say."""
    try:
        sizes = str(ddp._get_ddp_logging_data().get("bucket_sizes", ""))
        buckets = [int(s) for s in sizes.replace(" ", "").split(",") if s]
    except Exception:  # a private API: its absence must not stop the check
        buckets = []
    return buckets or [sum(p.numel() for p in model.parameters() if p.requires_grad) * GRAD_BYTES]
