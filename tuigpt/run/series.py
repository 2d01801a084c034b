"""A run's loss curve, bounded however long the run: every iteration's loss and its smoothed value, the evals,
and the x axes the chart can put them on.

:class:`DownsampledSeries` keeps the last ``recent`` points at full resolution plus a whole-run view that halves
its resolution (merges pairs) whenever it reaches ``max_coarse`` points, so a million iterations cost the same
memory as four thousand. :class:`tuigpt.run.model.RunModel` owns one and takes it under its lock.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence

from tuigpt.run.numbers import loss_in_bits_per_byte

# (iteration, raw loss, smoothed loss, tokens seen, wall-clock time) — the last two None when unknown
# (old metrics files); they let the chart put tokens or time on the x axis
LossPoint = tuple[int, float, float, "int | None", "float | None"]
# (iteration, train loss, val loss, train bits per byte, val bits per byte) — the last two None in old records
EvalPoint = tuple[int, float, float, "float | None", "float | None"]


class DownsampledSeries:
    """Full resolution for the last ``recent`` points plus a bounded view of the whole run.

    The whole-run view is a list of buckets of ``stride`` consecutive points, each
    drawn at its first iteration with the mean of its values. When it reaches
    ``max_coarse`` buckets, neighbouring pairs merge and the stride doubles, so
    the view never holds more than ``max_coarse`` (+2) points.
    Not thread-safe on its own: :class:`~tuigpt.run.model.RunModel` holds the lock.
    """

    def __init__(self, recent: int = 2000, max_coarse: int = 2000) -> None:
        if max_coarse < 2 or max_coarse % 2:
            raise ValueError("max_coarse must be an even number >= 2")
        self.max_coarse = max_coarse
        self.stride = 1
        self._recent: deque[LossPoint] = deque(maxlen=recent)
        self._coarse: list[LossPoint] = []
        # the bucket being filled: first iteration, sums of values, count
        self._b_iter = 0
        self._b_loss = 0.0
        self._b_smooth = 0.0
        self._b_n = 0
        self._b_tokens: int | None = None
        self._b_time: float | None = None

    def __len__(self) -> int:
        """Points held in memory (what the bound is about)."""
        return len(self._recent) + len(self._coarse) + (1 if self._b_n else 0)

    def append(self, iteration: int, loss: float, smooth: float, tokens: int | None = None,
               when: float | None = None) -> None:
        if self._recent and iteration <= self._recent[-1][0]:
            self._truncate(iteration)  # a resume from an older checkpoint rewinds the curve
        self._recent.append((iteration, loss, smooth, tokens, when))
        if self._b_n == 0:
            self._b_iter, self._b_tokens, self._b_time = iteration, tokens, when
        self._b_loss += loss
        self._b_smooth += smooth
        self._b_n += 1
        if self._b_n >= self.stride:
            self._coarse.append((self._b_iter, self._b_loss / self._b_n, self._b_smooth / self._b_n, self._b_tokens, self._b_time))
            self._b_loss = self._b_smooth = 0.0
            self._b_n = 0
            if len(self._coarse) >= self.max_coarse:
                c = self._coarse
                self._coarse = [(c[k][0], (c[k][1] + c[k + 1][1]) / 2, (c[k][2] + c[k + 1][2]) / 2, c[k][3], c[k][4])
                                for k in range(0, len(c), 2)]
                self.stride *= 2

    def _truncate(self, iteration: int) -> None:
        while self._recent and self._recent[-1][0] >= iteration:
            self._recent.pop()
        while self._coarse and self._coarse[-1][0] >= iteration:
            self._coarse.pop()
        if self._b_n and self._b_iter >= iteration:
            self._b_loss = self._b_smooth = 0.0
            self._b_n = 0

    def recent(self, n: int | None = None) -> list[LossPoint]:
        """The last ``n`` points (all recent ones when None), oldest first."""
        if n is None or n >= len(self._recent):
            return list(self._recent)
        return [self._recent[k] for k in range(len(self._recent) - n, len(self._recent))]

    def whole(self) -> list[LossPoint]:
        """The whole run, downsampled, ending at the last point seen."""
        view = list(self._coarse)
        if self._b_n:
            view.append((self._b_iter, self._b_loss / self._b_n, self._b_smooth / self._b_n, self._b_tokens, self._b_time))
        if self._recent and (not view or view[-1][0] != self._recent[-1][0]):
            view.append(self._recent[-1])
        return view


# ---------------------------------------------------------------- x axes and a compared run

X_AXES = ("iter", "tokens", "time")  # what the loss chart's x axis can show (the `x` key cycles)


def x_values(points: Sequence[LossPoint], axis: str, t0: float | None = None) -> list[float | None]:
    """Each point's x: its iteration, tokens seen, or wall-clock seconds since ``t0`` (None when unknown)."""
    if axis == "iter":
        return [float(p[0]) for p in points]
    if axis == "tokens":
        return [None if p[3] is None else float(p[3]) for p in points]
    return [None if p[4] is None or t0 is None else p[4] - t0 for p in points]


def eval_x(evals: Sequence[EvalPoint], points: Sequence[LossPoint], axis: str, t0: float | None = None) -> list[float | None]:
    """Evals carry only their iteration: their x is that of the loss point at or just before it."""
    if axis == "iter":
        return [float(e[0]) for e in evals]
    iters = [p[0] for p in points]
    xs = x_values(points, axis, t0)
    out: list[float | None] = []
    for e in evals:
        k = bisect.bisect_right(iters, e[0]) - 1
        out.append(xs[k] if k >= 0 else (xs[0] if xs else None))
    return out


# ---------------------------------------------------------------- bits per byte, when two runs' tokens differ


def units_for(own_tokenizer: str | None, own_bytes: float | None, other_tokenizer: str | None,
              other_bytes: float | None) -> tuple[str, str]:
    """("bpb" or "loss", why) for a chart of two runs: their losses per token compare only when their tokenizers
    are the same; when they differ, both are drawn in bits per byte, which needs each run's bytes per token (runs
    recorded before bits per byte have none: then losses, and the reason says they are not comparable)."""
    if own_tokenizer is None or other_tokenizer is None or own_tokenizer == other_tokenizer:
        return "loss", ""
    if own_bytes and other_bytes:
        return "bpb", f"tokenizers differ: {own_tokenizer} vs {other_tokenizer}"
    return "loss", f"tokenizers differ ({own_tokenizer} vs {other_tokenizer}) and a run predates bits per byte: " \
                   f"losses per token are not comparable"


def points_in_bits_per_byte(points: Sequence[LossPoint], bytes_per_token: float | None) -> list[LossPoint]:
    """Train loss points (raw and smoothed) in bits per byte of the run's training text."""
    return [(p[0], _bpb(p[1], bytes_per_token), _bpb(p[2], bytes_per_token), p[3], p[4]) for p in points]


def evals_in_bits_per_byte(evals: Sequence[EvalPoint], bytes_per_token: float | None) -> list[EvalPoint]:
    """Evals in bits per byte: each eval's own (measured on its batches) where it has them, else its loss over the
    training text's bytes per token."""
    return [(e[0], e[3] if e[3] is not None else _bpb(e[1], bytes_per_token),
             e[4] if e[4] is not None else _bpb(e[2], bytes_per_token), e[3], e[4]) for e in evals]


def _bpb(loss: float, bytes_per_token: float | None) -> float:
    value = loss_in_bits_per_byte(loss, bytes_per_token)
    return float("nan") if value is None else value
