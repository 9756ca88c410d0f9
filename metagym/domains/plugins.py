"""Users' own task distributions, named ``module:Class`` as environments are.

A supervised distribution for ``metagym run regression --tasks my_tasks:MyTasks`` (or
``classification``) is a :class:`metagym.tasks.TaskDistribution` subclass that sets ``domain``,
``splits`` (with ``train``; ``val`` for the baselines' step-size tuning; ``test`` and any
``ood-*``), ``metric``, ``lower_is_better``, ``input_shape`` and ``output_size``, and implements
``_sample`` and ``score`` (see docs/environments.md, "Your own supervised task distribution").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metagym.tasks.base import TaskDistribution
from metagym.tasks.environment import import_object, is_entry_point


def load_task_distribution(spec: str, kwargs: Mapping[str, Any] | None = None) -> TaskDistribution:
    """Build the distribution class (or factory) named ``spec`` with ``kwargs``."""
    if not isinstance(spec, str) or not is_entry_point(spec):
        raise ValueError(f"name the task distribution as 'module:Class', got {spec!r}")
    factory = import_object(spec, "the task distribution")
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"task arguments must be a JSON object, got {kwargs!r}")
    distribution = factory(**dict(kwargs or {}))
    if not isinstance(distribution, TaskDistribution):
        raise ValueError(
            f"{spec} made a {type(distribution).__name__}, not a metagym.tasks.TaskDistribution"
        )
    if "train" not in distribution.splits:
        raise ValueError(f"{spec} has no 'train' split (splits: {list(distribution.splits)})")
    return distribution
