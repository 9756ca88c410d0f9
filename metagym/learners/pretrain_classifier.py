"""Pretrain + fine-tune baseline for few-shot classification (Chen et al. 2019's "baseline").

Meta-training is ordinary classification: a conv4 backbone and a linear layer over all training
classes (rotations included), on the images of the training tasks, with their global class ids
(``task.params["class_ids"]``, training splits only). At test time the backbone is frozen and a
new N-way linear head, starting from zero, is fine-tuned on the support features by SGD through
:func:`metagym.learners.maml.adapted_model` (the library's one adaptation routine). The step size
is tuned on ``val`` after training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metagym.learners.base import Learner, Predictor, check_positive
from metagym.learners.maml import adapted_model
from metagym.learners.pretrain import StepSizeTuning
from metagym.tasks.base import SupervisedTask

DEFAULT_LR_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)


class PretrainClassifier(StepSizeTuning, Learner):
    """Classifier pretrained on all training classes; a fresh head fine-tuned per task.

    Args:
        backbone: images ``(n, *image)`` -> features ``(n, dim)`` (BatchNorm may track running
            statistics: only the head is adapted).
        dim: feature size.
        num_classes: number of training classes (``distribution.num_classes("train")``).
        ways: classes of the test tasks (outputs of the fine-tuned head).
        fine_tune_lr: SGD step size of fine-tuning (replaced by the tuned value after training).
        eval_steps: default fine-tuning steps.
        lr_grid: step sizes tried on ``val`` after training; empty to keep ``fine_tune_lr``.
        tune_tasks: ``val`` tasks used for tuning.
        meta_lr: Adam step size of pretraining.
    """

    name = "pretrain"
    uses_steps = True

    def __init__(
        self,
        backbone: nn.Module,
        dim: int,
        num_classes: int,
        ways: int,
        *,
        fine_tune_lr: float = 0.3,
        eval_steps: int = 10,
        lr_grid: Sequence[float] = DEFAULT_LR_GRID,
        tune_tasks: int = 50,
        meta_lr: float = 1e-3,
    ):
        super().__init__()
        check_positive("fine_tune_lr", fine_tune_lr)
        check_positive("meta_lr", meta_lr)
        if not isinstance(eval_steps, int) or eval_steps < 0:
            raise ValueError(f"eval_steps must be an int >= 0, got {eval_steps!r}")
        self.backbone = backbone
        self.classifier = nn.Linear(dim, num_classes)
        self.head = nn.Linear(dim, ways)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.head.requires_grad_(False)  # never pretrained: each task starts from zero
        self.ways, self.num_classes = ways, num_classes
        self.eval_steps = eval_steps
        self.lr_grid = tuple(lr_grid)
        self.tune_tasks = tune_tasks
        self.inner_optimizer = torch.optim.SGD(self.head.parameters(), lr=fine_tune_lr)
        self.optimizer = torch.optim.Adam(
            [*self.backbone.parameters(), *self.classifier.parameters()], lr=meta_lr
        )

    def config(self) -> dict:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "ways": self.ways,
            "fine_tune_lr": self.fine_tune_lr,
            "eval_steps": self.eval_steps,
            "lr_grid": list(self.lr_grid),
            "meta_lr": self.optimizer.param_groups[0]["lr"],
        }

    def meta_train_step(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        xs, ys = [], []
        for task in tasks:
            if not str(task.params.get("split", "")).startswith("train"):
                raise ValueError("pretraining needs tasks of a training split (global class ids)")
            class_ids = torch.as_tensor(task.params["class_ids"], device=task.support.y.device)
            xs += [task.support.x, task.query.x]
            ys += [class_ids[task.support.y], class_ids[task.query.y]]
        logits = self.classifier(self.backbone(torch.cat(xs)))
        y = torch.cat(ys)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        accuracy = (logits.argmax(-1) == y).float().mean()
        return {"losses/pooled": float(loss.detach()), "charts/train_accuracy": float(accuracy)}

    def adapt_steps(self, task: SupervisedTask, steps) -> dict[int, Predictor]:
        steps = sorted(set(steps))
        if any(s < 0 for s in steps):
            raise ValueError(f"adaptation steps must be >= 0, got {steps}")
        if int(task.support.y.max()) >= self.ways:
            raise ValueError(f"{self.name} was built for {self.ways}-way tasks")
        with torch.no_grad():
            features = self.backbone(task.support.x)
        labels = task.support.y

        def support_loss(head: nn.Module) -> Tensor:
            return F.cross_entropy(head(features), labels)

        self.head.requires_grad_(True)
        try:
            with (
                torch.enable_grad(),
                adapted_model(
                    self.head,
                    self.inner_optimizer,
                    support_loss,
                    steps=max(steps),
                    meta_grad=False,
                    snapshots=steps,
                ) as adaptation,
            ):
                fmodel = adaptation.model
        finally:
            self.head.requires_grad_(False)

        def predictor(weights: list[Tensor]) -> Predictor:
            def predict(x: Tensor) -> Tensor:
                with torch.no_grad():
                    return fmodel(self.backbone(x), params=weights)

            return predict

        return {s: predictor(adaptation.snapshots[s]) for s in steps}

    def adapt(self, task: SupervisedTask, steps: int | None = None) -> Predictor:
        steps = self.eval_steps if steps is None else steps
        return self.adapt_steps(task, [steps])[steps]
