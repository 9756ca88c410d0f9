"""The task protocol shared by every metagym environment, and helpers to validate tasks.

A *task environment* is a plain Gymnasium environment with

- ``task_splits``: a class attribute naming its splits (``train``, ``test`` and ``ood-*``);
- ``sample_tasks(n, split="train") -> list[dict]``: ``n`` tasks drawn from the environment's own
  ``np_random`` (seed it with ``env.reset(seed=...)``);
- ``set_task(task)``: validates the task (a missing key, a value of the wrong type or outside the
  physically valid range raises ``ValueError``/``TypeError`` here, never deep inside ``step``) and
  switches to it; the task stays set across ``reset()`` calls;
- ``reset(options={"task": task})``: the same as ``set_task(task)`` followed by ``reset()``;
- ``info["task"]`` (from ``reset`` and ``step``): the current task as a fresh, JSON-serializable dict.

The observation and action spaces do not depend on the task, so one policy serves every task.
This module imports only numpy and gymnasium, never metagym.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "TaskEnvMixin",
    "ParameterizedEnvMixin",
    "check_number",
    "check_choice",
    "check_array",
    "json_copy",
]


def json_copy(value: Any) -> Any:
    """A fresh copy of a JSON-like value (mappings, lists, numbers, strings): numpy arrays and
    scalars made plain, tuples made lists."""
    if isinstance(value, Mapping):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_copy(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _owner(env: Any) -> str:
    return type(env).__name__


def _missing(env: Any, task: Mapping[str, Any], key: str) -> ValueError:
    keys = ", ".join(repr(k) for k in getattr(env, "task_keys", ()))
    return ValueError(
        f"{_owner(env)}: the task {dict(task)!r:.120} has no key {key!r} (a task has the keys {keys})"
    )


def check_number(
    env: Any,
    task: Mapping[str, Any],
    key: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    integer: bool = False,
) -> float:
    """``task[key]`` as a float (or int when ``integer``), checked to lie in [low, high].

    ``low_open`` excludes ``low`` itself (e.g. a mass must be > 0). Raises ``ValueError`` for a
    missing key or an out-of-range / non-finite value, ``TypeError`` for a non-number (bools count as
    non-numbers).
    """
    if key not in task:
        raise _missing(env, task, key)
    value = task[key]
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        raise TypeError(
            f"{_owner(env)}: task[{key!r}] must be {kind}, got {type(value).__name__} {value!r}"
        )
    value = int(value) if integer else float(value)
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(
            f"{_owner(env)}: task[{key!r}] = {value!r} is outside the valid range "
            f"{bracket}{low}, {high}]"
        )
    return value


def check_choice(env: Any, task: Mapping[str, Any], key: str, choices: Sequence[Any]) -> Any:
    """``task[key]``, which must equal one of ``choices`` (numbers compared by value)."""
    if key not in task:
        raise _missing(env, task, key)
    value = task[key]
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"{_owner(env)}: task[{key!r}] must be a number, got {type(value).__name__} {value!r}"
        )
    for choice in choices:
        if value == choice:
            return choice
    raise ValueError(f"{_owner(env)}: task[{key!r}] = {value!r} is not one of {list(choices)}")


def check_array(
    env: Any,
    task: Mapping[str, Any],
    key: str,
    shape: tuple[int, ...],
    low: float = -math.inf,
    high: float = math.inf,
) -> np.ndarray:
    """``task[key]`` (a nested list or array of numbers) as a float64 array of exactly ``shape``."""
    if key not in task:
        raise _missing(env, task, key)
    value = task[key]
    if isinstance(value, (str, bytes, Mapping)) or np.isscalar(value):
        raise TypeError(
            f"{_owner(env)}: task[{key!r}] must be a list of numbers of shape {shape}, "
            f"got {type(value).__name__} {value!r}"
        )
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise ValueError(
            f"{_owner(env)}: task[{key!r}] must have shape {shape}, got a ragged list"
        ) from error
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise TypeError(
            f"{_owner(env)}: task[{key!r}] must contain numbers, got dtype {array.dtype}"
        )
    if array.shape != tuple(shape):
        raise ValueError(
            f"{_owner(env)}: task[{key!r}] must have shape {tuple(shape)}, got {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)) or np.any(array < low) or np.any(array > high):
        raise ValueError(
            f"{_owner(env)}: task[{key!r}] has values outside the valid range [{low}, {high}]"
        )
    return array


class TaskEnvMixin:
    """The task protocol; mix it in *before* the Gymnasium environment class.

    Subclasses set ``task_splits`` and ``task_keys`` and implement

    - ``_sample_task(split, rng) -> dict``: one task of ``split`` drawn from ``rng``;
    - ``_validate_task(task) -> dict``: the normalized task (JSON types) or a clear error;
    - ``_apply_task(task)``: make the (validated) task take effect.

    They call ``self._init_task(default_task)`` at the end of ``__init__`` and, in ``reset``,
    ``self._reset_task_option(options)`` before resetting and ``self._with_task(info)`` after
    (:class:`ParameterizedEnvMixin` does both for subclasses of an existing environment).
    """

    #: Names of the splits ``sample_tasks`` accepts: ``train``, ``test`` and ``ood-*``.
    task_splits: ClassVar[tuple[str, ...]] = ("train", "test")
    #: Keys of a task dict.
    task_keys: ClassVar[tuple[str, ...]] = ()

    _task: dict[str, Any]

    # -- the protocol ------------------------------------------------------------------------
    def sample_tasks(self, n: int, split: str = "train") -> list[dict[str, Any]]:
        """``n`` tasks of ``split`` drawn from this environment's ``np_random``.

        Seed the draw with ``env.reset(seed=...)`` (or by assigning ``env.np_random``).
        """
        if split not in self.task_splits:
            raise ValueError(
                f"{_owner(self)}: unknown split {split!r}; accepted: {', '.join(self.task_splits)}"
            )
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{_owner(self)}: n must be an int >= 0, got {n!r}")
        rng = self.np_random  # type: ignore[attr-defined]
        return [self._validate_task(self._sample_task(split, rng)) for _ in range(int(n))]

    def set_task(self, task: Mapping[str, Any]) -> None:
        """Validate ``task`` and switch to it; it stays set across ``reset()``."""
        self._task = self.validate_task(task)
        self._apply_task(self._task)

    def get_task(self) -> dict[str, Any]:
        """The current task, as a fresh JSON-serializable dict."""
        # Fast path for the common flat task (numbers and lists of numbers); it runs every step.
        fresh = {}
        for key, value in self._task.items():
            if type(value) is list:
                value = (
                    value.copy() if not value or type(value[0]) is not list else json_copy(value)
                )
            fresh[key] = value
        return fresh

    def validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """The normalized form of ``task``, or ``TypeError``/``ValueError`` saying what is wrong."""
        if not isinstance(task, Mapping):
            raise TypeError(
                f"{_owner(self)}: a task must be a dict with keys {list(self.task_keys)}, "
                f"got {type(task).__name__} {task!r}"
            )
        unknown = sorted(set(task) - set(self.task_keys), key=str)
        if unknown:
            raise ValueError(
                f"{_owner(self)}: unexpected task key(s) {unknown}; a task has the keys "
                f"{list(self.task_keys)}"
            )
        return self._validate_task(task)

    # -- for subclasses ----------------------------------------------------------------------
    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _apply_task(self, task: dict[str, Any]) -> None:
        """Make ``task`` take effect (default: nothing beyond storing it)."""

    def _init_task(self, task: Mapping[str, Any]) -> None:
        self.set_task(task)

    def _reset_task_option(self, options: Mapping[str, Any] | None) -> None:
        if options is not None and "task" in options:
            self.set_task(options["task"])

    def _with_task(self, info: dict[str, Any]) -> dict[str, Any]:
        info["task"] = self.get_task()
        return info


class ParameterizedEnvMixin(TaskEnvMixin):
    """:class:`TaskEnvMixin` for a parameterized subclass of an existing Gymnasium environment:
    ``reset`` and ``step`` are the base environment's, with ``options={"task": ...}`` handled
    and ``info["task"]`` added (rewards as plain floats). Mix it in before the base class."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_task_option(options)
        observation, info = super().reset(seed=seed, options=options)  # type: ignore[misc]
        return observation, self._with_task(info)

    def step(self, action):
        observation, reward, terminated, truncated, info = super().step(action)  # type: ignore[misc]
        return observation, float(reward), terminated, truncated, self._with_task(info)
