"""Reinforcement-learning task distributions: any Gymnasium environment with a task protocol.

The protocol (``sample_tasks(n, split="train") -> list[dict]`` and ``set_task(task)``) and the ways
to name an environment (a registered id, a ``"module:Class"`` string, a class or a factory) are
described in :mod:`metagym.tasks.environment`, which also makes and checks the environments.

:class:`GymTaskDistribution` turns such an environment into a metagym task distribution with the same
split and seed semantics as the supervised domains: ``sample(n, split, generator)`` gives the same
:class:`RLTask` list for the same generator state on every machine.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from metagym_envs.core import json_copy

from metagym.tasks.base import TaskDistribution
from metagym.tasks.environment import (
    EnvLike,
    ProtocolError,
    check_task_protocol,
    env_name,
    episode_limit,
    make_env_fn,
    task_env,
)

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

#: A user-supplied task sampler for an extra split: ``fn(n, rng) -> list of n task dicts``.
OODSampler = Callable[[int, np.random.Generator], Sequence[Mapping[str, Any]]]

_SEED_HIGH = 2**31 - 1


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
            checked.append(json.loads(json.dumps(json_copy(task), allow_nan=False)))
        except (TypeError, ValueError) as error:
            raise ProtocolError(
                f"{source} returned a task that is not JSON-serializable: {task!r:.200} ({error})"
            ) from error
    return checked


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
