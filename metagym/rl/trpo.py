"""Trust-region policy optimization's update (Schulman et al. 2015): the natural-gradient
direction by conjugate gradient on Hessian-vector products of the KL, then a backtracking line
search that accepts the first step that lowers the surrogate loss within the KL bound.

Used as MAML-RL's outer optimizer; the loss and KL closures may differentiate through an inner
adaptation step (second-order MAML).

Split across processes (``torchrun``), each process computes the loss, KL, gradient and
Fisher-vector products of its share of the data, and ``trpo_step``'s ``mean`` argument averages
them over the processes (each weighted by its share). Conjugate gradient and the line search then
run on identical numbers in every process, so every process takes the identical step. In one
process ``mean`` is the identity: the same code with a trivial reduction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def local_mean(tensor: Tensor) -> Tensor:
    """The mean over processes in a single process: ``tensor`` itself."""
    return tensor


def conjugate_gradient(
    matrix_vector: Callable[[Tensor], Tensor],
    b: Tensor,
    iterations: int = 10,
    residual_tol: float = 1e-10,
) -> Tensor:
    """Approximately solve ``A x = b`` for a symmetric positive definite ``A`` given as
    ``matrix_vector(v) = A v``."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iterations):
        ap = matrix_vector(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        if rr_new < residual_tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


@dataclass
class TRPOStats:
    """What one TRPO update did."""

    loss_before: float
    loss_after: float
    kl: float
    step_fraction: float
    """fraction of the full natural step that was accepted (0 when the line search failed)"""
    backtracks: int


def trpo_step(
    parameters: Sequence[nn.Parameter],
    loss_and_kl: Callable[[bool], tuple[Tensor, Tensor]],
    *,
    max_kl: float = 0.01,
    damping: float = 1e-5,
    cg_iterations: int = 10,
    backtrack_ratio: float = 0.8,
    max_backtracks: int = 15,
    mean: Callable[[Tensor], Tensor] = local_mean,
) -> TRPOStats:
    """One TRPO update of ``parameters`` in place.

    Args:
        parameters: the weights to update.
        loss_and_kl: ``loss_and_kl(differentiable)`` returns the surrogate loss (to minimize) and
            the mean KL between the policy that collected the data and the current one, both
            computed with the current ``parameters``; with ``differentiable=False`` it may skip
            building a graph (line search). With ``differentiable=True`` it may also return a
            third element, a function ``v -> F v`` (the KL's Hessian at the current weights times
            a flat vector ``v``), used instead of differentiating the KL twice.
        max_kl: the trust region's bound on the KL.
        damping: added to the KL's Hessian (times the identity) for conditioning.
        cg_iterations: conjugate-gradient iterations.
        backtrack_ratio, max_backtracks: the line search shrinks the step by ``backtrack_ratio``
            at most ``max_backtracks`` times; if no step is accepted the weights are restored.
        mean: the mean over processes of a tensor computed from this process's share of the data
            (:meth:`metagym.distributed.DistributedMetaBatch.mean`); it is applied to the loss,
            its gradient, every Fisher-vector product and the line search's loss and KL. The
            identity (default) in a single process.
    """
    parameters = list(parameters)
    loss, kl, *given = loss_and_kl(True)
    grads = mean(flat(torch.autograd.grad(loss, parameters, retain_graph=True)))
    if given:
        product = given[0]

        def fisher_vector(v: Tensor) -> Tensor:
            return mean(product(v).detach()) + damping * v

    else:
        kl_grads = flat(torch.autograd.grad(kl, parameters, create_graph=True))

        def fisher_vector(v: Tensor) -> Tensor:
            hv = torch.autograd.grad(kl_grads @ v, parameters, retain_graph=True)
            return mean(flat(hv).detach()) + damping * v

    direction = conjugate_gradient(fisher_vector, grads.detach(), cg_iterations)
    shs = 0.5 * (direction @ fisher_vector(direction))
    # full_step = direction / sqrt(shs / max_kl): the quadratic model's KL of the step is max_kl.
    full_step = direction / torch.sqrt(shs.clamp_min(1e-12) / max_kl)
    loss_before = float(mean(loss.detach()))
    del loss, kl
    old = [p.detach().clone() for p in parameters]
    fraction = 1.0
    for backtrack in range(max_backtracks):
        _assign(parameters, old, full_step, fraction)
        new_loss, new_kl = mean(torch.stack([t.detach() for t in loss_and_kl(False)[:2]]))
        if float(new_loss) < loss_before and float(new_kl) <= max_kl:
            return TRPOStats(loss_before, float(new_loss), float(new_kl), fraction, backtrack)
        fraction *= backtrack_ratio
    _assign(parameters, old, full_step, 0.0)
    return TRPOStats(loss_before, loss_before, 0.0, 0.0, max_backtracks)


def _assign(parameters: list[nn.Parameter], old: list[Tensor], step: Tensor, fraction: float):
    offset = 0
    with torch.no_grad():
        for p, o in zip(parameters, old, strict=True):
            n = p.numel()
            p.copy_(o - fraction * step[offset : offset + n].view_as(p))
            offset += n
