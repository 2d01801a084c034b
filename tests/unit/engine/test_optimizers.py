"""Building and using the Muon optimizer (every shipped config's) leaves torch's compiler unimported: a run that
compiles nothing starts without its 1.2 s import (engine/optimizers.py: skip_dynamo_import). torch's AdamW.step
imports it on every call, so an ``optimizer: adamw`` run still pays it at its first step."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import REPO

SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from tuigpt.engine.model import GPT, ModelArgs
    from tuigpt.engine.optimizers import make_optimizer
    from tuigpt.run.config import TrainConfig

    for name in ("muon",):
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


def test_training_with_muon_never_imports_torchs_compiler() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    word, moved, total, same_state = lines[0].split()
    assert word == "muon" and int(moved) == int(total) and same_state == "True", lines[0]  # every weight trained
    assert lines[1] == "dynamo False", result.stdout
