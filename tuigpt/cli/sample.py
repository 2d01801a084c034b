"""`tuigpt sample CHECKPOINT`: generate text from a tuigpt or nanoGPT checkpoint, or Hugging Face GPT-2 weights."""

from __future__ import annotations

import sys

from tuigpt.cli.args import Parser
from tuigpt.run.commands import MAX_SAMPLE_TOKENS, MAX_TEMPERATURE, MAX_TOP_K
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_OK


def main(args: list[str]) -> int:
    parser = Parser(prog="tuigpt sample", description="Generate text from a tuigpt or nanoGPT checkpoint, or from a "
                    "folder of Hugging Face GPT-2 weights.")
    parser.add_argument("checkpoint", help="a .pt file (checkpoints/<run_name>/best.pt, nanoGPT's out-*/ckpt.pt), a run "
                        "folder, or a folder with model.safetensors + config.json")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--max_new_tokens", type=int, default=None,
                        help="tokens to generate (default: the run's sample_max_new_tokens)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="softmax temperature, 0 for greedy (default: the run's)")
    parser.add_argument("--top_k", type=int, default=None, help="keep the k most likely tokens (default: the run's)")
    parser.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    parser.add_argument("--num_samples", type=int, default=1, help="how many samples (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps")
    ns = parser.parse_args(args)
    if ns.max_new_tokens is not None and not 1 <= ns.max_new_tokens <= MAX_SAMPLE_TOKENS:
        raise UserError(f"--max_new_tokens must be an integer from 1 to {MAX_SAMPLE_TOKENS:,}")
    if ns.temperature is not None and not 0 <= ns.temperature <= MAX_TEMPERATURE:
        raise UserError(f"--temperature must be 0 (greedy) to {MAX_TEMPERATURE:g}, e.g. 0.8")
    if ns.top_k is not None and not 1 <= ns.top_k <= MAX_TOP_K:
        raise UserError(f"--top_k must be an integer from 1 to {MAX_TOP_K:,}")
    if not 1 <= ns.num_samples <= 10_000:
        raise UserError("--num_samples must be an integer from 1 to 10,000")
    if not 0 <= ns.seed < 2**63:
        raise UserError("--seed must be an integer from 0 to 2**63 - 1")

    from tuigpt.engine.data import Tokenizer
    from tuigpt.engine.device import resolve_device
    from tuigpt.engine.model import GPT
    from tuigpt.engine.sampling import generate_text, seeded_generator, settings
    from tuigpt.engine.sources import load_source, open_source

    source = open_source(ns.checkpoint, what="tuigpt sample")
    device = resolve_device(ns.device)
    if source.tokenizer is None:
        raise UserError(f"{source.path}: no record of the tokenizer this model was trained with, so its tokens "
                        f"cannot be turned into text")
    for notice in source.notices:
        print(f"note: {notice}", file=sys.stderr)
    tokenizer = Tokenizer.from_meta(source.tokenizer)
    model = GPT(source.args)
    load_source(model, source)
    model.to(device)
    generator = seeded_generator(device, ns.seed)
    saved = source.checkpoint["config"] if source.checkpoint is not None else None
    config = saved if isinstance(saved, dict) else {}
    for n in range(ns.num_samples):
        out = generate_text(model, tokenizer, ns.prompt, **settings(ns.max_new_tokens, ns.temperature, ns.top_k,
                                                                      config), generator=generator)
        if n == 0 and out.unknown:
            print(f"note: {len(out.unknown)} prompt character(s) are not in this model's vocabulary and were left "
                  f"out: {out.unknown[:40]!r}", file=sys.stderr)
        if n:
            print("---------------")
        print(out.prompt + out.text)
    return EXIT_OK
