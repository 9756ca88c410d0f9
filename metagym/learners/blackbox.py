"""Black-box recurrent learner for regression: an LSTM/GRU reads the support pairs, then predicts.

Adaptation is a forward pass: the recurrent state after reading the support set ``(x_i, y_i)``
summarizes the task, and a head maps ``(summary, x_query)`` to ``y_query``. Meta-training is plain
supervised learning over tasks (Santoro et al. 2016; Duan et al. 2016 in spirit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from metagym.learners.base import Learner, Predictor, check_positive
from metagym.nets.mlp import mlp
from metagym.nets.recurrent import SetReader
from metagym.tasks.base import SupervisedTask, stack_tasks


class BlackBoxRegressor(Learner):
    """Recurrent learner that conditions on the support set.

    Args:
        x_dim, y_dim: feature sizes of inputs and targets.
        hidden: recurrent state size.
        cell: ``"lstm"`` or ``"gru"``.
        loss_fn: ``loss_fn(prediction, target) -> scalar``.
        meta_lr: Adam step size.
    """

    name = "blackbox"
    uses_steps = False

    def __init__(
        self,
        x_dim: int = 1,
        y_dim: int = 1,
        *,
        hidden: int = 64,
        cell: str = "lstm",
        loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.mse_loss,
        meta_lr: float = 1e-3,
    ):
        super().__init__()
        check_positive("meta_lr", meta_lr)
        self.reader = SetReader(x_dim + y_dim, hidden, cell=cell)
        self.head = mlp(hidden + x_dim, [hidden, hidden], y_dim)
        self.loss_fn = loss_fn
        self.cell = cell
        self.hidden = hidden
        self.optimizer = torch.optim.Adam(self.parameters(), lr=meta_lr)

    def config(self) -> dict:
        lr = self.optimizer.param_groups[0]["lr"]
        return {"name": self.name, "cell": self.cell, "hidden": self.hidden, "meta_lr": lr}

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Support ``(T, K, x_dim)``, ``(T, K, y_dim)``; queries ``(T, Q, x_dim)`` -> ``(T, Q, y_dim)``."""
        summary = self.reader(torch.cat([support_x, support_y], dim=-1))  # (T, hidden)
        summary = summary.unsqueeze(1).expand(-1, query_x.shape[1], -1)
        return self.head(torch.cat([summary, query_x], dim=-1))

    def meta_train_step(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        support, query = stack_tasks(tasks)
        loss = self.loss_fn(self(support.x, support.y, query.x), query.y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"losses/query": float(loss.detach())}

    def adapt(self, task: SupervisedTask, steps: int | None = None) -> Predictor:
        support = task.support

        def predict(x: Tensor) -> Tensor:
            with torch.no_grad():
                return self(support.x[None], support.y[None], x[None])[0]

        return predict
