"""Trials: several episodes of one task as one episode, and the task distribution scored on them.

:class:`RL2TrialWrapper` turns a trial of ``episodes_per_trial`` episodes of one task into one
Gymnasium episode whose observation is ``(observation, previous action, previous reward, done
flag)``; a recurrent policy whose memory is reset only at the start of a (wrapped) episode, i.e.
of a trial, then learns across the episodes of a trial (RL^2, :mod:`metagym.rl.rl2`).

:class:`TrialTaskDistribution` scores policies on whole trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from metagym.tasks.environment import EnvLike, env_name, make_env_fn, task_env
from metagym.tasks.gym import GymTaskDistribution

__all__ = [
    "RL2TrialWrapper",
    "TrialTaskDistribution",
    "trial_env_fn",
    "trial_episode_returns",
]


class RL2TrialWrapper(gym.Wrapper):
    """A trial of ``episodes_per_trial`` episodes of one task as one episode.

    Observation: a float32 vector ``[obs (flattened), previous action (one-hot for Discrete),
    previous reward, done flag]``; the done flag is 1 on the first observation of every episode
    after the first (the previous episode just ended), and the previous action and reward are
    those of the last step (zeros at the start of the trial). The inner environment is reset
    between episodes without changing its task. The trial terminates after the last episode.

    ``info`` carries ``episode_in_trial`` (index of the episode the step belongs to) and
    ``task``.

    Args:
        env: a task-protocol environment (with its time limit).
        episodes_per_trial: episodes per trial (>= 1).
        task_pool: tasks to draw from at each ``reset()`` (training: a new task each trial);
            None keeps the task set by ``set_task`` / ``reset(options={"task": ...})``.
    """

    def __init__(
        self,
        env: gym.Env,
        episodes_per_trial: int,
        task_pool: Sequence[Mapping[str, Any]] | None = None,
    ):
        super().__init__(env)
        if not isinstance(episodes_per_trial, int) or episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be an int >= 1, got {episodes_per_trial!r}")
        self.episodes_per_trial = episodes_per_trial
        self.task_pool = list(task_pool) if task_pool else None
        inner_obs, inner_act = env.observation_space, env.action_space
        if not isinstance(inner_obs, spaces.Box):
            raise TypeError(f"RL2TrialWrapper needs a Box observation space, got {inner_obs}")
        if isinstance(inner_act, spaces.Discrete):
            self._act_dim = int(inner_act.n)
        elif isinstance(inner_act, spaces.Box):
            self._act_dim = int(np.prod(inner_act.shape))
        else:
            raise TypeError(
                f"RL2TrialWrapper needs a Box or Discrete action space, got {inner_act}"
            )
        self._obs_dim = int(np.prod(inner_obs.shape))
        size = self._obs_dim + self._act_dim + 2
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        self._episode = 0

    def set_task_pool(self, tasks: Sequence[Mapping[str, Any]] | None) -> None:
        self.task_pool = list(tasks) if tasks else None

    def _encode(self, obs, action, reward: float, done: bool) -> np.ndarray:
        out = np.zeros(self.observation_space.shape, np.float32)
        out[: self._obs_dim] = np.asarray(obs, np.float32).reshape(-1)
        if action is not None:
            if isinstance(self.env.action_space, spaces.Discrete):
                out[self._obs_dim + int(action)] = 1.0
            else:
                out[self._obs_dim : self._obs_dim + self._act_dim] = np.asarray(
                    action, np.float32
                ).reshape(-1)
        out[-2] = reward
        out[-1] = float(done)
        return out

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        if "task" not in options and self.task_pool:
            if seed is not None:
                self.env.reset(seed=seed)  # seed np_random before drawing the task
                seed = None
            rng = task_env(self.env).np_random
            options["task"] = self.task_pool[int(rng.integers(len(self.task_pool)))]
        obs, info = self.env.reset(seed=seed, options=options or None)
        self._episode = 0
        info["episode_in_trial"] = 0
        return self._encode(obs, None, 0.0, False), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["episode_in_trial"] = self._episode
        if isinstance(self.env.action_space, spaces.Box):
            action = np.clip(action, self.env.action_space.low, self.env.action_space.high)
        if terminated or truncated:
            self._episode += 1
            if self._episode >= self.episodes_per_trial:
                return self._encode(obs, action, reward, True), reward, True, False, info
            obs, _ = self.env.reset()
            return self._encode(obs, action, reward, True), reward, False, False, info
        return self._encode(obs, action, reward, False), reward, False, False, info


class _TrialEnvFactory:
    """A picklable factory of :class:`RL2TrialWrapper` around an environment factory."""

    def __init__(self, env_fn, episodes_per_trial: int):
        self.env_fn, self.episodes_per_trial = env_fn, episodes_per_trial

    def __call__(self) -> gym.Env:
        return RL2TrialWrapper(self.env_fn(), self.episodes_per_trial)


def trial_env_fn(
    env: EnvLike,
    episodes_per_trial: int,
    env_kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
):
    """A factory of trials of ``env`` (see :func:`metagym.tasks.environment.make_env_fn`)."""
    return _TrialEnvFactory(make_env_fn(env, env_kwargs, max_episode_steps), episodes_per_trial)


def trial_episode_returns(observations: Tensor, rewards: Tensor, mask: Tensor, n: int) -> Tensor:
    """Return of each episode of each trial, ``(..., n)``, from trial data ``(..., T)``: a step
    belongs to the episode counted by the done flags (last observation entry) before it."""
    done_after = observations[..., 1:, -1] * mask  # 1 where the step ended an episode
    index = torch.cumsum(done_after, -1) - done_after
    index = index.clamp(max=n - 1).long()
    out = torch.zeros(*rewards.shape[:-1], n)
    out.scatter_add_(-1, index, rewards * mask)
    return out


class TrialTaskDistribution(GymTaskDistribution):
    """The tasks of an environment, each scored on trials of ``episodes_per_trial`` episodes.

    The same splits and task draws as :class:`GymTaskDistribution` over ``env`` (the same seed
    gives the same task parameters), but its episodes are trials (:class:`RL2TrialWrapper`).
    :meth:`score` is the average total return of a trial, or, for a predictor with an ``episode``
    attribute ``k``, the average return of the ``k``-th episode (0-based) of the trials.
    """

    def __init__(self, env: EnvLike, episodes_per_trial: int, **kwargs: Any):
        env_kwargs = kwargs.pop("env_kwargs", None)
        limit = kwargs.pop("max_episode_steps", None)
        self.base_name = env_name(env)
        self.episodes_per_trial = episodes_per_trial
        super().__init__(trial_env_fn(env, episodes_per_trial, env_kwargs, limit), **kwargs)
        self.name = self.base_name
        self.env_kwargs = dict(env_kwargs or {})
        self.max_episode_steps = limit

    def score(self, predictor, task) -> float:
        episodes = self.sampler.sample(predictor, [task], self.eval_episodes, seed=task.eval_seed)
        k = getattr(predictor, "episode", None)
        if k is None:
            return float(episodes.returns().mean())
        per_episode = trial_episode_returns(
            episodes.observations, episodes.rewards, episodes.mask, self.episodes_per_trial
        )
        return float(per_episode[..., k].mean())

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "episodes_per_trial": self.episodes_per_trial}
