"""CUDA graphs of the training step: replayed steps train as eager ones do, a stale graph is never replayed, and
the run says what it measured. The GPU tests run where CUDA is (the lent GPU machine); a CPU run never graphs."""

from __future__ import annotations

import copy

import pytest
import torch

from tuigpt.engine.trainer import Trainer
from tuigpt.run.errors import UserError
from tuigpt.run.events import Notice

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")

# small, with dropout (the graph must draw what eager draws) and an lr that changes every step (warmup, then cosine
# or the cooldown): a learning rate baked into the graph would show in the weights
GPU = dict(device="cuda", dtype="float32", n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=8, dropout=0.1,
           max_iters=24, warmup_iters=12, eval_interval=1000, log_interval=5, grad_clip=1.0)
RECIPES = {"muon": dict(arch="modern", optimizer="muon", schedule="wsd", cooldown_frac=0.5, muon_weight_decay=0.1),
           "adamw": dict(arch="gpt2", optimizer="adamw", schedule="cosine")}


def _steps(trainer: Trainer, n: int) -> list[float]:
    """``n`` steps' losses, the dropout drawn from the trainer's own CUDA generator state (trainers in one process
    share the device's generator: each continues where its own last steps left it, from the same seed)."""
    state = _CUDA_RNG.get(id(trainer))
    if state is None:
        torch.cuda.manual_seed(1337)
    else:
        torch.cuda.set_rng_state(state)
    losses = [trainer.train_step().loss for _ in range(n)]
    _CUDA_RNG[id(trainer)] = torch.cuda.get_rng_state()
    return losses


_CUDA_RNG: dict[int, torch.Tensor] = {}


def _max_difference(a: Trainer, b: Trainer) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.raw_model.parameters(), b.raw_model.parameters()))


@cuda
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_replayed_steps_train_as_eager_steps_do(tiny_config, recipe: str) -> None:
    eager = Trainer(tiny_config(**GPU, **RECIPES[recipe], cuda_graphs=False, run_name="eager"))
    graphed = Trainer(tiny_config(**GPU, **RECIPES[recipe], cuda_graphs=True, run_name="graphed"))
    notes: list[Notice] = []
    graphed.bus.subscribe(lambda e: notes.append(e) if isinstance(e, Notice) else None)
    want, got = _steps(eager, 24), _steps(graphed, 24)
    assert graphed.stepper.graph is not None and eager.stepper.graph is None
    assert any(n.message.startswith("CUDA graphs on (a replayed step") for n in notes), [n.message for n in notes]
    assert got == pytest.approx(want, rel=1e-5)  # the same batches and dropout masks, step after step
    # the same learning rates to float32's rounding (the graph reads lr and lr x muon's ratio as float32 scalars;
    # Newton-Schulz amplifies such differences in small singular values): a learning rate baked in at the capture
    # (mid-warmup) would move the weights by ~1e-2
    assert _max_difference(eager, graphed) < 1e-3


@cuda
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_at_a_learning_rate_float32_holds_exactly_replays_compute_the_eager_bits(tiny_config, recipe: str) -> None:
    exact = dict(GPU, learning_rate=2.0 ** -10, muon_lr=2.0 ** -5, decay_lr=False, warmup_iters=0)
    eager = Trainer(tiny_config(**exact, **RECIPES[recipe], cuda_graphs=False, run_name="eager"))
    graphed = Trainer(tiny_config(**exact, **RECIPES[recipe], cuda_graphs=True, run_name="graphed"))
    assert _steps(eager, 16) == _steps(graphed, 16)
    assert graphed.stepper.graph is not None
    assert _max_difference(eager, graphed) == 0.0


@cuda
def test_an_optimizer_state_replaced_after_the_capture_is_never_replayed_stale(tiny_config) -> None:
    eager = Trainer(tiny_config(**GPU, **RECIPES["muon"], cuda_graphs=False, run_name="eager"))
    graphed = Trainer(tiny_config(**GPU, **RECIPES["muon"], cuda_graphs=True, run_name="graphed"))
    _steps(eager, 8), _steps(graphed, 8)
    first = graphed.stepper.graph
    assert first is not None
    for trainer in (eager, graphed):  # as a rewind or a resume does: equal values in new tensors
        trainer.optimizer.load_state_dict(copy.deepcopy(trainer.optimizer.state_dict()))
    want, got = _steps(eager, 12), _steps(graphed, 12)
    assert graphed.stepper.graph is not None and graphed.stepper.graph is not first  # captured again
    assert got == pytest.approx(want, rel=1e-5)
    assert _max_difference(eager, graphed) < 1e-3  # a stale graph steps the old momentum: ~1e-2


@cuda
def test_auto_keeps_the_graph_only_where_replays_are_timed_faster(tiny_config) -> None:
    trainer = Trainer(tiny_config(**GPU, **RECIPES["muon"], cuda_graphs="auto"))
    notes: list[Notice] = []
    trainer.bus.subscribe(lambda e: notes.append(e) if isinstance(e, Notice) else None)
    _steps(trainer, 14)
    said = [n.message for n in notes if n.message.startswith("CUDA graphs")]
    assert len(said) == 1 and "eager" in said[0], said
    assert (trainer.stepper.graph is not None) == said[0].startswith("CUDA graphs on (auto: ")


def test_a_cpu_run_never_captures_and_says_why_when_graphs_were_asked_for(tiny_config) -> None:
    trainer = Trainer(tiny_config(cuda_graphs=True, max_iters=8))
    notes: list[Notice] = []
    trainer.bus.subscribe(lambda e: notes.append(e) if isinstance(e, Notice) else None)
    for _ in range(8):
        trainer.train_step()
    assert trainer.stepper.graphs is False and trainer.stepper.graph is None
    assert [n.message for n in notes] == ["CUDA graphs off: the run is not on a CUDA GPU"]
    quiet = Trainer(tiny_config(cuda_graphs="auto", max_iters=8, run_name="auto"))
    quiet.bus.subscribe(lambda e: notes.append(e) if isinstance(e, Notice) else None)
    quiet.train_step()
    assert len(notes) == 1  # auto says nothing where graphs cannot apply


def test_cuda_graphs_takes_auto_true_or_false(tiny_config) -> None:
    with pytest.raises(UserError, match="cuda_graphs='sometimes' must be auto, true or false"):
        tiny_config(cuda_graphs="sometimes")
