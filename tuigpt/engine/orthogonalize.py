"""Muon's orthogonalisation of a stack of same-shaped matrices, and the way of computing it that is fastest here.

Muon replaces each matrix's update G by about U·V^T (G = U·S·V^T): five steps of the quintic Newton–Schulz
iteration X ← a·X + (b·A + c·A²)·X with A = X·X^T, on X = G/‖G‖, with Keller Jordan's coefficients (his Muon
post and github.com/KellerJordan/Muon; torch.optim.Muon uses the same). It maps every singular value σ of X
through the same odd polynomial f, so the result is U·f(S)·V^T, not U·V^T exactly (f(σ) lands in about
[0.7, 1.2]), which trains as well (Keller Jordan's post).

Two ways compute the same f on a stack, and two ways to stack a model's matrices; :func:`plan` times them:

- ``newton-schulz``: the iteration on the stacked matrices with batched matmuls (the wide side kept as the
  inner dimension), in bf16 where the device has fast bf16 (the modded-nanogpt speedrun and nanochat run it so
  on GPUs), else float32. Per step 4·m²·n + 2·m³ FLOPs for an m × n matrix (m ≤ n).
- ``gram``: the same iteration carried out on the m × m Gram matrix A₀ = X₀·X₀^T alone. Each step's
  Q = a·I + b·A + c·A² is a polynomial of A, so the steps commute: A_{k+1} = Q·A·Q, the product P = Q₄⋯Q₀
  collects them, and X₅ = P·X₀. The n-wide products happen twice instead of ten times (≈ 4·m²·n + 17·m³ FLOPs in
  all), which pays on a CPU for matrices wider than tall by 3 or more (the MLP's 4× ones); float32 only, as
  the Gram matrix squares the condition number.
- stacks ``by shape`` (matrices of one shape once turned wide) or ``padded`` (every matrix sharing a short side
  in one stack, zero-padded to the longest: zero columns stay zero through the iteration). Padding costs FLOPs
  and saves launches: it pays where a step is bound by kernel launches (a GPU running a small model), not where
  it is bound by arithmetic (a CPU).

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


def layouts(shapes: list[Shape]) -> dict[str, list[list[int]]]:
    """Ways to stack matrices of ``shapes`` (indices into it): ``by shape`` (the same shape once turned wide)
    and ``padded`` (the same short side, zero-padded to the longest)."""
    by_shape: dict[Shape, list[int]] = {}
    by_side: dict[int, list[int]] = {}
    for k, (rows, cols) in enumerate(shapes):
        by_shape.setdefault((min(rows, cols), max(rows, cols)), []).append(k)
        by_side.setdefault(min(rows, cols), []).append(k)
    out = {"by shape": list(by_shape.values())}
    if len(by_side) < len(by_shape):
        out["padded"] = list(by_side.values())
    return out


def plan(shapes: list[Shape], dtype: torch.dtype, device: torch.device,
         threads: int) -> tuple[list[tuple[list[int], str]], str]:
    """How to stack and orthogonalise matrices of ``shapes`` fastest here: every layout's stacks timed with every
    method worth timing, the fastest total kept. Timed once per machine, torch version, threads and set of shapes,
    and cached with the dtype trials (``tuigpt calibrate`` forgets them). Returns the stacks (indices into
    ``shapes``, method) and a line saying what was measured."""
    from tuigpt.engine.auto import device_label
    from tuigpt.telemetry.peak_cache import TRIAL_PREFIX, cached_trial, store_entry

    options = layouts(shapes)
    stacks = {name: [(ks, (len(ks), min(shapes[ks[0]]), max(max(shapes[k]) for k in ks))) for ks in groups]
              for name, groups in options.items()}
    timed = [s for ss in stacks.values() for s in ss if len(candidates(s[1][1:], dtype, device)) > 1]
    if len(options) == 1 and not timed:
        return [(ks, "newton-schulz") for ks, _ in stacks["by shape"]], ""
    where = f"{threads} threads" if device.type == "cpu" else device.type
    signature = ",".join(f"{r}x{c}" for r, c in shapes)
    key = (f"{TRIAL_PREFIX}muon-plan|{where}|{device_label(device)}|torch {torch.__version__}|"
           f"{str(dtype).removeprefix('torch.')}|{signature}")
    entry = cached_trial(key)
    if entry is None:
        generator = torch.Generator(device=device).manual_seed(0)  # the run's own random streams stay untouched
        totals: dict[str, float] = {}
        methods: dict[str, list[str]] = {}
        for name, layout in stacks.items():
            totals[name], methods[name] = 0.0, []
            for _, shape in layout:
                stack = torch.randn(*shape, device=device, dtype=torch.float32, generator=generator)
                ms = time_methods(stack, candidates(shape[1:], dtype, device), dtype)
                best = min(ms, key=ms.__getitem__)
                totals[name] += ms[best]
                methods[name].append(best)
        chosen = min(totals, key=totals.__getitem__)
        other = max(totals, key=totals.__getitem__)
        entry = {"speedup": totals[other] / totals[chosen], "layout": chosen, "methods": methods[chosen],
                 "ms": totals, "measured_at": time.time(), "machine": device_label(device)}
        store_entry(key, entry)
    layout, chosen_methods = entry["layout"], entry["methods"]
    result = [(ks, m) for (ks, _), m in zip(stacks[layout], chosen_methods)]
    ms = ", ".join(f"{name} {float(v):.2f} ms" for name, v in entry["ms"].items())
    forms = "/".join(sorted(set(chosen_methods)))
    return result, f"stacks {layout}, {forms}: timed here ({ms} an orthogonalisation)"
