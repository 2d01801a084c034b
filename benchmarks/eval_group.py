"""An eval computed one batch a forward pass against several (what a GPU does: engine/evaluation.py eval_group),
alternating in one process, on the baby GPT's shape (6 layers of 384, context 256, batch 64, nanochat's block):
each round times one whole ``estimate_loss`` (``--eval-iters`` batches of each split) at each group size in turn,
after one untimed eval each, the device synchronised before each clock reads. The losses printed must agree: the
batches are the same.

    python benchmarks/eval_group.py [--data FILE] [--rounds 4] [--eval-iters 200] [--groups 1,8,4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tuigpt.engine import evaluation  # noqa: E402
from tuigpt.engine.data import BatchSampler, load_dataset  # noqa: E402
from tuigpt.engine.model import GPT, ModelArgs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tinyshakespeare.txt"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--eval-iters", type=int, default=200)
    parser.add_argument("--groups", default="1,8,4")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = load_dataset("text", args.data, "char")
    model = GPT(ModelArgs(vocab_size=data.tokenizer.vocab_size, block_size=256, n_layer=6, n_head=6, n_embd=384,
                          dropout=0.2, bias=False, rope=True, qk_norm=True, relu2=True, rmsnorm=True,
                          untied_head=True, zero_init=False, logit_softcap=15.0)).to(device)
    sampler = BatchSampler(data, block_size=256, batch_size=64, device=device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32

    def autocast() -> torch.autocast:
        return torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32)

    chosen = evaluation.eval_group(model, sampler, args.eval_iters)
    print(f"{torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, torch {torch.__version__}: a run here "
          f"evaluates {chosen} batch(es) a pass", flush=True)

    def timed(group: int) -> tuple[float, float]:
        evaluation.eval_group = lambda *_: group  # the one thing that differs between the variants
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = evaluation.estimate_loss(model, model, sampler, eval_iters=args.eval_iters, seed=1, iter_num=0,
                                          autocast=autocast)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, result["val"]

    groups = [int(g) for g in args.groups.split(",")]
    for g in groups:
        timed(g)
    seconds: dict[int, list[float]] = {g: [] for g in groups}
    for r in range(args.rounds):
        for g in groups if r % 2 == 0 else groups[::-1]:
            s, val = timed(g)
            seconds[g].append(s)
            print(f"round {r} group {g}: {s:.3f} s, val {val:.4f}", flush=True)
    base = statistics.median(seconds[groups[0]])
    for g in groups:
        print(f"group {g}: median {statistics.median(seconds[g]):.3f} s, "
              f"{statistics.median(seconds[g]) / base:.2f}x group {groups[0]}'s")


if __name__ == "__main__":
    main()
