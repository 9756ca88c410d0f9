"""ProtoMAML (Triantafillou et al. 2020, "Meta-Dataset"): MAML whose output layer starts each task
from the prototypical network's classifier.

For a task with support features ``f(x_i)`` and class prototypes ``c_k`` (class means), the linear
head starts at ``W_k = 2 c_k``, ``b_k = -||c_k||^2``: its logits ``2 c_k . f - ||c_k||^2`` equal
the prototypical network's ``-||f - c_k||^2`` up to a term shared by all classes. Then every layer
takes MAML's inner steps. Meta-gradients flow through the prototypes into the body, in first order
(the paper's fo-Proto-MAML, the default) as in second order. The net's own output layer only fixes
the head's shape: its weights are never used.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metagym.learners.maml import MAML
from metagym.learners.protonet import prototypes
from metagym.tasks.base import SupervisedTask


def prototype_head(features: Tensor, labels: Tensor, ways: int) -> tuple[Tensor, Tensor]:
    """Support features ``(S, D)`` and labels ``(S,)`` -> head weight ``(ways, D)`` and bias
    ``(ways,)`` with ``W_k = 2 c_k`` and ``b_k = -||c_k||^2``."""
    centres = prototypes(features[None], labels[None], ways)[0]
    return 2.0 * centres, -centres.pow(2).sum(-1)


class ProtoMAML(MAML):
    """ProtoMAML over ``model``, an ``nn.Sequential`` whose last layer is ``nn.Linear(D, ways)``.

    Args:
        model: body layers then the linear head: images ``(n, *image)`` -> logits ``(n, ways)``.
        inner_lr, train_steps, eval_steps, first_order, meta_lr, backend: as in
            :class:`~metagym.learners.maml.MAML` (cross-entropy loss).
    """

    #: Every task starts from its own head: task by task.
    batched_adaptation = False
    compilable = False

    def __init__(self, model: nn.Sequential, **maml: object):
        head = model[-1] if isinstance(model, nn.Sequential) and len(model) > 1 else None
        if not isinstance(head, nn.Linear) or head.bias is None:
            raise ValueError(
                "ProtoMAML needs an nn.Sequential whose last layer is nn.Linear(D, ways) with a bias"
            )
        maml.setdefault("first_order", True)
        if maml.get("meta_sgd"):
            raise ValueError("ProtoMAML takes plain SGD inner steps (meta_sgd is not supported)")
        if maml.get("backend") == "vmap":
            raise ValueError(
                "ProtoMAML starts every task from its own head, which the batched vmap path does "
                "not take yet; use backend='higher', 'loop' or 'auto'"
            )
        super().__init__(model, F.cross_entropy, **maml)
        self.ways = head.out_features
        self.name = "protomaml"

    def config(self) -> dict:
        return {**super().config(), "ways": self.ways}

    def initial_weights(self, task: SupervisedTask, meta_grad: bool) -> list[Tensor]:
        body = self.model[:-1]
        with torch.set_grad_enabled(meta_grad):
            if int(task.support.y.max()) >= self.ways:
                raise ValueError(
                    f"{self.name} was built for {self.ways}-way tasks, got label "
                    f"{int(task.support.y.max())}"
                )
            weight, bias = prototype_head(body(task.support.x), task.support.y, self.ways)
        return [*body.parameters(), weight, bias]
