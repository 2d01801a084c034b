"""AdamW's step on a CPU: the for-loop implementation (nanoGPT's CPU path), for-each, and fused (tuigpt's).

The parameters are those of the shipped CPU configs' models, with random gradients; each implementation steps
them in alternating rounds and the fastest round of each counts (other processes only ever slow one down).

    python benchmarks/optimizer_step.py [--threads N] [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuigpt.engine.model import GPT, ModelArgs  # noqa: E402

SHAPES = {"tiny 4x128": (4, 4, 128, 64), "default 4x192": (4, 4, 192, 64), "4x256": (4, 4, 256, 128),
          "baby 6x384": (6, 6, 384, 256)}
KINDS = {"for-loop": dict(foreach=False), "for-each": dict(foreach=True), "fused": dict(fused=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per AdamW step, fastest of "
          f"{args.rounds} alternating rounds of 10 steps")
    print("| model | parameters | for-loop | for-each | fused | fused vs for-loop |")
    print("|---|---|---|---|---|---|")
    for name, (layers, heads, width, block) in SHAPES.items():
        model = GPT(ModelArgs(vocab_size=65, block_size=block, n_layer=layers, n_head=heads, n_embd=width))
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opts = {k: torch.optim.AdamW(model.param_groups(0.1), lr=1e-4, **kw) for k, kw in KINDS.items()}
        best = {k: float("inf") for k in KINDS}
        for r in range(args.rounds):
            for kind in (list(KINDS) if r % 2 == 0 else list(KINDS)[::-1]):
                t0 = time.perf_counter()
                for _ in range(10):
                    opts[kind].step()
                best[kind] = min(best[kind], (time.perf_counter() - t0) * 100.0)
        n = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {n / 1e6:.2f}M | {best['for-loop']:.2f} | {best['for-each']:.2f} | {best['fused']:.2f} | "
              f"{best['for-loop'] / best['fused']:.1f}x |")


if __name__ == "__main__":
    main()
