"""Building and using either optimizer leaves torch's compiler unimported: a run that compiles nothing starts
without its 1.2 s import (engine/optimizers.py: skip_dynamo_import; engine/adamw.py). tuigpt's AdamW updates,
saves and loads exactly as torch's does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO

from tuigpt.engine.adamw import AdamW

SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from tuigpt.engine.model import GPT, ModelArgs
    from tuigpt.engine.optimizers import make_optimizer
    from tuigpt.run.config import TrainConfig

    for name in ("adamw", "muon"):
        torch.manual_seed(0)
        model = GPT(ModelArgs(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32))
        optimizer, _ = make_optimizer(model, TrainConfig(optimizer=name), torch.device("cpu"))
        before = [p.detach().clone() for p in model.parameters()]
        x = torch.randint(0, 65, (2, 16))
        for _ in range(2):
            _, loss = model(x, x)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        again, _ = make_optimizer(model, TrainConfig(optimizer=name), torch.device("cpu"))
        again.load_state_dict(optimizer.state_dict())
        moved = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
        print(name, moved, len(before), again.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys())
    print("dynamo", "torch._dynamo" in sys.modules)
""")


def test_training_with_either_optimizer_never_imports_torchs_compiler() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    for name, line in zip(("adamw", "muon"), lines):
        word, moved, total, same_state = line.split()
        assert word == name and int(moved) == int(total) and same_state == "True", line  # every weight trained
    assert lines[2] == "dynamo False", result.stdout


@pytest.mark.parametrize("fused", [False, True])
def test_tuigpts_adamw_is_torchs_step_for_step_and_in_its_state_dict(fused: bool) -> None:
    def train(cls: type[torch.optim.AdamW], steps: int, state: dict | None = None) -> tuple[list, dict]:
        torch.manual_seed(0)
        weights = [torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(4))]
        optimizer = cls([{"params": weights[:1], "weight_decay": 0.1}, {"params": weights[1:], "weight_decay": 0.0}],
                        lr=1e-2, betas=(0.9, 0.95), fused=fused)
        if state is not None:
            optimizer.load_state_dict(state)
        for k in range(steps):
            loss = (weights[0] @ weights[1] - k).square().sum()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return [w.detach().clone() for w in weights], optimizer.state_dict()

    theirs, their_state = train(torch.optim.AdamW, 5)
    ours, our_state = train(AdamW, 5)
    assert all(torch.equal(a, b) for a, b in zip(theirs, ours))  # bit for bit
    assert their_state["param_groups"] == our_state["param_groups"]
    for key in their_state["state"]:
        for name, value in their_state["state"][key].items():
            assert torch.equal(value, our_state["state"][key][name]), name
    # each loads the other's state and goes on alike
    again_theirs, _ = train(torch.optim.AdamW, 3, our_state)
    again_ours, _ = train(AdamW, 3, their_state)
    assert all(torch.equal(a, b) for a, b in zip(again_theirs, again_ours))
    assert not all(torch.equal(a, b) for a, b in zip(ours, again_ours))  # it did step on
