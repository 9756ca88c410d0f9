"""MAML's meta-gradient as one ``torch.compile``d function (``MAML(..., backend="compiled")``).

The vmap backend runs the inner loop under ``vmap`` and gets the meta-gradient from a backward
pass, which ``torch.compile`` cannot compile in second order (no double backward). Here the
whole meta-gradient is one forward function in ``torch.func`` terms, ``grad`` of the mean query
loss after the inner SGD steps, each a ``grad`` of the support loss, ``vmap``ped over the tasks:
the compiler then traces the forward passes, the backward passes and the backward of the
backward passes into one graph and fuses its small operations, which is where a small net's step
spends its time (measured: sinusoid MLP, 4-5x the vmap backend's step on one CPU thread,
docs/performance.md). The first call for each meta-batch shape compiles (seconds).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, grad_and_value, vmap

from metagym.learners.maml_batched import FunctionalModel

#: (meta-gradient of the parameters, of Meta-SGD's step sizes or None, per-task query losses
#: ``(T,)``, per-task support losses before the first step ``(T,)``).
MetaGradient = tuple[dict[str, Tensor], dict[str, Tensor] | None, Tensor, Tensor]


def compiled_meta_gradient(learner: Any) -> Callable[[dict, dict, Any], MetaGradient]:
    """``f(params, rates, data)``: the meta-gradient of ``learner``'s mean query loss over the
    tasks of ``data`` (its :meth:`batch_tasks` pytree), compiled. ``params`` and ``rates``
    (Meta-SGD's step sizes, or plain MAML's fixed ones as 0-dim tensors) are detached tensors
    keyed by parameter name."""
    module = learner.model
    buffers = dict(module.named_buffers())
    steps, first_order = learner.train_steps, learner.first_order
    learned_rates = learner.meta_sgd

    def one_task(params: dict, rates: dict, task_data: Any) -> tuple[Tensor, Tensor]:
        task = learner.unbatch_task(task_data)

        def support(weights: dict) -> Tensor:
            return learner.support_loss(FunctionalModel(module, weights, buffers), task)

        fast, first = params, torch.zeros(())
        for step in range(steps):
            gradient, loss = grad_and_value(support)(fast)
            if step == 0:
                first = loss
            if first_order:  # the inner gradients and step sizes are constants
                fast = {n: w - rates[n].detach() * gradient[n].detach() for n, w in fast.items()}
            else:
                fast = {n: w - rates[n] * gradient[n] for n, w in fast.items()}
        query = learner.query_loss(FunctionalModel(module, fast, buffers), task)
        return query, first.detach()

    def meta_loss(params: dict, rates: dict, data: Any) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        query, support = vmap(one_task, in_dims=(None, None, 0), randomness="error")(
            params, rates, data
        )
        return query.mean(), (query.detach(), support)

    argnums = (0, 1) if learned_rates else 0
    meta_gradient = grad(meta_loss, argnums=argnums, has_aux=True)

    def run(params: dict, rates: dict, data: Any) -> MetaGradient:
        grads, (query, support) = meta_gradient(params, rates, data)
        if learned_rates:
            return grads[0], grads[1], query, support
        return grads, None, query, support

    return torch.compile(_own_code(run), dynamic=False)


def _own_code(function: Callable) -> Callable:
    """``function`` with a code object of its own. torch.compile keeps its compiled graphs per
    code object, at most ``recompile_limit`` (8) of them: every learner's ``run`` closes over
    another model, so from the ninth learner of a process on (a sweep, the benchmark, the test
    suite) the shared code object would silently fall back to eager execution (measured: 3x
    slower than compiled)."""
    code = function.__code__.replace()
    return types.FunctionType(
        code, function.__globals__, function.__name__, function.__defaults__, function.__closure__
    )
