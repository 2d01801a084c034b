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
    assert grouped["batches"] == one["batches"] == grouped["planned"] == 24  # both splits
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


def _small_model_and_sampler(tmp_path, text: str, block: int = 16, batch: int = 4):  # noqa: ANN001, ANN202
    import torch

    from tuigpt.engine.data import BatchSampler, load_dataset
    from tuigpt.engine.model import GPT, ModelArgs

    path = tmp_path / "small.txt"
    path.write_text(text, encoding="utf-8")
    data = load_dataset("text", str(path), "char")
    torch.manual_seed(0)
    model = GPT(ModelArgs(vocab_size=data.tokenizer.vocab_size, block_size=block, n_layer=1, n_head=2, n_embd=16,
                          dropout=0.0, bias=False))
    return model, BatchSampler(data, block_size=block, batch_size=batch)


def test_a_split_no_bigger_than_the_eval_is_read_whole_and_exactly(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """eval_iters batches of random windows from a small split read its text over and over; the eval reads such a
    split's consecutive windows once each instead: the same loss at every eval, equal to the mean over every
    window's targets computed by hand, in one batch a pass or in groups (the last one filled out with ignored rows,
    which count nowhere), with fewer batches than sampling would compute."""
    import torch
    import torch.nn.functional as F

    from tuigpt.engine import evaluation

    text = "".join(f"{i * 7919 % 1000:03d} the quick brown fox; " for i in range(400))  # ~10k chars, val ~1k
    model, sampler = _small_model_and_sampler(tmp_path, text)
    n_val, n_train = len(sampler.data.val), len(sampler.data.train)
    whole = (n_val - 1) // 16
    assert evaluation.whole_windows(n_val, 16, 4, eval_iters=50) == whole  # 50 x 4 windows would repeat its ~60
    assert evaluation.whole_windows(n_train, 16, 4, eval_iters=50) == 0  # the big split is still sampled
    with torch.no_grad():
        tokens = torch.from_numpy(sampler.data.val.astype("int64"))
        windows = torch.stack([tokens[i * 16:i * 16 + 17] for i in range(whole)])
        by_hand = F.cross_entropy(model.logits(windows[:, :-1]).flatten(0, 1), windows[:, 1:].flatten()).item()
    first = evaluation.estimate_loss(model, model, sampler, eval_iters=50, seed=3, iter_num=250)
    later = evaluation.estimate_loss(model, model, sampler, eval_iters=50, seed=9, iter_num=500)
    assert first["val"] == pytest.approx(by_hand, rel=1e-5) and later["val"] == pytest.approx(by_hand, rel=1e-5)
    assert first["train"] != pytest.approx(later["train"], rel=1e-5), "the sampled split still draws anew"
    assert first["planned"] == first["batches"] == 50 + -(-whole // 4) == evaluation.eval_batches(model, sampler, 50)
    monkeypatch.setattr(evaluation, "eval_group", lambda *args: 5)  # 20 rows a pass: the last one filled out
    assert whole % 20, "the test needs a last pass with filler rows"
    grouped = evaluation.estimate_loss(model, model, sampler, eval_iters=50, seed=3, iter_num=250)
    assert grouped["val"] == pytest.approx(by_hand, rel=1e-5)
    assert grouped["val_bpb"] == pytest.approx(first["val_bpb"], rel=1e-5)


def test_a_whole_split_cut_short_reads_a_random_part_of_it(tmp_path) -> None:  # noqa: ANN001
    """An eval that must stop (a run ending at a time) keeps whole groups; of a split read whole, that is a part
    shuffled once for the run, not the split's first windows (the text's start would stand for all of it)."""
    import time

    from tuigpt.engine import evaluation

    text = "".join(f"{i * 7919 % 1000:03d} the quick brown fox; " for i in range(400))
    model, sampler = _small_model_and_sampler(tmp_path, text)
    read: list = []
    real = sampler.read

    def recording(split, starts, rows=None):  # noqa: ANN001, ANN202
        read.append((split, starts.tolist()))
        return real(split, starts, rows)

    sampler.read = recording  # type: ignore[method-assign]
    cuts = [evaluation.estimate_loss(model, model, sampler, eval_iters=50, seed=3, iter_num=it,
                                     stop_at=time.monotonic() - 1.0) for it in (250, 500)]  # past: one group only
    assert all(c["batches"] == 2 < c["planned"] for c in cuts)  # one batch of each split
    first, second = [starts for split, starts in read if split == "val"]
    assert first == second, "every eval of the run reads the same part"
    assert len(first) == 4 and first != [0, 16, 32, 48], "not the split's start"
