"""MAML++ (Antoniou et al. 2019, "How to train your MAML"): MAML with options that can be switched
on one by one.

- ``lslr``: learned per-layer per-step inner step sizes (one scalar per parameter tensor and inner
  step, initialized at ``inner_lr``, meta-learned); evaluation steps past ``train_steps`` take the
  last step's sizes.
- ``multi_step_loss``: the meta-loss is a weighted sum of the query losses after every inner
  step; the weights start uniform and anneal towards the last step over this fraction of the
  meta-updates (the paper's schedule: non-final weights shrink by ``1/(N*updates)`` per update to
  at least ``0.03/N``), after which only the last step counts. 0 turns it off.
- ``first_order_fraction``: derivative-order annealing: first order for this fraction of the
  meta-updates, second order after. 0 turns it off.
- ``cosine``: the meta step size follows a cosine from ``meta_lr`` to ``min_meta_lr`` over
  ``total_updates``.

The paper's per-step BatchNorm weights and running statistics are not here: metagym's nets use
batch statistics (``track_running_stats=False``), so there are no running statistics to keep per
step, and per-step BatchNorm weights need a forward pass that knows the inner step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from metagym.learners.base import check_positive
from metagym.learners.maml import MAML, sgd_per_parameter


def msl_weights(steps: int, updates: int, anneal_updates: int) -> list[float] | None:
    """MAML++'s multi-step loss weights after ``updates`` meta-updates; None once annealed."""
    if updates >= anneal_updates:
        return None
    decay = 1.0 / steps / anneal_updates
    floor = 0.03 / steps
    weights = [max(1.0 / steps - updates * decay, floor) for _ in range(steps - 1)]
    last = min(1.0 / steps + updates * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return [*weights, last]


def cosine_rate(start: float, end: float, updates: int, total: int) -> float:
    """``end + (start - end) * (1 + cos(pi * updates / total)) / 2``, ``end`` after ``total``."""
    fraction = min(updates / total, 1.0)
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


class MAMLPlusPlus(MAML):
    """MAML with MAML++'s options (all on by default).

    Args:
        model, loss_fn, inner_lr, train_steps, eval_steps, meta_lr, backend: as in
            :class:`~metagym.learners.maml.MAML`.
        total_updates: the meta-updates of the run (the schedules' horizon, >= 1).
        lslr: learn per-layer per-step inner step sizes.
        multi_step_loss: fraction of ``total_updates`` over which the multi-step loss anneals.
        first_order_fraction: fraction of ``total_updates`` trained in first order.
        cosine: cosine-anneal the meta step size to ``min_meta_lr``.
    """

    #: The multi-step loss is read per task after every inner step: task by task.
    batched_adaptation = False
    compilable = False

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.mse_loss,
        *,
        total_updates: int,
        lslr: bool = True,
        multi_step_loss: float = 0.1,
        first_order_fraction: float = 0.3,
        cosine: bool = True,
        min_meta_lr: float = 1e-5,
        **maml: object,
    ):
        if maml.get("meta_sgd") or maml.get("first_order"):
            raise ValueError("MAML++ anneals the derivative order itself: no meta_sgd/first_order")
        if (
            isinstance(total_updates, bool)
            or not isinstance(total_updates, int)
            or total_updates < 1
        ):
            raise ValueError(f"total_updates must be an int >= 1, got {total_updates!r}")
        for label, value in (
            ("multi_step_loss", multi_step_loss),
            ("first_order_fraction", first_order_fraction),
        ):
            check_positive(label, value, allow_zero=True)
            if value > 1:
                raise ValueError(f"{label} is a fraction of the run, got {value!r}")
        check_positive("min_meta_lr", min_meta_lr)
        super().__init__(model, loss_fn, **maml)
        self.name = "maml++"
        self.total_updates = total_updates
        self.lslr = lslr
        self.multi_step_loss = multi_step_loss
        self.first_order_fraction = first_order_fraction
        self.cosine = cosine
        self.min_meta_lr = min_meta_lr
        self.step_rates = (
            nn.ParameterList(
                nn.Parameter(torch.tensor(float(self.inner_lr), dtype=p.dtype, device=p.device))
                for _ in range(max(self.train_steps, 1))
                for p in model.parameters()
            )
            if lslr
            else None
        )
        self.inner_optimizer = sgd_per_parameter(model, self.inner_lr)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.meta_lr)

    def config(self) -> dict:
        config = super().config()
        for key in ("first_order", "meta_sgd"):
            config.pop(key)
        return {
            **config,
            "total_updates": self.total_updates,
            "lslr": self.lslr,
            "multi_step_loss": self.multi_step_loss,
            "first_order_fraction": self.first_order_fraction,
            "cosine": self.cosine,
            "min_meta_lr": self.min_meta_lr,
        }

    def step_learning_rates(self) -> list[list[Tensor]] | None:
        if self.step_rates is None:
            return None
        n = len(self.step_rates) // max(self.train_steps, 1)
        rates = list(self.step_rates)
        return [rates[s * n : (s + 1) * n] for s in range(max(self.train_steps, 1))]

    def query_step_weights(self) -> list[float] | None:
        anneal = round(self.multi_step_loss * self.total_updates)
        if self.train_steps < 2 or anneal < 1:
            return None
        return msl_weights(self.train_steps, self.updates, anneal)

    def first_order_now(self) -> bool:
        return self.updates < round(self.first_order_fraction * self.total_updates)

    def before_update(self) -> None:
        if self.cosine:
            rate = cosine_rate(self.meta_lr, self.min_meta_lr, self.updates, self.total_updates)
            for group in self.optimizer.param_groups:
                group["lr"] = rate
