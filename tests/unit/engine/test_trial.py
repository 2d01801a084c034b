"""A trial times two variants of the run's step in alternating rounds, leaves the RNG alone, survives OOM."""

from __future__ import annotations

import pytest
import torch

from tuigpt.engine import trial
from tuigpt.engine.model import ModelArgs
from tuigpt.engine.trial import Variant, time_pair

ARGS = ModelArgs(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=16)
CPU = torch.device("cpu")


def test_alternating_rounds_and_the_rng_left_as_it_was() -> None:
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    t = time_pair(ARGS, 4, CPU, Variant("float32"), Variant("bfloat16"), budget_seconds=0.0, min_rounds=3,
                  round_seconds=0.01)
    assert torch.equal(torch.get_rng_state(), before)  # a run that measured first trains like one that did not
    assert t.rounds == 3 and len(t.ratios) == 3 and not t.failed
    assert set(t.ms) == set(t.best_ms) == set(t.first_ms) == {"float32", "bf16 autocast"}
    assert t.speedup == pytest.approx(sorted(t.ratios)[1])  # the median round
    assert t.best_ratio == pytest.approx(t.best_ms["float32"] / t.best_ms["bf16 autocast"])


def test_a_variant_out_of_memory_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = trial._Runner.step

    def step(self, x, y):  # noqa: ANN001
        if self.variant.dtype == "bfloat16":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.2 GiB")
        return real_step(self, x, y)

    monkeypatch.setattr(trial._Runner, "step", step)
    t = time_pair(ARGS, 4, CPU, Variant("float32"), Variant("bfloat16"), budget_seconds=0.0)
    assert t.failed == {"bf16 autocast": "does not fit"} and t.ratios == [] and t.speedup is None


def test_stop_if_ends_the_trial_after_the_first_variant() -> None:
    seen: list[float] = []
    t = time_pair(ARGS, 4, CPU, Variant("float32"), Variant("float32", compiled=True),
                  stop_if=lambda ms: seen.append(ms) or "too short")
    assert t.skipped == "too short" and len(seen) == 1 and seen[0] > 0
    assert "float32 compiled" not in t.first_ms  # nothing was compiled
