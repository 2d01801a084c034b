"""dtype: auto and compile: auto decide from what a trial measured, cache it per shape, and say why."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from tuigpt.engine import auto, trial
from tuigpt.engine.model import ModelArgs
from tuigpt.engine.trial import Timing, Variant
from tuigpt.telemetry import peak_cache as peak

ARGS = ModelArgs(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=16)
CPU = torch.device("cpu")


def dtype_entry(speedup: float, best: float | None = None, **kw) -> dict:
    return {"low": "bfloat16", "speedup": speedup, "best_ratio": speedup if best is None else best, "rounds": 5,
            "batch_measured": 32, "ratios": [speedup] * 5 if speedup is not None else [], **kw}


def test_low_precision_only_when_faster_by_more_than_noise() -> None:
    assert auto.dtype_decision(dtype_entry(1.42), 32) == ("bfloat16", "auto: measured 1.42x float32's speed here "
                                                                      "(± 0.00 round to round), 5 rounds")
    name, why = auto.dtype_decision(dtype_entry(0.73), 32)
    assert name == "float32" and "bf16 autocast measured 0.73x float32's speed" in why
    assert auto.dtype_decision(dtype_entry(1.01), 32)[0] == "float32"  # within noise: the safe dtype
    # the median says faster, the least disturbed rounds say slower: too close to call
    assert auto.dtype_decision(dtype_entry(1.06, best=0.97), 32)[0] == "float32"


def test_a_win_must_beat_the_round_to_round_spread() -> None:
    """compile: auto flipped 0.95x / 1.78x / 1.14x across runs of one config on a shared box (issue 27): a median
    that clears the margin while the rounds disagree by more than it is no win."""
    noisy = dtype_entry(1.20, ratios=[0.95, 1.20, 1.78, 1.14, 1.25])  # median 1.20, ± 0.42
    name, why = auto.dtype_decision(noisy, 32)
    assert name == "float32" and "1.20x float32's speed here (± 0.42 round to round: within the spread" in why
    steady = dtype_entry(1.20, ratios=[1.18, 1.20, 1.22, 1.19, 1.21])
    assert auto.dtype_decision(steady, 32) == ("bfloat16", "auto: measured 1.20x float32's speed here (± 0.02 round "
                                                           "to round), 5 rounds")
    entry = compile_entry(2.0, 10_050.0)
    assert not auto.compile_decision({**entry, "ratios": [1.0, 2.0, 3.2]}, 5_000)[0]


def test_a_load_that_changed_while_timing_decides_nothing_and_is_not_cached(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path) -> None:
    """Another process that starts halfway through the rounds makes the variant timed in the quiet rounds look
    fast: the rounds are timed again once, and a second change keeps the safe choice without caching it."""
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path))
    shares = iter([0.02, 0.02, 0.55, 0.02, 0.03, 0.60])  # each set of 3 rounds: quiet, then a second trainer starts

    class ChangingLoad:
        def stop(self, min_seconds: float = 0.0):  # noqa: ANN202
            from tuigpt.telemetry.load import Load

            return Load(next(shares), 2, None)

    monkeypatch.setattr(trial, "LoadMeter", ChangingLoad)
    monkeypatch.setattr(auto, "time_pair", functools.partial(trial.time_pair, budget_seconds=0.0, round_seconds=0.01))
    entry = auto.dtype_entry(CPU, ARGS, 4, 1, "bfloat16", weight_decay=0.1, grad_clip=1.0, say=lambda _: None)
    assert entry["retimed"] == "other processes used 2% → 55% of 2 CPUs"  # the first rounds, voided
    name, why = auto.dtype_decision(entry, 4)
    assert name == "float32" and "the machine's load changed while timing bf16 autocast, twice" in why
    assert "other processes used 2% → 60% of 2 CPUs" in why and "not cached" in why
    assert peak.cached_trial(auto.trial_key("dtype", CPU, ARGS, 4, 1, "|bfloat16")) is None  # measured again next run
    shares = iter([0.30, 0.31, 0.29])  # a steady second trainer: both variants slowed alike
    steady = auto.dtype_entry(CPU, ARGS, 4, 1, "bfloat16", weight_decay=0.1, grad_clip=1.0, say=lambda _: None)
    assert steady["load_change"] is None and steady["retimed"] is None
    assert peak.cached_trial(auto.trial_key("dtype", CPU, ARGS, 4, 1, "|bfloat16")) is not None


def test_on_a_saturated_machine_the_slowdown_is_what_shows_the_change() -> None:
    """82% of a CPU taken by others before four busy loops arrived, 96% after: the share barely moves, the slowdown
    put on this process does (measured on the team's 2-core box at load 14)."""
    from tuigpt.run.rounds import load_change

    assert load_change([0.82, 0.95, 0.96, 0.79], 1) is None
    changed = load_change([0.82, 0.95, 0.96, 0.79], 1, [1.2, 4.1, 4.3, 1.1])
    assert changed is not None and changed.describe() == ("other processes slowed this one 1.2x → 4.3x (they used "
                                                          "82% → 96% of 1 CPU)")
    assert load_change([0.82, 0.85], 1, [1.2, 1.5]) is None  # within STRETCH_CHANGE: a steady busy machine


def test_dtype_reason_says_how_it_was_measured() -> None:
    _, why = auto.dtype_decision(dtype_entry(1.5, batch_measured=16, cached=True, measured_at=0), 64)
    assert "at 16 of 64 sequences" in why and "cached 19" in why


def test_a_variant_that_does_not_fit_loses() -> None:
    assert auto.dtype_decision(dtype_entry(None, failed={"bf16 autocast": "does not fit"}), 8) == (
        "float32", "auto: bf16 autocast does not fit")
    assert auto.dtype_decision(dtype_entry(None, failed={"float32": "does not fit"}), 8)[0] == "bfloat16"


def compile_entry(speedup: float, first_ms: float, eager_ms: float = 100.0) -> dict:
    compiled = eager_ms / speedup
    return {"dtype": "float32", "speedup": speedup, "best_ratio": speedup, "rounds": 4, "ratios": [speedup] * 4,
            "ms": {"float32": eager_ms, "float32 compiled": compiled}, "first_ms": {"float32 compiled": first_ms},
            "warm_compile_ms": None, "scale": 1.0}


def test_compile_on_only_where_the_run_repays_its_first_step() -> None:
    # 2x faster saves 50 ms a step: a 10 s compile (beyond one step) is repaid after ~200 steps
    on, why = auto.compile_decision(compile_entry(2.0, 10_050.0), remaining_iters=5_000)
    assert on and "2.00x eager's speed" in why and "repaid after 200 iterations" in why
    off, why = auto.compile_decision(compile_entry(2.0, 10_050.0), remaining_iters=100)
    assert not off and "200 iterations to repay and 100 are left" in why
    slower, why = auto.compile_decision(compile_entry(0.95, 1_000.0), remaining_iters=10**6)
    assert not slower and "0.95x eager's speed" in why
    assert auto.compile_decision({"skipped": "a ~30s run is too short to repay a compile"}, 10) == (
        False, "auto: a ~30s run is too short to repay a compile")


def fake_timing(speedup: float) -> Timing:
    a, b = Variant("float32"), Variant("bfloat16")
    return Timing(a, b, batch_size=4, ms={a.label: 10.0 * speedup, b.label: 10.0},
                  best_ms={a.label: 10.0 * speedup, b.label: 10.0}, first_ms={a.label: 20.0, b.label: 20.0},
                  ratios=[speedup] * 3, seconds=1.0)


def test_the_answer_is_cached_per_shape_and_forgotten_by_calibrate(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path))
    calls: list[int] = []

    def time_pair(args, batch, device, a, b, **kw):  # noqa: ANN001, ANN003
        calls.append(batch)
        return fake_timing(1.8)

    monkeypatch.setattr(auto, "time_pair", time_pair)
    peak.store_peak("cpu|test|torch x|fp32|2 threads", {"flops": 1e11})
    said: list[str] = []
    first = auto.dtype_entry(CPU, ARGS, 4, 2, "bfloat16", weight_decay=0.1, grad_clip=1.0, say=said.append)
    again = auto.dtype_entry(CPU, ARGS, 4, 2, "bfloat16", weight_decay=0.1, grad_clip=1.0, say=said.append)
    assert calls == [4] and len(said) == 1  # measured once, announced once
    assert not first["cached"] and again["cached"] and again["speedup"] == pytest.approx(1.8)
    assert "cached" in auto.dtype_decision(again, 4)[1]
    auto.dtype_entry(CPU, ARGS, 8, 2, "bfloat16", weight_decay=0.1, grad_clip=1.0, say=said.append)
    auto.dtype_entry(CPU, ARGS, 4, 1, "bfloat16", weight_decay=0.1, grad_clip=1.0, say=said.append)
    assert calls == [4, 8, 4]  # another micro-batch, another thread count: measured anew
    assert peak.forget_trials() == 3
    assert peak.cached_peak("cpu|test|torch x|fp32|2 threads") == 1e11  # the peaks stay
    auto.dtype_entry(CPU, ARGS, 4, 2, "bfloat16", weight_decay=0.1, grad_clip=1.0, say=said.append)
    assert calls == [4, 8, 4, 4]


def test_cpu_trials_time_at_most_a_few_thousand_tokens() -> None:
    long = ModelArgs(vocab_size=65, block_size=256, n_layer=1, n_head=2, n_embd=16)
    assert auto.trial_batch(CPU, long, 64) == auto.CPU_TRIAL_TOKENS // 256
    assert auto.trial_batch(CPU, ARGS, 12) == 12
    assert auto.trial_batch(torch.device("cuda", 0), long, 64) == 64


def test_a_short_run_skips_the_compile_trial_without_timing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TUIGPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(auto, "time_pair", lambda *a, **k: pytest.fail("nothing may be timed"))
    entry = auto.compile_entry(CPU, ARGS, 4, 2, "float32", remaining_iters=500, weight_decay=0.1, grad_clip=1.0,
                               step_ms=30.0, say=lambda _m: pytest.fail("nothing to announce"))
    on, why = auto.compile_decision(entry, 500)
    assert not on and "a ~15s run is too short to repay a compile" in why


class UnmeasuredLoad:
    def stop(self, min_seconds: float = 0.0) -> None:
        return None


def test_a_run_measures_once_says_so_and_trains_as_if_it_had_not(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuigpt.engine.trainer import Trainer
    from tuigpt.run.events import RunStarted
    from tuigpt.telemetry import cpuinfo

    monkeypatch.setattr(trial, "LoadMeter", UnmeasuredLoad)  # a busy box's load changes would rightly void the trial
    info = cpuinfo.read_cpu_info()
    monkeypatch.setattr(cpuinfo, "read_cpu_info", lambda: cpuinfo.CpuInfo(
        info.model_name, info.arch, info.vendor, info.physical_cores, info.logical_cores,
        info.flags | {"avx512_bf16"}, info.max_mhz, info.base_mhz))
    first = Trainer(tiny_config(dtype="auto", n_embd=24, run_name="a"))
    assert "float32's speed here" in first.precision.reason and "cached" not in first.precision.reason
    second = Trainer(tiny_config(dtype="auto", compile="auto", n_embd=24, run_name="b"))
    assert second.precision == dataclasses.replace(first.precision, reason=second.precision.reason)
    assert "cached" in second.precision.reason
    for a, b in zip(first.raw_model.state_dict().values(), second.raw_model.state_dict().values()):
        assert torch.equal(a, b)  # the trial left the seed alone: the same initial weights
    started: list[RunStarted] = []
    second.bus.subscribe(lambda e: started.append(e) if isinstance(e, RunStarted) else None)
    second.run()
    assert started[0].dtype_reason == second.precision.reason
    assert started[0].compile_text == "compile off (auto: 10 iterations are too few to repay a compile)"


@pytest.mark.parametrize("budget, timed", [("10s", False), ("90s", False), ("8h", True)])
def test_a_run_that_ends_at_a_time_is_judged_by_its_time_for_a_compile(tiny_config, monkeypatch: pytest.MonkeyPatch,
                                                                        budget: str, timed: bool) -> None:
    """compile: auto on `--time`: an 8-hour run was judged "a ~8s run" (100 iterations at one step) and never
    compiled; a 10-second one spent 36 s timing a compile, then was refused for its set-up."""
    from tuigpt.engine.device import setup_device

    calls: list[dict] = []

    class Skipped:
        skipped = "(the test's trial: nothing timed)"

    def pair(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(kwargs)
        return Skipped()

    monkeypatch.setattr(auto, "time_pair", pair)
    # no cache; or a cached "on" that a run under 2 minutes must not take (a cold compile ate a 1-minute run)
    monkeypatch.setattr(auto, "cached_trial", lambda key: None if timed else pytest.fail("a short run reads no trial"))
    cfg = tiny_config(time_budget=budget, max_iters=None, compile="auto", dtype="float32")
    setup = setup_device(cfg, ARGS, store=False)
    assert bool(calls) == timed
    if timed:  # timed whole: an 8-hour run is not judged short from its first step's time
        assert calls[0]["stop_if"] is None
    assert not setup.compiled
    if not timed:
        assert f"a {budget} run is too short to repay a compile" in setup.compile_reason.replace("1m30s", "90s")
