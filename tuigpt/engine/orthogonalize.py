"""Muon's orthogonalisation of a stack of same-shaped matrices, and the way of computing it that is fastest here.

Muon replaces each matrix's update G by about U·V^T (G = U·S·V^T): five steps of the quintic Newton–Schulz
iteration X ← a·X + (b·A + c·A²)·X with A = X·X^T, on X = G/‖G‖, with Keller Jordan's coefficients (his Muon
post and github.com/KellerJordan/Muon; torch.optim.Muon uses the same). It maps every singular value σ of X
through the same odd polynomial f, so the result is U·f(S)·V^T, not U·V^T exactly (f(σ) lands in about
[0.7, 1.2]), which trains as well (Keller Jordan's post).

Two ways compute the same f, chosen per shape by timing them here (:func:`choose`):

- ``newton-schulz``: the iteration on the stacked matrices with batched matmuls (the wide side kept as the
  inner dimension), in bf16 where the device has fast bf16 (the modded-nanogpt speedrun and nanochat run it so
  on GPUs), else float32. Per step 4·m²·n + 2·m³ FLOPs for an m × n matrix (m ≤ n).
- ``gram``: the same iteration carried out on the m × m Gram matrix A₀ = X₀·X₀^T alone. Each step's
  Q = a·I + b·A + c·A² is a polynomial of A, so the steps commute: A_{k+1} = Q·A·Q, the product P = Q₄⋯Q₀
  collects them, and X₅ = P·X₀. The n-wide products happen twice instead of ten times (≈ 4·m²·n + 17·m³ FLOPs in
  all), which pays on a CPU for matrices wider than tall by 3 or more (the MLP's 4× ones); float32 only, as
  the Gram matrix squares the condition number.

The stack's matrices are computed independently (a matrix's result does not depend on what else is in the
stack), so a stack split across ranks and gathered again equals the whole stack computed in one process, bit
for bit where the matmuls are batch-invariant (checked on CPUs by tests/e2e/test_muon_sharded.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic: the steepest slope at 0 that still converges
STEPS = 5
EPS = 1e-7
METHODS = ("newton-schulz", "gram")
GRAM_MIN_ASPECT = 2.0  # a Gram matrix of a near-square matrix saves nothing: never timed there

Shape = tuple[int, int]


def newton_schulz(stack: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthogonalised stack (k, r, c) → (k, r, c), in ``dtype``."""
    x = stack.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:  # keep the long side as the inner dimension: X·X^T is then the small Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + EPS)
    a, b, c = COEFFICIENTS
    for _ in range(STEPS):
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, poly, x, beta=a)
    return x.mT if tall else x


def gram_newton_schulz(stack: torch.Tensor) -> torch.Tensor:
    """:func:`newton_schulz`'s result (to float32 rounding) from the Gram matrix alone, in float32."""
    x = stack.float()
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + EPS)
    a, b, c = COEFFICIENTS
    gram = x @ x.mT
    eye = torch.eye(gram.size(-1), dtype=gram.dtype, device=gram.device)
    product: torch.Tensor | None = None
    for step in range(STEPS):
        q = torch.baddbmm(gram, gram, gram, beta=b, alpha=c).add_(eye, alpha=a)  # a·I + b·A + c·A²
        product = q if product is None else q @ product
        if step < STEPS - 1:
            gram = q @ gram @ q
    assert product is not None
    out = product @ x
    return out.mT if tall else out


def compute(stack: torch.Tensor, method: str, dtype: torch.dtype) -> torch.Tensor:
    """The orthogonalised stack by ``method`` (``gram`` always in float32)."""
    return gram_newton_schulz(stack) if method == "gram" else newton_schulz(stack, dtype)


def candidates(shape: Shape, dtype: torch.dtype, device: torch.device) -> list[str]:
    """The methods worth timing for one shape: the Gram form only on CPUs in float32 for wide (or tall) matrices."""
    long, short = max(shape), min(shape)
    if device.type == "cpu" and dtype == torch.float32 and long >= GRAM_MIN_ASPECT * short:
        return list(METHODS)
    return ["newton-schulz"]


def time_methods(stack: torch.Tensor, methods: list[str], dtype: torch.dtype, rounds: int = 3) -> dict[str, float]:
    """The fastest of ``rounds`` alternating timings of each method on ``stack``, in ms (after a warm-up call)."""
    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(stack.device)) if stack.is_cuda else (lambda: None)
    best = {m: float("inf") for m in methods}
    for m in methods:
        compute(stack, m, dtype)
    for r in range(rounds):
        for m in (methods if r % 2 == 0 else methods[::-1]):
            sync()
            t0 = time.perf_counter()
            compute(stack, m, dtype)
            sync()
            best[m] = min(best[m], (time.perf_counter() - t0) * 1000.0)
    return best


def choose(shapes: dict[Shape, int], dtype: torch.dtype, device: torch.device, threads: int) -> tuple[dict[Shape, str],
                                                                                                    str]:
    """Per matrix shape (with how many matrices of it are stacked), the faster method here: timed once per machine,
    torch version, threads and stack, and cached with the dtype trials (``tuigpt calibrate`` forgets them).
    Returns the choice and a line saying what was measured."""
    from tuigpt.engine.auto import device_label
    from tuigpt.telemetry.peak_cache import TRIAL_PREFIX, cached_trial, store_entry

    chosen: dict[Shape, str] = {}
    said: list[str] = []
    where = f"{threads} threads" if device.type == "cpu" else device.type
    for shape, count in sorted(shapes.items()):
        methods = candidates(shape, dtype, device)
        if len(methods) == 1:
            chosen[shape] = methods[0]
            continue
        key = (f"{TRIAL_PREFIX}orthogonalize|{where}|{device_label(device)}|torch {torch.__version__}|"
               f"{count}x{shape[0]}x{shape[1]}")
        entry = cached_trial(key)
        if entry is None:
            generator = torch.Generator(device=device).manual_seed(0)  # the run's own random streams stay untouched
            stack = torch.randn(count, *shape, device=device, generator=generator)
            ms = time_methods(stack, methods, dtype)
            entry = {"speedup": ms["newton-schulz"] / ms["gram"], "ms": ms, "measured_at": time.time(),
                     "machine": device_label(device)}
            store_entry(key, entry)
        chosen[shape] = "gram" if entry["speedup"] >= 1.0 else "newton-schulz"
        said.append(f"{shape[0]}x{shape[1]} {chosen[shape]} ({float(entry['speedup']):.2f}x)")
    how = "; ".join(said)
    return chosen, (f"Gram form vs direct iteration, timed here: {how}" if how else "")
