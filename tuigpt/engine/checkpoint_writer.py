"""Writing an eval's checkpoint while training goes on.

On a GPU the training thread mostly waits for its kernels, so the seconds a checkpoint takes to serialise and
write (the baby GPT's last.pt: ~0.27 s on an H100 host, eight of them before it reaches val 1.47; GPT-2 124M's
1.5 GB: seconds each) can overlap the next steps instead of holding them. The state is copied to host memory in
the training thread first (the weights and optimizer state as they are at that iteration: the next steps change
them in place), then a second thread writes it atomically, as a foreground write does; at most one write is in
flight. Its result (the file is on disk, or the disk refused it) is collected at a later iteration boundary, and
always before anything else reads or writes a checkpoint and before the run ends.

On a CPU the write stays in the foreground: there the training thread's math uses the cores the write would need,
and the copy would double the state's memory on the machine that has least of it. Measured on the 2-core VM
(benchmarks/checkpoint_overlap.py, the default config writing every 20 steps): 0.959x the loop's time, rounds
0.93-1.05, noise; its writes took 0.14 s of 25 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Written:
    """One file a checkpoint write put on disk: its path, the reason, and the seconds the write took."""

    path: Path
    reason: str
    seconds: float


@dataclass(frozen=True)
class WriteResult:
    """What one write did: its files in order, or the OSError that stopped it (the files before it are written;
    the one it was writing is untouched), and the seconds the training thread was held (the host copy)."""

    iter: int
    written: list[Written]
    error: OSError | None
    held_seconds: float
    failure: Exception | None = None  # anything else: a bug, raised again in the training thread


# the share of the host's available memory the copy may take: the rest is the process's and the machine's
HOST_COPY_SHARE = 0.5


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """What a host copy of the model's and the optimizer's tensors takes."""
    tensors = [*model.state_dict().values(),
               *(v for entry in optimizer.state.values() for v in entry.values() if isinstance(v, torch.Tensor))]
    return sum(t.numel() * t.element_size() for t in tensors)


def host_copy(value: Any) -> Any:
    """``value`` (a checkpoint state: dicts, lists and tensors) with every tensor copied to host memory: a
    snapshot the training thread may go on changing in place."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return value.to("cpu") if value.device.type != "cpu" else value.clone()
    if isinstance(value, dict):
        return {k: host_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(host_copy(v) for v in value)
    return value


class CheckpointWriter:
    """At most one checkpoint write in flight on a thread of its own (``background``), or none (the caller writes)."""

    def __init__(self, background: bool) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._result: WriteResult | None = None

    def takes(self, nbytes: int, available: int | None) -> str | None:
        """Why a state of ``nbytes`` is written in the foreground though the writer is on, or None (it takes it):
        its copy must fit in HOST_COPY_SHARE of the host's ``available`` memory (None: unknown, taken)."""
        if available is None or nbytes <= HOST_COPY_SHARE * available:
            return None
        return (f"its {nbytes / 2**30:.1f} GiB copy would take more than half the host's {available / 2**30:.1f} GiB "
                f"available")

    def submit(self, iter_num: int, state: dict[str, Any],
               writes: list[tuple[str, Callable[[dict[str, Any]], tuple[Path, float]]]]) -> None:
        """Write ``state`` by each of ``writes`` (reason, write function) in order on the writer thread; the
        previous write must have been collected (:meth:`collect`)."""
        assert self._thread is None, "collect the previous write first"
        t0 = time.perf_counter()
        snapshot = host_copy(state)
        held = time.perf_counter() - t0

        def work() -> None:
            written: list[Written] = []
            error: OSError | None = None
            failure: Exception | None = None
            for reason, write in writes:
                try:
                    path, seconds = write(snapshot)
                except OSError as exc:
                    error = exc
                    break
                except Exception as exc:  # noqa: BLE001 (the training thread raises it: the run fails as it would)
                    failure = exc
                    break
                written.append(Written(path, reason, seconds))
            self._result = WriteResult(iter_num, written, error, held, failure)

        self._thread = threading.Thread(target=work, name="tuigpt-checkpoint", daemon=True)
        self._thread.start()

    def collect(self, wait: bool) -> WriteResult | None:
        """The finished write's result (once), or None: none in flight, or (``wait`` False) not finished yet."""
        if self._thread is None or (not wait and self._thread.is_alive()):
            return None
        self._thread.join()
        self._thread = None
        result, self._result = self._result, None
        assert result is not None  # work() always leaves one
        if result.failure is not None:
            raise result.failure
        return result
