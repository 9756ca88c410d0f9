"""Naming, making and checking task-protocol environments.

The task protocol (the one learn2learn and garage use) is two methods on the environment:

- ``sample_tasks(n, split="train") -> list[dict]``: ``n`` JSON-serializable task dicts drawn from the
  environment's own ``np_random`` (the ``split`` argument is optional);
- ``set_task(task)``: switch to ``task``, which stays set across ``reset()``.

An environment is named by any of:

- a registered id: ``"metagym/Navigation2D-v0"``, or Gymnasium's module-prefixed form
  ``"metagym_envs:metagym/Navigation2D-v0"`` (imports the module first);
- an importable ``"module:Class"`` or ``"module:factory"`` string, as Gymnasium entry points are
  written, so an environment needs no registration to be tried;
- a class or a factory (any callable returning a ``gymnasium.Env``).

Both the task distributions (:mod:`metagym.tasks.gym`) and the episode sampler
(:mod:`metagym.rl.sampler`) build on this module.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import TimeLimit

__all__ = [
    "PROTOCOL_METHODS",
    "EnvLike",
    "ProtocolError",
    "check_task_protocol",
    "env_name",
    "episode_limit",
    "make_env_fn",
    "task_env",
]

#: How an environment is named: an id or ``"module:Class"`` string, a class, or a factory.
EnvLike = str | Callable[..., gym.Env]

#: Methods an environment needs to be a task distribution.
PROTOCOL_METHODS = ("sample_tasks", "set_task")
_ATTRIBUTE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class ProtocolError(TypeError):
    """An environment does not follow the task protocol (a method is missing or misbehaves)."""


# -- naming and making environments -------------------------------------------------------------
def _import_module(module_name: str) -> Any:
    """Import ``module_name``; a module not found on the path is looked for in the working
    directory too (appended to ``sys.path``, never shadowing), as ``python -m`` would find it."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        top = module_name.partition(".")[0]
        cwd = os.getcwd()
        if (
            error.name != top
            or cwd in sys.path
            or not (Path(cwd, f"{top}.py").is_file() or Path(cwd, top, "__init__.py").is_file())
        ):
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_name)


def import_object(spec: str, what: str = "the environment") -> Any:
    """The callable named ``"module:attribute"`` (environments, users' task distributions); a
    ValueError naming ``what`` when it cannot be imported or is not callable."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = _import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"cannot import module {module_name!r} named in {what} {spec!r}: {error}"
        ) from error
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(
                f"module {module_name!r} has no attribute {attribute!r} (named in {what} {spec!r})"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec!r} names {target!r}, which is neither a class nor a factory")
    return target


def is_entry_point(spec: str) -> bool:
    """True for ``"module:attribute"``; False for ids, also Gymnasium's ``"module:namespace/Id-v0"``."""
    module, sep, attribute = spec.partition(":")
    return (
        bool(sep) and bool(_ATTRIBUTE_PATH.match(module)) and bool(_ATTRIBUTE_PATH.match(attribute))
    )


def _check_registered(env_id: str) -> None:
    if ":" in env_id:  # gymnasium.make imports the module, then looks the id up
        return
    if env_id.startswith("metagym/"):
        import metagym_envs  # noqa: F401  (registers the metagym/* ids)
    if env_id not in gym.registry:
        close = sorted(i for i in gym.registry if env_id.lower().split("/")[-1][:5] in i.lower())
        hint = f"; similar registered ids: {', '.join(close[:8])}" if close else ""
        raise ValueError(
            f"no environment registered as {env_id!r}{hint}. Name an environment by a registered "
            "id, 'module:Class' or 'module:factory', a class, or a factory"
        )


def env_name(env: EnvLike) -> str:
    """A short readable name for ``env`` (its id, entry point or qualified name)."""
    if isinstance(env, str):
        return env
    if isinstance(env, _EnvFactory):
        return env_name(env.env)
    module = getattr(env, "__module__", "") or ""
    qualname = getattr(env, "__qualname__", None) or type(env).__name__
    return f"{module}:{qualname}" if module else qualname


def episode_limit(env: gym.Env) -> int | None:
    """The step limit of ``env``'s episodes: its ``TimeLimit`` wrapper's, else its
    ``spec.max_episode_steps``, else a ``max_episode_steps`` attribute of the environment; None if none.
    """
    current: Any = env
    while isinstance(current, gym.Wrapper):
        if isinstance(current, TimeLimit):
            return int(current._max_episode_steps)
        current = current.env
    spec = getattr(env, "spec", None)
    if spec is not None and spec.max_episode_steps is not None:
        return int(spec.max_episode_steps)
    limit = getattr(env.unwrapped, "max_episode_steps", None)
    return int(limit) if isinstance(limit, int) and not isinstance(limit, bool) else None


class _EnvFactory:
    """A picklable zero-argument factory (so that it also serves asynchronous vector envs)."""

    def __init__(self, env: EnvLike, kwargs: Mapping[str, Any], max_episode_steps: int | None):
        self.env, self.kwargs, self.max_episode_steps = env, dict(kwargs), max_episode_steps

    def __call__(self) -> gym.Env:
        env, kwargs, limit = self.env, self.kwargs, self.max_episode_steps
        if isinstance(env, str) and not is_entry_point(env):
            if limit is not None:
                kwargs = {**kwargs, "max_episode_steps": limit}
            made = gym.make(env, **kwargs)
        else:
            target = import_object(env) if isinstance(env, str) else env
            made = target(**kwargs)
            if not isinstance(made, gym.Env):
                raise TypeError(
                    f"{env_name(env)} returned {type(made).__name__}, not a gymnasium.Env"
                )
            if limit is None:
                limit = getattr(made.unwrapped, "max_episode_steps", None)
            if limit is not None and not _has_time_limit(made):
                made = TimeLimit(made, max_episode_steps=int(limit))
        return made

    def __repr__(self) -> str:
        return f"make_env_fn({env_name(self.env)!r}, {self.kwargs!r}, {self.max_episode_steps!r})"


def _has_time_limit(env: gym.Env) -> bool:
    current: Any = env
    while isinstance(current, gym.Wrapper):
        if isinstance(current, TimeLimit):
            return True
        current = current.env
    return False


def make_env_fn(
    env: EnvLike,
    env_kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
) -> Callable[[], gym.Env]:
    """A zero-argument factory making ``env`` with ``env_kwargs``.

    Args:
        env: a registered id (``"metagym/Navigation2D-v0"``, ``"metagym_envs:metagym/..."``), an
            importable ``"module:Class"`` / ``"module:factory"``, a class, or a factory.
        env_kwargs: constructor arguments (``gymnasium.make(id, **env_kwargs)`` for ids).
        max_episode_steps: a step limit (``TimeLimit``) overriding the registered one. An
            unregistered class or factory gets its ``max_episode_steps`` attribute as the limit
            when it has one.

    Raises ``ValueError`` naming the problem for an unknown id or an unimportable name.
    """
    if max_episode_steps is not None and (
        isinstance(max_episode_steps, bool)
        or not isinstance(max_episode_steps, int)
        or max_episode_steps < 1
    ):
        raise ValueError(f"max_episode_steps must be an int >= 1, got {max_episode_steps!r}")
    if isinstance(env, str):
        if is_entry_point(env):
            import_object(env)  # fail now, with a clear message
        else:
            _check_registered(env)
    elif not callable(env):
        raise TypeError(
            "an environment is named by a registered id, a 'module:Class' string, a class or a "
            f"factory; got {type(env).__name__} {env!r}"
        )
    return _EnvFactory(env, env_kwargs or {}, max_episode_steps)


# -- the protocol --------------------------------------------------------------------------------
def task_env(env: gym.Env) -> Any:
    """The object that implements the protocol: the innermost environment (under any wrappers)."""
    return env.unwrapped


def check_task_protocol(env: gym.Env, name: str = "") -> None:
    """Raise :class:`ProtocolError` naming the missing methods unless ``env`` has the protocol."""
    inner = task_env(env)
    missing = [m for m in PROTOCOL_METHODS if not callable(getattr(inner, m, None))]
    if missing:
        raise ProtocolError(
            f"environment {name or type(inner).__name__} does not follow the task protocol: it "
            f"has no method {' and no method '.join(missing)}. A task environment needs "
            "sample_tasks(n, split='train') -> list[dict] (drawn from self.np_random) and "
            "set_task(task); see docs/environments.md, 'Plug in your own environment'"
        )
