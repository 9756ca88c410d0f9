"""Reinforcement-learning task distributions: any Gymnasium environment with a task protocol.

The protocol (the one learn2learn and garage use) is two methods on the environment:

- ``sample_tasks(n, split="train") -> list[dict]``: ``n`` JSON-serializable task dicts drawn from the
  environment's own ``np_random`` (the ``split`` argument is optional);
- ``set_task(task)``: switch to ``task``, which stays set across ``reset()``.

An environment is named by any of:

- a registered id: ``"metagym/Navigation2D-v0"``, or Gymnasium's module-prefixed form
  ``"metagym_envs:metagym/Navigation2D-v0"`` (imports the module first);
- an importable ``"module:Class"`` or ``"module:factory"`` string, as Gymnasium entry points are
  written, so an environment needs no registration to be tried;
- a class or a factory (any callable returning a ``gymnasium.Env``).

:class:`GymTaskDistribution` turns such an environment into a metagym task distribution with the same
split and seed semantics as the supervised domains: ``sample(n, split, generator)`` gives the same
:class:`RLTask` list for the same generator state on every machine.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import TimeLimit

from metagym.tasks.base import TaskDistribution

if TYPE_CHECKING:
    from metagym.rl.sampler import EpisodeSampler, Policy

__all__ = [
    "EnvLike",
    "GymTaskDistribution",
    "OODSampler",
    "ProtocolError",
    "RLTask",
    "check_task_protocol",
    "env_name",
    "episode_limit",
    "make_env_fn",
    "task_env",
]

#: How an environment is named: an id or ``"module:Class"`` string, a class, or a factory.
EnvLike = str | Callable[..., gym.Env]
#: A user-supplied task sampler for an extra split: ``fn(n, rng) -> list of n task dicts``.
OODSampler = Callable[[int, np.random.Generator], Sequence[Mapping[str, Any]]]

#: Methods an environment needs to be a task distribution.
PROTOCOL_METHODS = ("sample_tasks", "set_task")
_ATTRIBUTE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_SEED_HIGH = 2**31 - 1


class ProtocolError(TypeError):
    """An environment does not follow the task protocol (a method is missing or misbehaves)."""


@dataclass(frozen=True)
class RLTask:
    """One reinforcement-learning task: the environment's task parameters and two seeds.

    Attributes:
        params: the task dict passed to the environment's ``set_task`` (JSON-serializable).
        split: the split it was drawn from.
        seed: seeds the episodes a learner collects to adapt (its support data).
        eval_seed: seeds the episodes :meth:`GymTaskDistribution.score` runs (its query data).
    """

    params: dict[str, Any]
    split: str = "train"
    seed: int = 0
    eval_seed: int = 1
    #: The environment's name, for messages and results.
    env: str = field(default="", compare=False)

    def to(self, device: torch.device | str) -> RLTask:
        """Tasks hold no tensors: the same task (the evaluation routine moves tasks to devices)."""
        return self


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


def _import_attribute(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    try:
        module = _import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"cannot import module {module_name!r} named in the environment {spec!r}: {error}"
        ) from error
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(
                f"module {module_name!r} has no attribute {attribute!r} "
                f"(named in the environment {spec!r})"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec!r} names {target!r}, which is neither a class nor a factory")
    return target


def _is_entry_point(spec: str) -> bool:
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
        if isinstance(env, str) and not _is_entry_point(env):
            if limit is not None:
                kwargs = {**kwargs, "max_episode_steps": limit}
            made = gym.make(env, **kwargs)
        else:
            target = _import_attribute(env) if isinstance(env, str) else env
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
        if _is_entry_point(env):
            _import_attribute(env)  # fail now, with a clear message
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
            "set_task(task); see the README section 'Plug in your own environment'"
        )


def _accepts_split(method: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "split" or p.kind is p.VAR_KEYWORD for p in parameters)


def _check_tasks(tasks: Any, n: int, source: str) -> list[dict[str, Any]]:
    if not isinstance(tasks, Sequence) or isinstance(tasks, (str, bytes)) or len(tasks) != n:
        raise ProtocolError(f"{source} must return a list of {n} task dicts, got {tasks!r:.200}")
    checked = []
    for task in tasks:
        if not isinstance(task, Mapping):
            raise ProtocolError(f"{source} returned a task that is not a dict: {task!r:.200}")
        try:
            checked.append(json.loads(json.dumps(_plain(task))))
        except (TypeError, ValueError) as error:
            raise ProtocolError(
                f"{source} returned a task that is not JSON-serializable: {task!r:.200} ({error})"
            ) from error
    return checked


def _plain(value: Any) -> Any:
    """Numpy arrays and scalars as plain lists and numbers."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class GymTaskDistribution(TaskDistribution):
    """The tasks of a Gymnasium environment that follows the task protocol.

    Splits: ``train``, ``val`` and ``test``, plus the environment's ``ood-*`` splits (its
    ``task_splits``) and those given in ``ood``. ``val`` and ``test`` use the environment's own split
    of that name when it declares one, else the ``train`` distribution (from separate seed
    streams, as in the supervised domains); an environment whose ``sample_tasks`` takes no
    ``split`` argument draws every non-OOD split from ``sample_tasks(n)``.

    A task is an :class:`RLTask`; ``score(policy, task)`` is the average undiscounted return of
    ``eval_episodes`` episodes of ``policy`` on the task, seeded by ``task.eval_seed``.

    Args:
        env: the environment (see :func:`make_env_fn`).
        env_kwargs: its constructor arguments.
        max_episode_steps: a step limit overriding the registered one; an environment without any
            limit must be given one (or terminate by itself, e.g. a bandit).
        ood: extra splits ``{"ood-name": fn}``, each ``fn(n, rng: numpy.random.Generator) -> list of
            n task dicts``; the names start with ``ood-``.
        eval_episodes: episodes per task that :meth:`score` averages.
        max_envs: cap on the parallel sub-environments of the sampler (None: one per episode).
        device: where the policy's observations go.
    """

    domain = "rl"
    metric = "return"
    lower_is_better = False

    def __init__(
        self,
        env: EnvLike,
        *,
        env_kwargs: Mapping[str, Any] | None = None,
        max_episode_steps: int | None = None,
        ood: Mapping[str, OODSampler] | None = None,
        eval_episodes: int = 10,
        max_envs: int | None = None,
        device: torch.device | str = "cpu",
    ):
        if (
            isinstance(eval_episodes, bool)
            or not isinstance(eval_episodes, int)
            or eval_episodes < 1
        ):
            raise ValueError(f"eval_episodes must be an int >= 1, got {eval_episodes!r}")
        self.env_spec = env
        self.name = env_name(env)
        self.env_kwargs = dict(env_kwargs or {})
        self.max_episode_steps = max_episode_steps
        self.eval_episodes = eval_episodes
        self.max_envs = max_envs
        self.device = torch.device(device)
        self.env_fn = make_env_fn(env, self.env_kwargs, max_episode_steps)
        self._env = self.env_fn()  # draws tasks; also gives the spaces
        check_task_protocol(self._env, self.name)
        self._inner = task_env(self._env)
        self._takes_split = _accepts_split(self._inner.sample_tasks)
        declared = tuple(getattr(self._inner, "task_splits", ("train",)) or ("train",))
        self.env_splits = declared if self._takes_split else ("train",)
        self._ood: dict[str, OODSampler] = {}
        for split, sampler in dict(ood or {}).items():
            if not isinstance(split, str) or not split.startswith("ood-"):
                raise ValueError(f"OOD split names start with 'ood-', got {split!r}")
            if not callable(sampler):
                raise TypeError(f"the sampler of split {split!r} must be callable, got {sampler!r}")
            self._ood[split] = sampler
        env_ood = tuple(s for s in self.env_splits if s.startswith("ood-") and s not in self._ood)
        self.splits = ("train", "val", "test", *env_ood, *self._ood)
        self._sampler: EpisodeSampler | None = None
        self._check_behaviour()

    # -- spaces ----------------------------------------------------------------------------------
    @property
    def observation_space(self) -> gym.Space:
        return self._env.observation_space

    @property
    def action_space(self) -> gym.Space:
        return self._env.action_space

    # -- sampling --------------------------------------------------------------------------------
    def _env_split(self, split: str) -> str | None:
        """The environment's split that serves ``split`` (None: a user OOD sampler)."""
        if split in self._ood:
            return None
        if split in self.env_splits:
            return split
        return "train"

    def _draw_params(self, n: int, split: str, seed: int) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)
        if split in self._ood:
            return _check_tasks(self._ood[split](n, rng), n, f"the sampler of split {split!r}")
        self._inner.np_random = rng
        env_split = self._env_split(split)
        if self._takes_split:
            tasks = self._inner.sample_tasks(n, split=env_split)
        else:
            tasks = self._inner.sample_tasks(n)
        return _check_tasks(tasks, n, f"{self.name}.sample_tasks")

    def _sample(self, n: int, split: str, generator: torch.Generator) -> list[RLTask]:
        seeds = torch.randint(0, _SEED_HIGH, (n + 1, 2), generator=generator).tolist()
        params = self._draw_params(n, split, seeds[0][0])
        return [
            RLTask(p, split=split, seed=s, eval_seed=e, env=self.name)
            for p, (s, e) in zip(params, seeds[1:], strict=True)
        ]

    def _check_behaviour(self) -> None:
        """Draw with one seed twice and set the task: fail now, not in the middle of a run."""
        first = self._draw_params(2, "train", 12345)
        if first != self._draw_params(2, "train", 12345):
            raise ProtocolError(
                f"{self.name}.sample_tasks gave different tasks for the same seed: it must draw "
                "from self.np_random (the environment's own generator), not from global state"
            )
        for split in self._ood:  # user samplers: the right count, JSON-serializable
            self._draw_params(1, split, 0)
        self._inner.set_task(first[0])

    # -- episodes --------------------------------------------------------------------------------
    @property
    def sampler(self) -> EpisodeSampler:
        """The (lazily built) episode sampler over this environment, shared with learners."""
        if self._sampler is None:
            from metagym.rl.sampler import EpisodeSampler

            self._sampler = EpisodeSampler(self.env_fn, max_envs=self.max_envs, device=self.device)
        return self._sampler

    def score(self, predictor: Policy, task: RLTask) -> float:
        """Average undiscounted return of ``eval_episodes`` episodes of ``predictor`` (a policy:
        observations ``(N, *obs_shape)`` -> actions or an action distribution) on ``task``."""
        episodes = self.sampler.sample(predictor, [task], self.eval_episodes, seed=task.eval_seed)
        return float(episodes.returns().mean())

    def diverged(self, score: float) -> bool:
        return not math.isfinite(score)

    def row_fields(self) -> dict[str, Any]:
        return {"env": self.name}

    def describe(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "env": self.name,
            "env_kwargs": self.env_kwargs,
            "max_episode_steps": self.max_episode_steps,
            "eval_episodes": self.eval_episodes,
            "splits": list(self.splits),
        }

    def close(self) -> None:
        """Close the environments (the distribution's and its sampler's)."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        self._env.close()
