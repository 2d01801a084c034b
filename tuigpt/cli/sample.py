"""`tuigpt sample CHECKPOINT`: generate text from a checkpoint."""

from __future__ import annotations

import sys

from tuigpt.cli.args import Parser
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_OK


def main(args: list[str]) -> int:
    parser = Parser(prog="tuigpt sample", description="Generate text from a tuigpt checkpoint.")
    parser.add_argument("checkpoint", help="a .pt file, e.g. checkpoints/<run_name>/best.pt")
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
    if ns.max_new_tokens is not None and ns.max_new_tokens < 1:
        raise UserError("--max_new_tokens must be a positive integer")
    if ns.temperature is not None and not ns.temperature >= 0:
        raise UserError("--temperature must be 0 (greedy) or more, e.g. 0.8")
    if ns.top_k is not None and ns.top_k < 1:
        raise UserError("--top_k must be a positive integer")
    if ns.num_samples < 1:
        raise UserError("--num_samples must be a positive integer")

    import torch

    from tuigpt.engine.checkpoint import load_checkpoint
    from tuigpt.engine.data import Tokenizer
    from tuigpt.engine.device import resolve_device
    from tuigpt.engine.model import GPT, ModelArgs
    from tuigpt.engine.sampling import generate_text, settings

    state = load_checkpoint(ns.checkpoint)
    device = resolve_device(ns.device)
    tokenizer = Tokenizer.from_meta(state["tokenizer"])
    model = GPT(ModelArgs(**state["model_args"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {ns.checkpoint} is damaged: its weights don't fit its model "
                        f"({str(exc).splitlines()[0][:100]})") from None
    model.to(device)
    generator = torch.Generator(device=device).manual_seed(ns.seed)
    config = state["config"] if isinstance(state["config"], dict) else {}
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
