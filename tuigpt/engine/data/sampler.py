"""Random training windows from memory-mapped tokens, reproducible and resumable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tuigpt.run.errors import UserError

if TYPE_CHECKING:
    from tuigpt.engine.data import TokenData


class BatchSampler:
    """Random contiguous windows, deterministic given the seed; state can be saved for exact resume.

    Train batches draw from a generator seeded with ``seed``; val batches from their own (seeded
    ``seed + 1``), so how often you evaluate never changes the training batches.
    """

    def __init__(
        self,
        data: TokenData,
        block_size: int,
        batch_size: int,
        device: torch.device | str = "cpu",
        seed: int = 1337,
    ) -> None:
        data.check_block_size(block_size)
        self.data = data
        self.block_size = block_size
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.seed = seed
        self._generators = {
            "train": torch.Generator().manual_seed(seed),
            "val": torch.Generator().manual_seed(seed + 1),
        }
        self._offsets = np.arange(block_size + 1)
        self.last_starts: dict[str, torch.Tensor] = {}  # per split, the token offsets of the last batch's windows
        # a train batch drawn ahead (prefetch): (generator state before it, x, y, starts)
        self._ahead: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def get_batch(self, split: str, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) int64 of shape (batch_size, block_size); y is x shifted one token left."""
        if split == "train" and generator is None and self._ahead is not None:
            _, x, y, starts = self._ahead
            self._ahead = None
            self.last_starts[split] = starts
            return x, y
        x, y, starts = self._draw(split, generator)
        self.last_starts[split] = starts  # NaN forensics name the windows of a bad batch
        return x, y

    def prefetch(self) -> None:
        """Draw the next train batch now and start its copy to the device; the next ``get_batch("train")`` returns
        it. A step calls this while its backward still runs on a GPU, so the next step starts without waiting for
        the batch. The sampler's state stays the state before this batch: a checkpoint taken in between resumes
        with it, and :meth:`load_state_dict` drops it."""
        if self._ahead is None:
            state = self._generators["train"].get_state()
            self._ahead = (state, *self._draw("train", None))

    def _draw(self, split: str, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = self.tokens(split)  # an unknown split fails before a generator is drawn from
        g = generator if generator is not None else self._generators[split]
        starts = torch.randint(len(tokens) - self.block_size - 1, (self.batch_size,), generator=g)
        return (*self.read(split, starts), starts)

    def tokens(self, split: str) -> Any:
        """The split's tokens (a memmap, or a ShardedTokens read the same way)."""
        if split == "train":
            return self.data.train
        if split == "val":
            return self.data.val
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'val'")

    def read(self, split: str, starts: torch.Tensor, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows of ``split`` that start at the token offsets ``starts``, as (x, y) on the device; ``rows``
        pads the batch to that many rows with ignored ones (targets -1, which the loss leaves out)."""
        # one fancy-indexing read of all B windows of T+1 tokens from the memmap
        windows = self.tokens(split)[starts.numpy()[:, None] + self._offsets]
        x = torch.from_numpy(np.ascontiguousarray(windows[:, :-1], dtype=np.int64))
        y = torch.from_numpy(np.ascontiguousarray(windows[:, 1:], dtype=np.int64))
        if rows is not None and rows > len(x):
            x = torch.cat([x, x[:1].expand(rows - len(x), -1)])
            y = torch.cat([y, torch.full((rows - len(y), y.size(1)), -1, dtype=y.dtype)])
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    def state_dict(self) -> dict:
        """Generator states (ByteTensors) and ints: loadable with ``torch.load(weights_only=True)``."""
        return {
            "seed": self.seed,
            "train_generator": self._ahead[0] if self._ahead is not None else self._generators["train"].get_state(),
            "val_generator": self._generators["val"].get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        restored = {split: torch.Generator() for split in self._generators}
        try:
            for split, g in restored.items():
                g.set_state(state[f"{split}_generator"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise UserError(f"the batch sampler state in the checkpoint is damaged ({type(e).__name__}: {e})") from e
        self._generators = restored  # all or nothing: a damaged state leaves the sampler as it was
        self._ahead = None
        self.seed = int(state.get("seed", self.seed))
