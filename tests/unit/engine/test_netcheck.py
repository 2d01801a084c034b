"""netcheck's arithmetic and report: the group's pace from every rank's rounds, and what rank 0 prints."""

from __future__ import annotations

import pytest

from tuigpt.engine.netcheck import NetcheckResult, group_pace
from tuigpt.run.speedup import predicted_speedup


def _round(compute: float, comm: float = 2.0, sync: float = 1.0, update: float = 5.0) -> dict[str, float]:
    return {"data_ms": 0.0, "compute_ms": compute, "comm_ms": comm, "backward_ms": compute * 0.6, "sync_ms": sync,
            "update_ms": update}


def test_the_group_steps_at_the_slowest_rank_of_each_iteration() -> None:
    # the ranks take turns being late (a busy laptop): each iteration waits for the later one, so the pace is
    # the mean of the per-round maxima (110), not the larger of the two means (105)
    everyone = [{"threads": 1, "rounds": [_round(100.0, comm=9.0, sync=4.0), _round(110.0, comm=3.0, sync=1.0)]},
                {"threads": 1, "rounds": [_round(110.0, comm=3.0, sync=2.0), _round(100.0, comm=8.0, sync=3.0)]}]
    ranks, pace = group_pace(everyone, ["a", "b"])
    assert [(r["rank"], r["host"], r["compute_ms"]) for r in ranks] == [(0, "a", 105.0), (1, "b", 105.0)]
    assert pace["micro_ms"] == 110.0
    assert pace["comm_ms"] == 3.0  # the late rank's exposed all-reduce; the early one's includes waiting for it
    assert pace["sync_ms"] == 1.5  # the smaller of each round's (the rest is skew, already in the pace)


def _result(compute: tuple[float, float], comm: float, allreduce: float, buckets: int = 1) -> NetcheckResult:
    from tuigpt.run.config import TrainConfig

    everyone = [{"threads": 1, "rounds": [_round(c, comm=comm)] * 3} for c in compute]
    ranks, pace = group_pace(everyone, ["lap0", "lap1"])
    prediction = predicted_speedup(min(compute), pace["micro_ms"], 2, 2, pace["update_ms"], pace["comm_ms"],
                                   pace["sync_ms"])
    return NetcheckResult(config=TrainConfig(gradient_accumulation_steps=2, batch_size=4, block_size=32),
                          world_size=2, hosts=["lap0", "lap1"], link="gloo over eth0 (192.168.1.10), the interface "
                          "routing to master_addr 192.168.1.10", ranks=ranks, pace=pace, params=30_000,
                          buckets=[120_000 // buckets] * buckets, allreduce_ms=allreduce, latency_ms=0.3, rounds=3,
                          prediction=prediction)


def test_the_report_names_the_interface_first_and_ends_with_the_verdict() -> None:
    lines = _result((100.0, 102.0), comm=2.0, allreduce=20.0, buckets=2).lines()
    assert lines[0] == ("netcheck: 2 ranks on 2 host(s) (lap0, lap1), gloo over eth0 (192.168.1.10), the interface "
                        "routing to master_addr 192.168.1.10")
    assert lines[2].startswith("rank 0 on lap0: compute 100.0 ms per micro-step")
    assert "link: all-reduce of the gradients 20.0 ms (48 Mbit/s bus bandwidth)" in lines[4]
    assert lines[5] == ("comm vs backward: the all-reduce (20.0 ms) hides under the backward (61.2 ms per micro-step): "
                        "2.0 ms of it is exposed per iteration")
    assert lines[6] == "balance: slowest/fastest rank 1.02 (slowest: rank 1 on lap1)"
    # one: 2 x 100 + 5 = 205; two: 1 x 102 + 2 + 5 + 1 = 110
    assert lines[-1] == "verdict: 2 nodes ≈ 1.86× — worth it"


def test_a_slow_link_and_a_straggler_are_named_with_what_to_do() -> None:
    slow_link = _result((100.0, 100.0), comm=200.0, allreduce=250.0)  # 205 ms alone, 100 + 200 + 5 + 1 on two
    assert slow_link.lines()[5] == ("comm vs backward: the all-reduce (250.0 ms) does not hide: 200.0 ms per iteration "
                                    "is exposed; it outlasts the backward (60.0 ms per micro-step)")
    one_bucket = _result((100.0, 100.0), comm=18.0, allreduce=20.0)
    assert one_bucket.lines()[5].endswith("18.0 ms per iteration is exposed; all gradients travel in one DDP bucket, "
                                          "sent only when the backward (60.0 ms per micro-step) has ended")
    assert slow_link.lines()[-1].startswith("verdict: the link costs more than it saves: 0.67× (the all-reduce "
                                            "and the syncs are paid once per iteration: raise")
    straggler = _result((100.0, 180.0), comm=2.0, allreduce=20.0)
    assert straggler.lines()[6] == "balance: slowest/fastest rank 1.80: rank 1 (lap1) is a straggler, every rank " \
                                   "waits for it"
    assert straggler.prediction.speedup == pytest.approx(205 / 188)
    assert straggler.lines()[-1].endswith("(rank 1 on lap1 is slow: cool it, or free it of other work)")
    assert straggler.summary().startswith("netcheck: 2 nodes ≈ 1.09× — no real gain")


def test_a_few_millisecond_iteration_is_flagged_as_mostly_fixed_costs() -> None:
    lines = _result((3.0, 3.0), comm=2.0, allreduce=2.5).lines()
    assert lines[-2].startswith("note: an iteration of 11.0 ms is mostly fixed costs")  # 3 + 2 + 5 + 1
    assert not any(line.startswith("note:") for line in _result((100.0, 100.0), comm=2.0, allreduce=20.0).lines())
