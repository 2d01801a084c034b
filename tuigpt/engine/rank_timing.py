"""Per-rank timings of a data-parallel run: marks inside a step, the window between two gathers, the straggler
verdicts, and the ClusterStats rank 0 publishes (the Cluster pane)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from tuigpt.run.events import ClusterStats, Event, Notice
from tuigpt.run.numbers import comm_over_compute, rank_busy_ms, slowest_over_fastest

if TYPE_CHECKING:
    from tuigpt.engine.distributed import Cluster

STRAGGLER_RATIO = 1.15  # a rank this much slower than the fastest ...
STRAGGLER_GATHERS = 3  # ... at this many gathers in a row is reported as a straggler

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
        """Milliseconds between consecutive marks of the current step (call after the device has synchronised)."""
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

    def means(self) -> dict[str, float]:
        """Each of TIMING_FIELDS's mean over the steps since the last reset."""
        n = max(1, self.steps)
        return {k: self.sums[k] / n for k in TIMING_FIELDS}


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

    def gather_events(self, iter_num: int) -> list[Event]:
        """gather() as events to publish: the stats and a warning per straggler verdict (rank 0; none elsewhere)."""
        stats, warnings = self.gather(iter_num)
        return ([stats] if stats is not None else []) + [Notice(level="warning", message=w) for w in warnings]
