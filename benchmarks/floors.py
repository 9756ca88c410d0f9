"""What a MAML meta-training step cannot avoid: its counted passes, its FLOPs, the machine's peak.

- **Pass floor** (:func:`pass_floor`): second-order MAML with ``k`` inner steps must, per task,
  run the support set forward and backward ``k`` times, take ``k`` Hessian-vector products
  through those passes (each at least one more forward and backward of the support set: counted
  as one, a lower bound; reverse-over-reverse costs 1-2 of them) and run the query set forward
  and backward once: ``2k + 1`` passes (``k + 1`` in first order). The floor runs exactly those
  plain passes with the kernels of the backend ``"auto"`` picks for the net and device (task-
  batched weights under ``vmap``, or the loop backend's fused kernels task by task), so they use
  the same kernels, memory layout and task batching as the step they bound, and nothing of the
  step's own bookkeeping (no inner updates, no graph kept, no optimizer).
  (An earlier floor, one pass over every task's examples at once with shared weights, ran other
  kernels and layouts and measured slower than the conv4 step it was meant to bound.)
- **FLOPs** (:func:`case_flops`): ``torch.utils.flop_counter`` over one step of the reference
  path (matrix products and convolutions: forward, backward and double backward).
- **Peak** (:func:`peak_flops`): the best rate of a large float32 GEMM and of a 64-channel 3x3
  convolution over a large batch, measured on this device and thread count. oneDNN's 3x3
  convolutions reach more than the GEMM's rate in convolution FLOPs (they compute fewer
  multiplications, Winograd-style), so the peak is what this machine's kernels do, not the
  FMA units' datasheet rate; "% of peak" is the step's counted FLOPs over its time over it.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.harness import BenchPath, Case, synchronize
from metagym.learners.maml import choose_backend
from metagym.learners.maml_batched import FunctionalModel, batched_loss
from metagym.nets.layout import cpu_layout
from metagym.tasks.base import SupervisedTask


def floor_passes(steps: int, first_order: bool) -> int:
    """Forward+backward passes of the support or query set a MAML step needs per task."""
    return (steps if first_order else 2 * steps) + 1


def pass_floor(
    net: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    tasks: Sequence[SupervisedTask],
    device: torch.device,
    *,
    steps: int,
    first_order: bool,
) -> BenchPath:
    """The counted plain passes over ``tasks`` (:func:`floor_passes`) with the kernels of the
    backend ``"auto"`` picks: all tasks at once under ``vmap`` (task-batched weights, the vmap
    backend's normalization), or task by task through the loop backend's fused kernels."""
    model = copy.deepcopy(net)
    buffers = dict(model.named_buffers())
    passes = floor_passes(steps, first_order)
    on_support = passes - 1

    if choose_backend(net, device) == "vmap":
        support_x = torch.stack([t.support.x for t in tasks])
        support_y = torch.stack([t.support.y for t in tasks])
        query_x = torch.stack([t.query.x for t in tasks])
        query_y = torch.stack([t.query.y for t in tasks])
        loss = batched_loss(model, lambda m, data: loss_fn(m(data[0]), data[1]), buffers)

        def step():
            weights = {
                n: p.detach().expand(len(tasks), *p.shape).requires_grad_()
                for n, p in model.named_parameters()
            }
            for data in [(query_x, query_y)] + [(support_x, support_y)] * on_support:
                torch.autograd.grad(loss(weights, data).sum(), list(weights.values()))

    else:

        def step():
            weights = {n: p.detach().requires_grad_() for n, p in model.named_parameters()}
            fmodel = FunctionalModel(model, weights, buffers, fused=True)
            for task in tasks:
                for part in [task.query] + [task.support] * on_support:
                    torch.autograd.grad(loss_fn(fmodel(part.x), part.y), list(weights.values()))

    return BenchPath(f"floor ({passes} passes)", "floor", step)


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step`` (matrix products and convolutions, every direction)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def case_flops(case: Case) -> dict[str, int]:
    """Path -> FLOPs of one step: the arithmetic of the case's work, counted on its first path
    (every right path does the same work), for every path but the floor, counted on its own.
    (Counting each path apart would credit the vmap backend's conv4 step with the 10x larger
    count torch's batching rules dispatch, which runs at more than the measured peak.)"""
    reference = next(p for p in case.paths if p.kind != "floor")
    work = count_flops(reference.step)
    return {p.name: count_flops(p.step) if p.kind == "floor" else work for p in case.paths}


def _best_rate(run: Callable[[], object], flops: float, device: torch.device, rounds: int) -> float:
    run()
    times = []
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return flops / statistics.median(times)


def peak_flops(device: torch.device, rounds: int = 5) -> dict[str, float]:
    """Measured FLOP/s of a float32 GEMM (1024^3, or 4096^3 on CUDA) and of a 3x3 convolution,
    64 -> 64 channels, over 256 images of 14x14 (channels-last on the CPU), and their best."""
    generator = torch.Generator().manual_seed(0)
    n = 4096 if device.type == "cuda" else 1024
    a = torch.rand(n, n, generator=generator).to(device)
    b = torch.rand(n, n, generator=generator).to(device)
    gemm = _best_rate(lambda: a @ b, 2.0 * n**3, device, rounds)
    images = torch.rand(256, 64, 14, 14, generator=generator).to(device)
    weight = torch.rand(64, 64, 3, 3, generator=generator).to(device)
    if device.type == "cpu":
        images, weight = cpu_layout(images), cpu_layout(weight)
    conv_flops = 2.0 * 256 * 14 * 14 * 64 * 64 * 9
    conv = _best_rate(
        lambda: torch.nn.functional.conv2d(images, weight, padding=1), conv_flops, device, rounds
    )
    return {"gemm_flops_per_s": gemm, "conv_flops_per_s": conv, "peak_flops_per_s": max(gemm, conv)}
