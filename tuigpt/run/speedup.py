"""Will more machines help? The predicted speed-up of N data-parallel ranks over one process (``tuigpt
netcheck``), its one-line verdict, and the measured speed-up it is checked against."""

from __future__ import annotations

from dataclasses import dataclass

WORTH_IT = 1.1  # a predicted speed-up from here on is worth the second machine ...
LOSS = 0.9  # ... below this the link and the waits cost more than the extra compute saves


@dataclass(frozen=True)
class SpeedupPrediction:
    one_ms: float  # one iteration on one process (the fastest rank's machine alone)
    ranks_ms: float  # one iteration on the N ranks
    speedup: float  # one_ms / ranks_ms


def predicted_speedup(fast_micro_ms: float, slow_micro_ms: float, ranks: int, accumulation: int, update_ms: float,
                      exposed_comm_ms: float, sync_ms: float) -> SpeedupPrediction:
    """Speed-up of N data-parallel ranks over one process training the same global batch (tokens/iteration).

    ``fast_micro_ms``: one micro-step (batch + forward + backward, no gradient sync) on the fastest rank;
    ``slow_micro_ms``: the same at the group's pace, i.e. the slowest rank's in each iteration (its noise included:
    every rank waits for whichever is last); ``accumulation``: gradient_accumulation_steps G, the global
    micro-batches per iteration; ``update_ms``: clip + optimizer step; ``exposed_comm_ms``: what DDP's bucketed
    all-reduce adds to the synced backward beyond what hides under it; ``sync_ms``: the small collectives of an
    iteration besides DDP's (the command broadcast at the boundary, the loss mean)::

        one      = G × fast_micro + update
        N ranks  = (G / N) × slow_micro + exposed_comm + update + sync
        speed-up = one / N ranks

    The single process compared with is the fastest machine alone. Evals and checkpoints are left out: this is
    training throughput (tokens/s); what a trainer does per iteration on top (events, logging) is the same on
    both sides and left out too.
    """
    one = accumulation * fast_micro_ms + update_ms
    if ranks <= 1:
        return SpeedupPrediction(one, one, 1.0)
    many = accumulation / ranks * slow_micro_ms + exposed_comm_ms + update_ms + sync_ms
    return SpeedupPrediction(one, many, one / many if many > 0 else float("nan"))


def speedup_verdict(speedup: float, ranks: int, hosts: int) -> str:
    """The one-line answer: "2 nodes ≈ 1.78× — worth it" / "the link costs more than it saves: 0.70×"."""
    who = f"{hosts} nodes" if hosts > 1 else f"{ranks} ranks"
    if speedup >= WORTH_IT:
        return f"{who} ≈ {speedup:.2f}× — worth it"
    if speedup >= LOSS:
        return f"{who} ≈ {speedup:.2f}× — no real gain: the link and the waits eat the extra compute"
    return f"the link costs more than it saves: {speedup:.2f}×"


def measured_speedup(one_ms_per_iter: float, ranks_ms_per_iter: float) -> float:
    """What netcheck's prediction is checked against: ms/iter of one process over ms/iter of the N ranks, the
    same global batch (tokens per iteration) in both."""
    return one_ms_per_iter / ranks_ms_per_iter
