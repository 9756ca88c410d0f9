"""ANIL (Raghu et al. 2020, "Rapid learning or feature reuse?"): MAML whose inner loop adapts only
the head; the body is meta-learned by the outer loop alone.

The body's features of a task's support and query sets are computed once per task, so the inner
steps run on the head only (a linear layer): much cheaper than MAML's steps through the whole net,
and the vmap backend takes conv bodies with BatchNorm because the body runs outside ``vmap``.
Second order: meta-gradients reach the body through the support features (the head's inner
gradient depends on them) and the query features; first order: through the query features only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from metagym.learners.base import Predictor
from metagym.learners.maml import MAML, refuse_running_stats
from metagym.tasks.base import Examples, SupervisedTask


class ANIL(MAML):
    """MAML with only ``head`` adapted per task.

    Args:
        body: inputs ``(n, *input_shape)`` -> features ``(n, D)``; meta-learned, never adapted.
        head: features ``(n, D)`` -> outputs ``(n, *output_shape)``; its initialization is
            meta-learned and adapted by the inner SGD steps.
        loss_fn, inner_lr, train_steps, eval_steps, first_order, meta_lr, backend: as in
            :class:`~metagym.learners.maml.MAML` (``meta_lr``: Adam over body and head).
    """

    compilable = False

    def __init__(
        self,
        body: nn.Module,
        head: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.mse_loss,
        **maml: object,
    ):
        if maml.get("meta_sgd"):
            raise ValueError("ANIL takes plain SGD inner steps (meta_sgd is not supported)")
        super().__init__(head, loss_fn, **maml)
        refuse_running_stats(body)
        self.body = body
        self.name = "anil-fo" if self.first_order else "anil"
        # Rebuilt so that the body's weights are meta-trained too.
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.meta_lr)

    def featurize(self, task: SupervisedTask) -> SupervisedTask:
        """The task with the body's features ``(n, D)`` in place of its inputs."""
        return SupervisedTask(
            Examples(self.body(task.support.x), task.support.y),
            Examples(self.body(task.query.x), task.query.y),
            task.params,
        )

    def predictor(self, fmodel: nn.Module, weights: list[Tensor]) -> Predictor:
        def predict(x: Tensor) -> Tensor:
            with torch.no_grad():
                return fmodel(self.body(x), params=weights)

        return predict

    def meta_only_parameters(self) -> list[Tensor]:
        return list(self.body.parameters())
