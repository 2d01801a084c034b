"""The modern block's forward + backward of a model.py given by --before against this checkout's, the same
weights and batch, alternating in one process; the device is synchronised before each clock reads. Written for
the joint rotary (before it, q and k rotated one at a time, seven kernels each, the tables cast in every layer;
then q and k together, four kernels, the tables cast once a forward), used again for q, k and v split and unbound
instead of indexed and the rotation's roll. Each compares the same bits (tests/unit/engine/test_model_switches.py).

    git show f5f066d~1:tuigpt/engine/model.py > /tmp/model_before.py     # (or any earlier commit's)
    python benchmarks/rotary_step.py --before /tmp/model_before.py [--shape baby|default] [--steps 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tuigpt.engine import model as now  # noqa: E402

SHAPES = {  # the baby GPT's (configs/train_shakespeare_char.yaml) and the default CPU config's
    "baby": (dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2), 64),
    "default": (dict(vocab_size=65, block_size=128, n_layer=2, n_head=4, n_embd=192, dropout=0.0), 16),
}
MODERN = dict(bias=False, rope=True, qk_norm=True, relu2=True, rmsnorm=True, untied_head=True, zero_init=True,
              logit_softcap=15.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="model.py from before the change")
    parser.add_argument("--shape", choices=list(SHAPES), default="baby")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("model_before", args.before)
    before = importlib.util.module_from_spec(spec)
    sys.modules["model_before"] = before  # dataclasses look their module up
    spec.loader.exec_module(before)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    shape, batch = SHAPES[args.shape]
    torch.manual_seed(0)
    old = before.GPT(before.ModelArgs(**shape, **MODERN)).to(device)
    torch.manual_seed(0)
    new = now.GPT(now.ModelArgs(**shape, **MODERN)).to(device)
    new.load_state_dict(old.state_dict())
    x = torch.randint(0, 65, (batch, shape["block_size"]), device=device)

    def timed(model: torch.nn.Module, steps: int) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
                _, loss = model(x, x)
            loss.backward()
            model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps * 1000.0

    for model in (old, new):
        timed(model, 3)
    ratios = []
    for r in range(args.rounds):
        pair = [(old, "before"), (new, "now")] if r % 2 == 0 else [(new, "now"), (old, "before")]
        ms = {name: timed(model, args.steps) for model, name in pair}
        ratios.append(ms["now"] / ms["before"])
        print(f"round {r}: before {ms['before']:.2f} ms, now {ms['now']:.2f} ms, now/before {ratios[-1]:.3f}",
              flush=True)
    print(f"{args.shape} on {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'} (torch {torch.__version__}): "
          f"now/before median {statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
