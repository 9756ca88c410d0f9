"""Users' own task distributions, named ``module:Class`` as environments are.

A supervised distribution for ``metagym run regression --tasks my_tasks:MyTasks`` (or
``classification``) is a :class:`metagym.tasks.TaskDistribution` subclass that sets ``domain``,
``splits`` (with ``train``; ``val`` for the baselines' step-size tuning; ``test`` and any
``ood-*``), ``metric``, ``lower_is_better``, ``input_shape`` and ``output_size``, and implements
``_sample`` and ``score`` (see docs/environments.md, "Your own supervised task distribution").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from metagym.tasks.base import TaskDistribution
from metagym.tasks.environment import _import_module

_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def import_object(spec: str, what: str) -> Any:
    """The object named ``"module:attribute"``; a ValueError naming ``what`` otherwise."""
    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise ValueError(f"name {what} as 'module:Class', got {spec!r}")
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = _import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"cannot import module {module_name!r} of {what} {spec!r}: {error}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r} ({what})")
        target = getattr(target, part)
    return target


def load_task_distribution(spec: str, kwargs: Mapping[str, Any] | None = None) -> TaskDistribution:
    """Build the distribution class (or factory) named ``spec`` with ``kwargs``."""
    factory = import_object(spec, "the task distribution")
    if not callable(factory):
        raise ValueError(f"{spec!r} is neither a class nor a factory")
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
