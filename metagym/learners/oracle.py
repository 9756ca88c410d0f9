"""Oracle: a network that is told the task's parameters (e.g. amplitude and phase).

It needs no adaptation and bounds what any learner could reach with this architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from metagym.learners.base import Learner, Predictor, check_positive
from metagym.nets.mlp import mlp
from metagym.tasks.base import SupervisedTask


class Oracle(Learner):
    """MLP on ``[x, task parameters]``.

    Args:
        param_keys: the keys of ``task.params`` fed to the network.
        x_dim, y_dim: feature sizes of inputs and targets.
        hidden: hidden layer sizes.
        loss_fn: ``loss_fn(prediction, target) -> scalar``.
        meta_lr: Adam step size.
    """

    name = "oracle"
    uses_steps = False

    def __init__(
        self,
        param_keys: Sequence[str] = ("amplitude", "phase"),
        x_dim: int = 1,
        y_dim: int = 1,
        *,
        hidden: Sequence[int] = (40, 40),
        loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.mse_loss,
        meta_lr: float = 1e-3,
    ):
        super().__init__()
        check_positive("meta_lr", meta_lr)
        self.param_keys = tuple(param_keys)
        self.net = mlp(x_dim + len(self.param_keys), list(hidden), y_dim)
        self.loss_fn = loss_fn
        self.optimizer = torch.optim.Adam(self.parameters(), lr=meta_lr)

    def config(self) -> dict:
        lr = self.optimizer.param_groups[0]["lr"]
        return {"name": self.name, "param_keys": list(self.param_keys), "meta_lr": lr}

    def _inputs(self, x: Tensor, task: SupervisedTask) -> Tensor:
        """``x`` of shape ``(n, x_dim)`` with the task parameters appended: ``(n, x_dim + p)``."""
        missing = [k for k in self.param_keys if k not in task.params]
        if missing:
            raise KeyError(
                f"oracle needs task parameters {missing}; task has {sorted(task.params)}"
            )
        params = torch.tensor([float(task.params[k]) for k in self.param_keys], device=x.device)
        return torch.cat([x, params.expand(x.shape[0], -1)], dim=-1)

    def meta_train_step(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        inputs = torch.cat([self._inputs(torch.cat([t.support.x, t.query.x]), t) for t in tasks])
        targets = torch.cat([torch.cat([t.support.y, t.query.y]) for t in tasks])
        loss = self.loss_fn(self.net(inputs), targets)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"losses/query": float(loss.detach())}

    def adapt(self, task: SupervisedTask, steps: int | None = None) -> Predictor:
        def predict(x: Tensor) -> Tensor:
            with torch.no_grad():
                return self.net(self._inputs(x, task))

        return predict
