"""The learner interface: meta-train on batches of tasks, adapt to one task, save and load.

Every learner is an ``nn.Module`` that owns its networks and its meta-optimizer, so one training
loop (:mod:`metagym.train`) and one evaluation routine (:mod:`metagym.evaluate`) serve them all.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: An adapted model: inputs ``(n, *input_shape)`` -> predictions ``(n, *output_shape)``.
Predictor = Callable[[Tensor], Tensor]


class Learner(nn.Module, ABC):
    """Base class of all learners.

    Subclasses set ``name``, implement :meth:`meta_train_step` and :meth:`adapt`, and create
    ``self.optimizer`` when they have weights to meta-train. The class attributes below are
    part of the interface the runner and the evaluation read:

    - ``uses_steps``: :meth:`adapt` takes gradient steps, so the number of steps applies;
    - ``trainable``: there is something to meta-train (False: the runner skips training);
    - ``scored_on``: for RL learners, ``"episode"`` or ``"trial"`` (what a score is the return
      of); None for supervised learners;
    - :meth:`env_steps`: environment steps of experience on a task behind a score.
    """

    name: str = ""
    uses_steps: bool = False
    trainable: bool = True
    scored_on: str | None = None
    optimizer: torch.optim.Optimizer | None = None
    #: Config entries set after training (e.g. a tuned step size): restored by :meth:`load`.
    tuned: tuple[str, ...] = ()

    def env_steps(self, steps: int | None) -> int | None:
        """Environment steps on the task before the scored episodes, after ``steps``
        (RL learners); None where it does not apply (supervised learners)."""
        return None

    @property
    def device(self) -> torch.device:
        """The device of the learner's weights (CPU for a learner without weights)."""
        first = next(self.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @abstractmethod
    def meta_train_step(self, tasks: Sequence[Any]) -> dict[str, float]:
        """One meta-update on a batch of tasks; returns metrics named ``group/name``."""

    @abstractmethod
    def adapt(self, task: Any, steps: int | None = None) -> Predictor:
        """Adapt to ``task`` (its support set only) and return a predictor for its queries.

        ``steps`` is the number of gradient steps for learners with ``uses_steps``; None means
        the learner's default for evaluation. Learners without gradient steps ignore it.
        """

    def adapt_steps(self, task: Any, steps: Iterable[int]) -> dict[int, Predictor]:
        """Predictors after each number of ``steps``; gradient learners override this to share work."""
        return {s: self.adapt(task, s) for s in steps}

    #: Tasks :func:`metagym.evaluate.evaluate` hands to :meth:`adapt_many` at once.
    eval_batch: int = 100

    def adapt_many(self, tasks: Sequence[Any], steps: Sequence[int]) -> list[dict[Any, Predictor]]:
        """Predictors for each of ``tasks``: :meth:`adapt_steps` (learners with ``uses_steps``)
        or ``{None: adapt(task)}``, task by task. Learners that can adapt many tasks in one call
        (MAML's vmap backend) override it; the predictions must equal task-by-task ones."""
        if self.uses_steps:
            return [self.adapt_steps(task, steps) for task in tasks]
        return [{None: self.adapt(task)} for task in tasks]

    def after_training(self, distribution: Any, generator: torch.Generator) -> dict[str, float]:
        """Hook run once after meta-training (e.g. to tune a step size on ``val``)."""
        return {}

    def config(self) -> dict[str, Any]:
        """JSON-serializable hyperparameters, written into results and checkpoints."""
        return {"name": self.name}

    # -- persistence ---------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to resume meta-training: weights and meta-optimizer state."""
        optimizer = self.optimizer.state_dict() if self.optimizer is not None else {}
        return {"model": self.state_dict(), "optimizer": optimizer}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    def save(self, path: str | Path) -> None:
        """Write weights, optimizer state and config atomically to ``path``."""
        from metagym.checkpoint import save_atomic

        save_atomic({**self.checkpoint_state(), "config": json.dumps(self.config())}, path)

    def load(self, path: str | Path) -> None:
        """Load what :meth:`save` wrote; the learner must have been built with the same config."""
        from metagym.checkpoint import load_checkpoint

        state = load_checkpoint(path)
        saved = json.loads(state["config"])
        if saved.get("name") != self.name:
            raise ValueError(f"{path} holds a {saved.get('name')!r} learner, not {self.name!r}")
        mine = self.config()
        changed = [
            f"{key}: {saved.get(key)!r} (saved) vs {mine.get(key)!r}"
            for key in sorted(set(saved) | set(mine))
            if key not in self.tuned and saved.get(key) != mine.get(key)
        ]
        if changed:
            raise ValueError(
                f"{path} holds a {self.name} built with other settings ({'; '.join(changed)}); "
                "build the learner with the saved settings"
            )
        self.load_checkpoint_state(state)
        self.restore_tuned(saved)

    def restore_tuned(self, saved: dict[str, Any]) -> None:
        """Take the values of ``tuned`` back from a saved config (see :meth:`load`)."""


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is a positive (or zero) number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
