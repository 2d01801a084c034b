"""Watching the loss for trouble the user should hear about."""

from __future__ import annotations

import collections

SPIKE_FACTOR = 3.0  # a loss this many times the recent median is reported as a spike
SPIKE_WINDOW = 50
SPIKE_MIN = 20  # losses seen before a median means anything


class SpikeWatch:
    """Reports a loss over SPIKE_FACTOR x the median of the last SPIKE_WINDOW ones."""

    def __init__(self) -> None:
        self._recent: collections.deque[float] = collections.deque(maxlen=SPIKE_WINDOW)

    def check(self, iteration: int, loss: float) -> str | None:
        """A warning for this loss, or None."""
        recent = self._recent
        message = None
        if len(recent) >= SPIKE_MIN:
            median = sorted(recent)[len(recent) // 2]
            if loss > SPIKE_FACTOR * median:
                message = (f"loss spike at iteration {iteration}: {loss:.4f} is {loss / median:.1f}x the recent "
                           f"median {median:.4f}")
        recent.append(loss)
        return message
