"""optimizer: muon — the orthogonalisation, the combined optimizer's step, skipping on the device, its state.

The reference for each claim is the plain computation it replaces: one matrix at a time (torch.optim.Muon's way),
torch's own AdamW for the AdamW groups, an uninterrupted optimizer for a state dict's round trip.
"""

from __future__ import annotations

import math

import pytest
import torch

from tuigpt.engine.model import GPT, ModelArgs
from tuigpt.engine.muon import ADAMW, MUON, Muon
from tuigpt.engine.optimizers import is_hidden_matrix, make_optimizer, ns_dtype
from tuigpt.engine.orthogonalize import COEFFICIENTS, STEPS, candidates, gram_newton_schulz, newton_schulz
from tuigpt.run.config import TrainConfig

ARGS = ModelArgs(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)


def one_matrix_newton_schulz(g: torch.Tensor) -> torch.Tensor:
    """Keller Jordan's iteration on one matrix, written out (torch.optim.Muon's, in float32)."""
    x = g.T if g.size(0) > g.size(1) else g
    x = x / (x.norm() + 1e-7)
    a, b, c = COEFFICIENTS
    for _ in range(STEPS):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if g.size(0) > g.size(1) else x


@pytest.mark.parametrize("shape", [(6, 32, 96), (4, 128, 32), (3, 24, 24)])
def test_the_stacked_iteration_is_the_one_matrix_iteration(shape: tuple[int, int, int]) -> None:
    stack = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    out = newton_schulz(stack)
    for k in range(shape[0]):
        assert torch.allclose(out[k], one_matrix_newton_schulz(stack[k]), atol=2e-5)
        assert torch.equal(out[k], newton_schulz(stack[k:k + 1])[0])  # a matrix's result ignores its neighbours
    s = torch.linalg.svdvals(out)
    # about orthogonal: the quintic's f(σ) lands in ~[0.7, 1.2] (a random square matrix has singular values too
    # close to 0 for five steps to lift them all)
    assert s.max() < 1.3 and (s.min() > 0.5 if shape[1] != shape[2] else s.median() > 0.7)


@pytest.mark.parametrize("shape", [(5, 32, 128), (5, 128, 32)])
def test_the_gram_form_computes_the_same_matrices(shape: tuple[int, int, int]) -> None:
    stack = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(gram_newton_schulz(stack), newton_schulz(stack), atol=1e-4)
    assert candidates(shape[1:], torch.float32, torch.device("cpu")) == ["newton-schulz", "gram"]
    assert candidates((32, 32), torch.float32, torch.device("cpu")) == ["newton-schulz"]  # square: nothing to save
    assert candidates(shape[1:], torch.bfloat16, torch.device("cpu")) == ["newton-schulz"]  # Gram needs float32


def test_newton_schulz_never_runs_in_emulated_bf16() -> None:
    assert ns_dtype(torch.device("cpu"), "float32") == torch.float32
    # this machine class (AVX2, no AVX512_BF16/AMX) has no native bf16: float32 even when the run trains in bf16
    from tuigpt.telemetry.cpuinfo import read_cpu_info

    native = read_cpu_info().native_bf16
    assert ns_dtype(torch.device("cpu"), "bfloat16") == (torch.bfloat16 if native else torch.float32)
    assert ns_dtype(torch.device("cpu"), "float16") == torch.float32


def _model_and_grads(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(ARGS)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return model


def _config(**overrides) -> TrainConfig:
    return TrainConfig(optimizer="muon", learning_rate=1e-3, muon_lr=0.02, **overrides)


def test_muon_trains_the_hidden_matrices_and_adamw_the_rest() -> None:
    model = _model_and_grads()
    optimizer, line = make_optimizer(model, _config(), torch.device("cpu"))
    kinds = {id(p): g["kind"] for g in optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert kinds[id(p)] == (MUON if name.startswith("transformer.h.") and p.dim() == 2 else ADAMW), name
    assert is_hidden_matrix("transformer.h.0.mlp.c_fc.weight", model.transformer.h[0].mlp.c_fc.weight)
    assert not is_hidden_matrix("transformer.wte.weight", model.transformer.wte.weight)  # tied with the head
    (muon,) = [g for g in optimizer.param_groups if g["kind"] == MUON]
    assert len(muon["params"]) == 8 and all(p.dim() == 2 for p in muon["params"])
    # stacked as a run here would: by wide shape (c_fc's 128x32 and the MLP projection's 32x128 together) or all
    # padded to 32x128, whichever was timed faster
    stacks = sorted(sorted(tuple(muon["params"][k].shape) for k in ks) for ks, _ in optimizer.plan)
    assert stacks in ([[(32, 32)] * 2, [(32, 128), (32, 128), (128, 32), (128, 32)], [(96, 32)] * 2],
                      [sorted([(32, 32)] * 2 + [(32, 128)] * 2 + [(96, 32)] * 2 + [(128, 32)] * 2)])
    assert "Muon (lr 0.02, momentum 0.95) on 8 hidden matrices in" in line and "float32" in line


def test_one_step_moves_each_matrix_along_its_orthogonalised_nesterov_momentum_and_the_rest_as_adamw() -> None:
    model = _model_and_grads()
    reference = _model_and_grads()
    optimizer, _ = make_optimizer(model, _config(weight_decay=0.1, muon_weight_decay=0.05), torch.device("cpu"))
    adamw_params = [p for g in optimizer.param_groups if g["kind"] == ADAMW for p in g["params"]]
    ref_named = dict(reference.named_parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    ref_adamw = torch.optim.AdamW([
        {"params": [ref_named[names[id(p)]] for p in adamw_params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [ref_named[names[id(p)]] for p in adamw_params if p.dim() < 2], "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.95), fused=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        group["lr"] = 1e-3  # what the trainer sets: the schedule's learning rate, Muon's scaled by lr_ratio
    optimizer.step()
    ref_adamw.step()
    for name, p in model.named_parameters():
        if p.dim() == 2 and name.startswith("transformer.h."):
            g = p.grad
            nesterov = g * 0.05 + (g * 0.05) * 0.95  # first step: momentum = 0.05·g, update = g lerped towards it
            lr = 0.02
            expected = before[name] * (1 - lr * 0.05) - lr * math.sqrt(max(1, p.shape[0] / p.shape[1])) * \
                one_matrix_newton_schulz(nesterov)
            assert torch.allclose(p, expected, atol=1e-6), name
        else:
            assert torch.equal(p, ref_named[name]), name  # torch's fused AdamW, bit for bit


def test_a_flagged_step_changes_nothing_and_an_unflagged_one_is_the_plain_step() -> None:
    results = {}
    for flag in (None, 0.0, 1.0):
        model = _model_and_grads()
        optimizer, _ = make_optimizer(model, _config(muon_weight_decay=0.1), torch.device("cpu"))
        for group in optimizer.param_groups:
            group["lr"] = 1e-3
        optimizer.step()  # momentum and moments are not zero
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        state_before = {k: v.clone() for s in optimizer.state.values() for k, v in s.items() if k != "step"}
        before = [p.detach().clone() for p in model.parameters()]
        if flag is not None:
            optimizer.found_inf = torch.tensor(flag)
        optimizer.step()
        results[flag] = [p.detach().clone() for p in model.parameters()]
        if flag == 1.0:
            assert all(torch.equal(a, b) for a, b in zip(before, results[flag]))
            after = {k: v for s in optimizer.state.values() for k, v in s.items() if k != "step"}
            assert all(torch.equal(state_before[k], after[k]) for k in state_before)
            assert all(float(s["step"]) == 1.0 for s in optimizer.state.values() if "step" in s)  # not counted
    assert all(torch.equal(a, b) for a, b in zip(results[None], results[0.0]))
    assert optimizer.skips_on_device


@pytest.mark.parametrize("layout", ["by shape", "padded"])
def test_every_stacking_steps_each_matrix_alike(layout: str) -> None:
    """A zero-padded stack gives each matrix the step it gets in a stack of its own shape."""
    from tuigpt.engine.orthogonalize import layouts

    results = []
    for plan in ("by shape", layout):
        model = _model_and_grads()
        optimizer, _ = make_optimizer(model, _config(), torch.device("cpu"))
        shapes = [tuple(p.shape) for p in optimizer.matrices]
        optimizer.use_plan([(ks, "newton-schulz") for ks in layouts(shapes)[plan]])
        for group in optimizer.param_groups:
            group["lr"] = 1e-3
        optimizer.step()
        results.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(*results))


def test_a_state_dict_round_trip_continues_bit_for_bit() -> None:
    straight_model = _model_and_grads()
    straight, _ = make_optimizer(straight_model, _config(), torch.device("cpu"))
    split_model = _model_and_grads()
    first, _ = make_optimizer(split_model, _config(), torch.device("cpu"))
    for optimizer in (straight, first):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3
        optimizer.step()
    saved = first.state_dict()
    assert all(first.state[p]["momentum_buffer"].shape == p.shape for p in first.matrices)
    resumed, _ = make_optimizer(split_model, _config(), torch.device("cpu"))
    resumed.load_state_dict(saved)
    for model, optimizer in ((straight_model, straight), (split_model, resumed)):
        torch.manual_seed(7)
        for _ in range(3):
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(straight_model.parameters(), split_model.parameters()))
    stacked = resumed.momentum_stack(0)
    assert stacked.dim() == 3  # the loaded per-parameter buffers were stacked again


def test_a_plan_stacks_every_matrix_once_and_only_with_its_short_side() -> None:
    model = _model_and_grads()
    block = model.transformer.h[0]
    group = {"kind": MUON, "params": [block.attn.c_attn.weight, block.attn.c_proj.weight, block.mlp.c_fc.weight],
             "lr": 1e-3, "lr_ratio": 1.0, "momentum": 0.9, "weight_decay": 0.0}
    with pytest.raises(ValueError, match="once"):
        Muon([group], plan=[([0, 1], "newton-schulz")])
    Muon([group], plan=[([0, 1, 2], "newton-schulz")])  # all share n_embd: one padded stack
    group["params"].append(torch.nn.Parameter(torch.zeros(5, 7)))
    with pytest.raises(ValueError, match="short side"):
        Muon([group], plan=[([0, 1, 2, 3], "newton-schulz")])


def test_the_health_numbers_of_a_muon_step_are_its_real_update_per_group(tiny_config) -> None:
    """‖Δw‖/‖w‖ per group (embeddings and head: AdamW; the blocks: Muon's matrices and their gains) is the change
    the step made to the weights, as with AdamW."""
    from tuigpt.engine.health import group_name
    from tuigpt.engine.trainer import Trainer

    trainer = Trainer(tiny_config(optimizer="muon", run_name="health"))
    stepper = trainer.stepper
    stepper.step(1e-3)
    before = {n: p.detach().clone() for n, p in trainer.raw_model.named_parameters()}
    result = stepper.step(1e-3, detail=True)
    assert result.applied and result.layers is not None
    change: dict[str, float] = {}
    weight: dict[str, float] = {}
    for name, p in trainer.raw_model.named_parameters():
        group = group_name(name)
        change[group] = change.get(group, 0.0) + float((p.detach() - before[name]).square().sum())
        weight[group] = weight.get(group, 0.0) + float(before[name].square().sum())
    for layer in result.layers:
        expected = (change[layer["name"]] / weight[layer["name"]]) ** 0.5
        assert layer["update"] == pytest.approx(expected, rel=1e-4), layer["name"]
    assert {layer["name"] for layer in result.layers} == {"embed", "block 0", "block 1", "head"}
