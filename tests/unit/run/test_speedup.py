"""The predicted speed-up of N ranks over one process (netcheck's formula), its verdict, the measured one."""

from __future__ import annotations

import pytest

from tuigpt.run.speedup import measured_speedup, predicted_speedup, speedup_verdict


def test_two_equal_ranks_on_a_free_link_come_close_to_twice_one() -> None:
    # 4 micro-steps of 100 ms + a 10 ms update alone; 2 per rank + the same update, 1 ms of syncs
    p = predicted_speedup(100.0, 100.0, 2, 4, update_ms=10.0, exposed_comm_ms=0.0, sync_ms=1.0)
    assert p.one_ms == 410.0 and p.ranks_ms == 211.0
    assert p.speedup == pytest.approx(410 / 211)
    assert speedup_verdict(p.speedup, 2, 2) == "2 nodes ≈ 1.94× — worth it"
    assert predicted_speedup(100.0, 100.0, 1, 4, 10.0, 0.0, 0.0).speedup == 1.0


def test_a_slow_link_or_a_straggler_can_make_two_machines_slower_than_one() -> None:
    slow_link = predicted_speedup(100.0, 100.0, 2, 2, update_ms=10.0, exposed_comm_ms=150.0, sync_ms=5.0)
    assert slow_link.speedup == pytest.approx(210 / 265)
    assert speedup_verdict(slow_link.speedup, 2, 2) == "the link costs more than it saves: 0.79×"
    # the group steps at the slowest rank's pace; one process is the fastest machine alone
    straggler = predicted_speedup(100.0, 190.0, 2, 2, update_ms=10.0, exposed_comm_ms=0.0, sync_ms=0.0)
    assert straggler.speedup == pytest.approx(210 / 200)
    assert speedup_verdict(straggler.speedup, 2, 1).startswith("2 ranks ≈ 1.05× — no real gain")


def test_measured_speedup_is_one_process_over_the_ranks() -> None:
    assert measured_speedup(200.0, 125.0) == 1.6
