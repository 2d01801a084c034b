"""The eval publishes its progress: the first batch at once, then at most a few times a second; a GPU evaluates
several batches a forward pass, with the same result."""

from __future__ import annotations

import pytest
from support import Recorder

from tuigpt.engine.trainer import Trainer
from tuigpt.run.events import EvalProgress, EvalResult


def test_the_first_eval_says_how_far_it_is_before_its_result(tiny_config) -> None:  # noqa: ANN001
    trainer = Trainer(tiny_config(max_iters=1, eval_iters=6))
    rec = Recorder()
    trainer.bus.subscribe(rec)
    trainer.run()
    first = rec.events.index(rec.of(EvalResult)[0])
    progress = [e for e in rec.events[:first] if isinstance(e, EvalProgress)]
    assert progress and progress[0].done == 1 and progress[0].total == 12 and progress[0].iter == 0
    assert all(0 < p.done < p.total for p in progress)  # the result itself says it is done
    # throttled: after the first, one per PROGRESS_EVERY at most
    times = [p.seconds for p in progress[1:]]
    assert all(b - a >= 0.2 for a, b in zip(times, times[1:]))


def test_grouped_eval_batches_give_the_same_losses_as_one_at_a_time(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A GPU evaluates several batches of a split in one forward pass; the batches, and so the losses and bits per
    byte, are those of one batch a pass (only float reassociation differs), and a cut eval keeps whole groups."""
    import torch

    from tuigpt.engine import evaluation
    from tuigpt.engine.data import BatchSampler, load_dataset
    from tuigpt.engine.model import GPT, ModelArgs

    path = tmp_path / "small.txt"
    path.write_text("The quick brown fox jumps over the lazy dog.\n" * 200, encoding="utf-8")
    data = load_dataset("text", str(path), "char")
    torch.manual_seed(0)
    model = GPT(ModelArgs(vocab_size=data.tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16,
                          dropout=0.0, bias=False))
    sampler = BatchSampler(data, block_size=16, batch_size=4)
    one = evaluation.estimate_loss(model, model, sampler, eval_iters=12, seed=3, iter_num=250)
    monkeypatch.setattr(evaluation, "eval_group", lambda *args: 4)
    grouped = evaluation.estimate_loss(model, model, sampler, eval_iters=12, seed=3, iter_num=250)
    assert grouped["batches"] == one["batches"] == 12
    for key in ("train", "val", "train_bpb", "val_bpb"):
        assert grouped[key] == pytest.approx(one[key], rel=1e-5), key
    other = evaluation.estimate_loss(model, model, sampler, eval_iters=12, seed=3, iter_num=500)
    assert other["val"] != pytest.approx(one["val"], rel=1e-5), "another iteration's eval draws other batches"


def test_a_gpu_groups_eval_batches_within_memory_and_never_a_cpu() -> None:
    from types import SimpleNamespace

    import torch

    from tuigpt.engine.evaluation import eval_group

    def group(device: str, vocab: int, n_embd: int, batch: int, block: int, eval_iters: int) -> int:
        model = SimpleNamespace(args=SimpleNamespace(vocab_size=vocab, n_embd=n_embd))
        sampler = SimpleNamespace(device=torch.device(device), batch_size=batch, block_size=block)
        return eval_group(model, sampler, eval_iters)  # type: ignore[arg-type]

    assert group("cuda", 65, 384, 64, 256, 200) == 8  # the baby GPT: eight batches a pass
    assert group("cpu", 65, 384, 64, 256, 200) == 1  # a CPU's forward is arithmetic-bound: nothing to gain
    assert group("cuda", 50304, 768, 12, 1024, 200) == 1  # GPT-2's logits are 2.5 GB a batch already
    assert group("cuda", 65, 384, 64, 256, 20) == 5  # a divisor of eval_iters: every pass has one shape
    assert group("cuda", 65, 384, 64, 256, 11) == 1
    assert group("cuda", 65, 1024, 64, 512, 200) == 2  # a wide MLP: its hidden layer (512 MiB a batch) bounds it
