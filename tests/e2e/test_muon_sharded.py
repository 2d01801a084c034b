"""Muon on several ranks (gloo on 127.0.0.1, 2 and 4 processes): each rank orthogonalises only its share of every
stack of matrices, the shares are all-gathered, and every rank ends each step with the same weights and momentum,
bit for bit, as one process stepping the same gradients."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_distributed import _spawned_rank, _train_with_fixed_batches, free_port

from tuigpt.engine.distributed import launch_env
from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.run.config import TrainConfig

ARGS = ModelArgs(vocab_size=65, block_size=16, n_layer=3, n_head=2, n_embd=32)  # stacks of 3: shares get padding
STEPS = 4


def _steps(method: str, cluster=None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[int]]:
    """The same model and gradients everywhere, STEPS Muon steps by ``method`` (the third one flagged as skipped on
    the device): (weights, every parameter's momentum and moments, the stack sizes this process orthogonalised)."""
    from tuigpt.engine.optimizers import make_optimizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT(ARGS)
    config = TrainConfig(optimizer="muon", muon_weight_decay=0.01, weight_decay=0.1)
    optimizer, _ = make_optimizer(model, config, torch.device("cpu"), cluster=cluster)
    from tuigpt.engine.orthogonalize import layouts

    shapes = [tuple(p.shape) for p in optimizer.matrices]  # stacks of 3, 3 and 6 (the MLP's two shapes turned wide)
    optimizer.use_plan([(ks, method) for ks in layouts(shapes)["by shape"]])  # a run times its pick; both tested
    computed: list[int] = []
    orthogonalize = optimizer._orthogonalize

    def counting(stack, method, dtype):
        computed.append(len(stack))  # matrices in the stack this process orthogonalises
        return orthogonalize(stack, method, dtype)

    optimizer._orthogonalize = counting
    generator = torch.Generator().manual_seed(1)
    for step in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * (step + 1)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.found_inf = torch.tensor(1.0 if step == 2 else 0.0)
        optimizer.step()
    names = {id(p): n for n, p in model.named_parameters()}
    state = {f"{names[id(p)]}.{k}": v.clone() for p, s in optimizer.state.items() for k, v in s.items()}
    return {n: p.detach().clone() for n, p in model.named_parameters()}, state, computed


METHODS = ("newton-schulz", "gram")


def _rank(rank: int, world: int, port: int, out: str) -> None:
    from tuigpt.engine.distributed import start_cluster

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    cluster = start_cluster(launch_env(), "gloo", torch.device("cpu"), 60.0)
    torch.save({method: _steps(method, cluster) for method in METHODS}, Path(out) / f"rank{rank}.pt")
    cluster.close()


@pytest.mark.parametrize("world", [2, 4])
def test_sharded_orthogonalisation_equals_one_process_on_every_rank(tmp_path: Path, world: int) -> None:
    """Both ways of orthogonalising (a run picks one by timing it), stacks of 3, 3 and 6 matrices: shares of 2, 2
    and 3 on 2 ranks (zero matrices pad the stacks of 3), of 1, 1 and 2 on 4 ranks."""
    threads = torch.get_num_threads()
    try:
        one = {method: _steps(method) for method in METHODS}
    finally:
        torch.set_num_threads(threads)
    torch.multiprocessing.spawn(_rank, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True)
    shares = [-(-3 // world), -(-3 // world), -(-6 // world)]
    for method in METHODS:
        weights, state, computed = one[method]
        assert computed == [3, 3, 6] * STEPS  # one process: every stack whole, every step
        for rank in range(world):
            rank_weights, rank_state, rank_computed = torch.load(tmp_path / f"rank{rank}.pt")[method]
            assert rank_computed == shares * STEPS  # its share of each stack, not the whole stack again
            assert rank_weights.keys() == weights.keys() and rank_state.keys() == state.keys()
            for name in weights:
                assert torch.equal(rank_weights[name], weights[name]), (method, rank, name)
            for name in state:
                assert torch.equal(rank_state[name], state[name]), (method, rank, name)


def test_two_ranks_training_with_muon_stay_equal_and_match_one_process(tiny_config, tmp_path: Path) -> None:
    """A whole run: the same global batches on 2 ranks (DDP's averaged gradients, Muon sharded) as on 1 process
    give bitwise-equal replicas, and the one-process weights to float tolerance (the gradient average sums in
    another order)."""
    common = {"gradient_accumulation_steps": 4, "max_iters": 4, "eval_interval": 100, "dropout": 0.0,
              "optimizer": "muon", "schedule": "wsd"}
    values = tiny_config(run_name="two", ddp_timeout=20.0, **common).to_dict()
    torch.multiprocessing.spawn(_spawned_rank, args=(free_port(), values, str(tmp_path), 0.0), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    one = _train_with_fixed_batches(tiny_config(run_name="one", **common))
    for key, value in one.raw_model.state_dict().items():
        assert torch.allclose(value, rank0[key], atol=2e-5, rtol=1e-4), key
