"""Random training windows from memory-mapped tokens, reproducible and resumable."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

    def get_batch(self, split: str, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) int64 of shape (batch_size, block_size); y is x shifted one token left."""
        if split == "train":
            tokens = self.data.train
        elif split == "val":
            tokens = self.data.val
        else:
            raise ValueError(f"unknown split {split!r}: expected 'train' or 'val'")
        g = generator if generator is not None else self._generators[split]
        starts = torch.randint(len(tokens) - self.block_size - 1, (self.batch_size,), generator=g)
        self.last_starts[split] = starts  # NaN forensics name the windows of a bad batch
        # one fancy-indexing read of all B windows of T+1 tokens from the memmap
        windows = tokens[starts.numpy()[:, None] + self._offsets]
        x = torch.from_numpy(np.ascontiguousarray(windows[:, :-1], dtype=np.int64))
        y = torch.from_numpy(np.ascontiguousarray(windows[:, 1:], dtype=np.int64))
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    def state_dict(self) -> dict:
        """Generator states (ByteTensors) and ints: loadable with ``torch.load(weights_only=True)``."""
        return {
            "seed": self.seed,
            "train_generator": self._generators["train"].get_state(),
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
        self.seed = int(state.get("seed", self.seed))
