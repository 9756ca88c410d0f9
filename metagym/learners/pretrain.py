"""Pretrain-and-fine-tune baseline: one network fitted to all training tasks pooled together,
then fine-tuned on each task's support set by SGD with a step size tuned on ``val``.

It shares MAML's adaptation routine (the fine-tuning is MAML's inner loop without meta-gradients),
so the two differ only in how the initialization was trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from metagym.learners.maml import MAML
from metagym.tasks.base import SupervisedTask, stack_tasks

DEFAULT_LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)


class StepSizeTuning:
    """Fine-tuning step size held by ``self.inner_optimizer`` and tuned on ``val`` after training.

    Mixed into the fine-tuning baselines, which set ``inner_optimizer``, ``lr_grid`` and
    ``tune_tasks`` and implement ``adapt``.
    """

    tuned = ("fine_tune_lr",)

    @property
    def fine_tune_lr(self) -> float:
        return self.inner_optimizer.param_groups[0]["lr"]

    def set_fine_tune_lr(self, lr: float) -> None:
        for group in self.inner_optimizer.param_groups:
            group["lr"] = lr

    def restore_tuned(self, saved: dict) -> None:
        self.set_fine_tune_lr(float(saved["fine_tune_lr"]))

    def after_training(self, distribution, generator: torch.Generator) -> dict[str, float]:
        """Pick the step size of ``lr_grid`` with the best mean ``val`` score after ``eval_steps``."""
        if not self.lr_grid:
            return {"fine_tune_lr": self.fine_tune_lr}
        was_training = self.training
        self.eval()
        tasks = [t.to(self.device) for t in distribution.sample(self.tune_tasks, "val", generator)]
        sign = 1.0 if distribution.lower_is_better else -1.0
        best_lr, best_score = self.fine_tune_lr, math.inf
        for lr in self.lr_grid:
            self.set_fine_tune_lr(lr)
            adapted = self.adapt_many(tasks, [self.eval_steps])  # batched where it can be
            scores = [
                distribution.score(p[self.eval_steps], t)
                for p, t in zip(adapted, tasks, strict=True)
            ]
            score = sign * sum(scores) / len(tasks)
            if math.isfinite(score) and score < best_score:
                best_lr, best_score = lr, score
        self.set_fine_tune_lr(best_lr)
        self.train(was_training)
        return {"fine_tune_lr": best_lr}


class PretrainFineTune(StepSizeTuning, MAML):
    """Joint training on pooled tasks, SGD fine-tuning at test time.

    Args:
        model: the network.
        loss_fn: ``loss_fn(prediction, target) -> scalar``.
        fine_tune_lr: SGD step size at test time (replaced by the tuned value after training).
        eval_steps: default fine-tuning steps.
        lr_grid: step sizes tried on ``val`` after training; empty to keep ``fine_tune_lr``.
        tune_tasks: number of ``val`` tasks used for tuning.
        meta_lr: Adam step size for pretraining.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.mse_loss,
        *,
        fine_tune_lr: float = 0.01,
        eval_steps: int = 10,
        lr_grid: Sequence[float] = DEFAULT_LR_GRID,
        tune_tasks: int = 100,
        meta_lr: float = 1e-3,
    ):
        super().__init__(
            model,
            loss_fn,
            inner_lr=fine_tune_lr,
            train_steps=0,
            eval_steps=eval_steps,
            meta_lr=meta_lr,
        )
        self.name = "pretrain"
        self.lr_grid = tuple(lr_grid)
        self.tune_tasks = tune_tasks

    def config(self) -> dict:
        return {
            "name": self.name,
            "fine_tune_lr": self.fine_tune_lr,
            "eval_steps": self.eval_steps,
            "lr_grid": list(self.lr_grid),
            "meta_lr": self.optimizer.param_groups[0]["lr"],
        }

    def meta_train_step(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        support, query = stack_tasks(tasks)
        x = torch.cat([support.x, query.x], dim=1).flatten(0, 1)
        y = torch.cat([support.y, query.y], dim=1).flatten(0, 1)
        loss = self.loss_fn(self.model(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"losses/pooled": float(loss.detach())}
