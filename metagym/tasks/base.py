"""The task interface every domain implements.

A *task distribution* has named splits (``train``, ``val``, ``test`` and ``ood-*``) and samples
tasks from an explicit ``torch.Generator``: the same seed gives the same tasks on every machine.
A *supervised task* carries its support set and its query set as named fields.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from metagym.nets.layout import cpu_layout


@dataclass(frozen=True)
class Examples:
    """A set of labelled examples.

    Attributes:
        x: inputs, shape ``(n, *input_shape)``.
        y: targets, shape ``(n, *target_shape)`` (regression) or ``(n,)`` int64 labels.
    """

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str) -> Examples:
        """The examples on ``device``; image inputs ``(n, C, H, W)`` on the CPU are laid out
        channels-last (the same values; torch's conv-net kernels are faster there,
        :mod:`metagym.nets.layout`)."""
        return Examples(cpu_layout(self.x.to(device)), self.y.to(device))


@dataclass(frozen=True)
class SupervisedTask:
    """One few-shot task: adapt on ``support``, score on ``query``.

    Attributes:
        support: the K examples a learner adapts on.
        query: held-out examples of the same task, never shown during adaptation.
        params: the task's generating parameters (JSON-serializable), e.g. amplitude and phase.
            Only oracles may read them.
    """

    support: Examples
    query: Examples
    params: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> SupervisedTask:
        return SupervisedTask(self.support.to(device), self.query.to(device), self.params)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (CPU draws are identical on every machine)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return torch.Generator().manual_seed(seed)


class UnknownSplitError(ValueError):
    """Raised for a split name that the distribution does not have."""


class TaskDistribution(ABC):
    """A distribution over tasks with named splits.

    Subclasses set ``domain``, ``splits`` and ``metric`` and implement :meth:`_sample`.
    Supervised distributions also declare the shapes the learners' nets are built for:
    ``input_shape`` (one input, e.g. ``(1,)`` or ``(1, 28, 28)``) and ``output_size`` (target
    features for regression, ways for classification); ``param_keys`` names the entries of
    ``task.params`` an oracle may read.
    """

    domain: str = ""
    splits: tuple[str, ...] = ()
    metric: str = ""
    #: True when a lower metric is better (MSE); False for accuracy and return.
    lower_is_better: bool = True
    #: Shape of one input, ``x.shape[1:]`` (supervised distributions).
    input_shape: tuple[int, ...] | None = None
    #: Features of a target (regression) or number of classes per task (classification).
    output_size: int | None = None
    #: Keys of ``task.params`` an oracle learner may be told.
    param_keys: tuple[str, ...] = ()

    def check_split(self, split: str) -> str:
        if split not in self.splits:
            raise UnknownSplitError(
                f"unknown split {split!r} for {type(self).__name__}; accepted: {', '.join(self.splits)}"
            )
        return split

    def sample(self, n: int, split: str = "train", generator: torch.Generator | None = None):
        """Draw ``n`` tasks from ``split`` using ``generator`` (required: no global random state)."""
        self.check_split(split)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"number of tasks must be a positive int, got {n!r}")
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                "sample() needs an explicit torch.Generator (see metagym.tasks.make_generator); "
                f"got {generator!r}"
            )
        return self._sample(n, split, generator)

    @abstractmethod
    def _sample(self, n: int, split: str, generator: torch.Generator) -> list:
        """Draw ``n`` tasks of ``split``; arguments are already validated."""

    @abstractmethod
    def score(self, predictor: Callable[[Tensor], Tensor], task) -> float:
        """The task's metric for an adapted predictor (lower is better when ``lower_is_better``)."""

    def diverged(self, score: float) -> bool:
        """True when a task's score means adaptation blew up (by default: not finite)."""
        return not math.isfinite(score)

    def row_fields(self) -> dict[str, Any]:
        """Fields this domain adds to every results row (e.g. ``shots``, ``ways``)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """JSON-serializable settings, written into results files."""
        return {"domain": self.domain}


def stack_tasks(tasks: Sequence[SupervisedTask]) -> tuple[Examples, Examples]:
    """Stack equally sized tasks: support ``(T, K, ...)`` and query ``(T, Q, ...)``."""
    support = Examples(
        torch.stack([t.support.x for t in tasks]), torch.stack([t.support.y for t in tasks])
    )
    query = Examples(
        torch.stack([t.query.x for t in tasks]), torch.stack([t.query.y for t in tasks])
    )
    return support, query
