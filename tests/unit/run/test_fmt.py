"""One style per kind of number, everywhere."""

from __future__ import annotations

import time

from tuigpt.run import fmt


def test_durations() -> None:
    assert fmt.duration(12) == "12s"
    assert fmt.duration(185) == "3m05s"
    assert fmt.duration(3725) == "1h02m"
    assert fmt.duration(2 * 86400 + 3 * 3600 + 5) == "2d03h"
    assert fmt.duration(None) == "n/a" and fmt.duration(float("nan")) == "n/a" and fmt.duration(-1) == "n/a"


def test_counts_sizes_percentages_rates() -> None:
    assert fmt.count(950) == "950" and fmt.count(20_700) == "20.7k" and fmt.count(1.2e6) == "1.2M"
    assert fmt.count(3.4e9) == "3.4G" and fmt.count(None) == "n/a"
    assert fmt.size(512) == "512 B" and fmt.size(12 * 2**20) == "12.0 MiB" and fmt.size(1.5 * 2**30) == "1.5 GiB"
    assert fmt.percent(0.525) == "52.5%" and fmt.percent(None) == "n/a"
    assert fmt.flops(1.88e11) == "188 GFLOP/s" and fmt.flops(1.95e13) == "19.5 TFLOP/s"
    assert fmt.ms(37.12) == "37.1 ms" and fmt.ms(1240) == "1.24 s"
    assert fmt.steps(1000) == "1k" and fmt.steps(2500) == "2.5k" and fmt.steps(500) == "500"


def test_clock_times_and_ago() -> None:
    now = time.mktime((2026, 11, 22, 10, 0, 0, 0, 0, -1))
    assert fmt.clock(now + 3600, now) == "11:00"
    assert fmt.clock(now + 2 * 86400, now) == time.strftime("%a %H:%M", time.localtime(now + 2 * 86400))
    assert fmt.clock(now + 30 * 86400, now).startswith("2026-12-22")
    assert fmt.ago(12) == "12 s ago" and fmt.ago(300) == "5 min ago" and fmt.ago(3 * 86400) == "3 d ago"


def test_bar() -> None:
    assert fmt.bar(0.5, 4) == "██  " and fmt.bar(None, 3) == "···" and len(fmt.bar(1.7, 5)) == 5


def test_an_impossible_mfu_is_flagged_not_shown_plain() -> None:
    assert fmt.mfu(0.525) == "52.5%" and fmt.mfu(None) == "n/a"
    assert fmt.mfu(1.397) == "139.7% (impossible: the peak looks stale, run `tuigpt calibrate`)"
    assert fmt.mfu(1.397, short=True) == "139.7%?!"


def test_link_rates_are_in_bits_per_second() -> None:
    assert fmt.bandwidth(125e6) == "1 Gbit/s"
    assert fmt.bandwidth(117.5e6) == "940 Mbit/s"
    assert fmt.bandwidth(1.5e3) == "12 kbit/s"
    assert fmt.bandwidth(None) == fmt.NA
