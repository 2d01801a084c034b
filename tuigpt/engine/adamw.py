"""torch's AdamW with a step that does not import torch's compiler.

torch wraps every optimizer's ``step`` in ``_use_grad_for_differentiable``, which imports ``torch._dynamo`` on each
call to put graph breaks around the update for torch.compile; the first import costs 1.2-1.3 s of a run's start on
the 2-core VM (``import torch`` itself: 1.4 s; docs/PERFORMANCE.md). tuigpt compiles the model alone, never the
optimizer, so this AdamW runs torch's own update under ``no_grad``, which is what the wrapper does outside a compile.
The update, the state and the state dict are torch's: a checkpoint does not know which of the two wrote it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

_UPDATE: Callable[..., Any] = inspect.unwrap(torch.optim.AdamW.step)  # torch's update, without the wrapper


class AdamW(torch.optim.AdamW):
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        if self.defaults.get("differentiable"):  # torch's wrapper then keeps the graph: its way
            return super().step(closure)
        return _UPDATE(self, closure)
