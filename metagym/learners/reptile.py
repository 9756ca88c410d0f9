"""Reptile (Nichol et al. 2018, "On first-order meta-learning algorithms").

Each task of a meta-batch is adapted by ``train_steps`` SGD steps on all its examples (support and
query together: Reptile has no support/query split in training, and the paper trains on more shots
than it tests with), through the one adaptation routine without meta-gradients. The outer update
moves the initialization towards the mean adapted weights::

    theta <- theta + outer_lr * (mean_i phi_i - theta)

written as an SGD step on the "gradient" ``theta - mean_i phi_i``, with ``outer_lr`` linearly
annealed to zero over ``total_updates`` (the paper's schedule). The loop backend adapts the tasks
one by one; the vmap backend adapts the whole meta-batch in one call (same update). At test time
Reptile adapts like MAML: ``eval_steps`` SGD steps on the support set.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from metagym.learners.maml import MAML, adapted_model
from metagym.learners.maml_batched import adapt_batched
from metagym.tasks.base import Examples, SupervisedTask


def training_task(task: SupervisedTask, by_label: bool = False) -> SupervisedTask:
    """The task with its support set replaced by support and query together (``by_label``, for
    class labels: in order of label, stable, so every ``m``-th example makes a class-balanced
    minibatch)."""
    x = torch.cat([task.support.x, task.query.x])
    y = torch.cat([task.support.y, task.query.y])
    if by_label and y.dim() == 1 and not y.is_floating_point():
        order = torch.argsort(y, stable=True)
        x, y = x[order], y[order]
    return SupervisedTask(Examples(x, y), task.query, task.params)


class Reptile(MAML):
    """Reptile over ``model``.

    Args:
        model: the network; inputs ``(n, *input_shape)`` -> outputs ``(n, *output_shape)``.
        loss_fn: ``loss_fn(prediction, target) -> scalar``.
        inner_lr: inner SGD step size (training and adaptation).
        train_steps: inner steps per task in meta-training (>= 1).
        eval_steps: default inner steps when adapting at test time.
        outer_lr: the outer step size ``epsilon`` at the start (1.0 in the paper's Omniglot runs).
        total_updates: meta-updates over which ``outer_lr`` decays linearly to 0; 0 keeps it.
        backend: ``"higher"`` (tasks one by one) or ``"vmap"`` (the meta-batch in one call).
    """

    compilable = False

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.mse_loss,
        *,
        inner_lr: float = 0.01,
        train_steps: int = 5,
        eval_steps: int = 10,
        train_batches: int = 1,
        outer_lr: float = 1.0,
        total_updates: int = 0,
        backend: str = "higher",
    ):
        if train_steps < 1:
            raise ValueError(f"Reptile needs train_steps >= 1, got {train_steps!r}")
        if (
            isinstance(train_batches, bool)
            or not isinstance(train_batches, int)
            or train_batches < 1
        ):
            raise ValueError(f"train_batches must be an int >= 1, got {train_batches!r}")
        if (
            isinstance(total_updates, bool)
            or not isinstance(total_updates, int)
            or total_updates < 0
        ):
            raise ValueError(f"total_updates must be an int >= 0, got {total_updates!r}")
        super().__init__(
            model,
            loss_fn,
            inner_lr=inner_lr,
            train_steps=train_steps,
            eval_steps=eval_steps,
            first_order=True,
            meta_lr=outer_lr,
            backend=backend,
        )
        self.name = "reptile"
        self.outer_lr = outer_lr
        self.total_updates = total_updates
        self.train_batches = train_batches
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=outer_lr)

    def config(self) -> dict:
        config = super().config()
        for key in ("first_order", "meta_sgd", "meta_lr"):
            config.pop(key)
        return {
            **config,
            "outer_lr": self.outer_lr,
            "total_updates": self.total_updates,
            "train_batches": self.train_batches,
        }

    def before_update(self) -> None:
        if self.total_updates:
            fraction = min(self.updates / self.total_updates, 1.0)
            self.optimizer.param_groups[0]["lr"] = self.outer_lr * (1.0 - fraction)

    def _minibatch_loss(
        self, task_of: Callable[[object], SupervisedTask]
    ) -> Callable[[nn.Module, object], Tensor]:
        """``loss(model, data)`` whose k-th call (k = 0, 1, ...: one per inner step) is the loss
        on minibatch ``k mod train_batches`` of ``task_of(data)``'s support examples: those at
        positions ``j, j + m, j + 2m, ...`` (class-balanced when they are in order of label)."""
        calls = itertools.count()
        m = self.train_batches

        def loss(model: nn.Module, data: object) -> Tensor:
            support = task_of(data).support
            j = next(calls) % m
            return self.loss_fn(model(support.x[j::m]), support.y[j::m])

        return loss

    def compute_meta_gradients(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        """Set ``.grad`` of the initial weights to ``theta - mean adapted weights``."""
        if not tasks:
            raise ValueError("a meta-batch needs at least one task")
        batches = self.train_batches
        merged = [training_task(t, by_label=batches > 1) for t in tasks]
        if self.backend == "vmap":
            result = adapt_batched(
                self.model,
                self._minibatch_loss(lambda data: self.unbatch_task(data)),
                self.batch_tasks(merged),
                steps=self.train_steps,
                learning_rates=self.inner_learning_rates(),
                meta_grad=False,
            )
            adapted = [w.mean(0) for w in result.weights.values()]
            support_before = float(result.support_losses[:, 0].mean())
        else:
            adapted = [torch.zeros_like(p) for p in self.model.parameters()]
            support_before = 0.0
            for task in merged:
                steps = self.train_steps
                loss = self._minibatch_loss(lambda _, task=task: task)
                with adapted_model(
                    self.model,
                    self.inner_optimizer,
                    lambda model, loss=loss: loss(model, None),
                    steps=steps,
                    meta_grad=False,
                    first_order=True,
                    snapshots=[steps],
                    backend=self.backend,
                ) as run:
                    for total, w in zip(adapted, run.snapshots[steps], strict=True):
                        total.add_(w, alpha=1.0 / len(merged))
                support_before += run.support_losses[0] / len(merged)
        distance = 0.0
        for p, w in zip(self.model.parameters(), adapted, strict=True):
            step = p.detach() - w
            p.grad = step if p.grad is None else p.grad + step
            distance += float(step.pow(2).sum())
        return {
            "losses/support_before_adaptation": support_before,
            "charts/distance_to_adapted": distance**0.5,
        }
