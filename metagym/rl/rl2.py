"""RL^2 (Duan et al. 2016): a recurrent policy whose memory persists across the episodes of a
trial on one task, trained with PPO.

:class:`RL2TrialWrapper` turns a trial of ``episodes_per_trial`` episodes of one task into one
Gymnasium episode whose observation is ``(observation, previous action, previous reward, done
flag)``; sb3-contrib's ``RecurrentPPO`` then trains the LSTM policy unchanged, since its hidden
state is reset only at the start of a (wrapped) episode, i.e. of a trial. This expresses RL^2
exactly, so no separate implementation is needed.

:class:`TrialTaskDistribution` scores policies on whole trials; :class:`RL2` is the learner.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from metagym.learners.base import Learner, Predictor
from metagym.tasks.gym import EnvLike, GymTaskDistribution, env_name, make_env_fn, task_env

__all__ = ["RL2", "RL2TrialWrapper", "TrialTaskDistribution", "isolated_rng", "trial_env_fn"]


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
    """A factory of trials of ``env`` (see :func:`metagym.tasks.gym.make_env_fn`)."""
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


class isolated_rng:  # noqa: N801 (a context manager used like a function)
    """Seed torch's, numpy's and Python's global generators inside the block and restore them
    after, for libraries (Stable-Baselines3) that draw from global state."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self._torch = torch.random.get_rng_state()
        self._numpy = np.random.get_state()
        self._python = random.getstate()
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)
        random.seed(self.seed)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self._torch)
        np.random.set_state(self._numpy)
        random.setstate(self._python)


def sb3_distribution(distribution: Any) -> Distribution:
    """The torch distribution inside a Stable-Baselines3 distribution, batch shape ``(N,)``."""
    inner = distribution.distribution
    if isinstance(inner, Normal):
        return Independent(inner, 1)
    return inner


class RecurrentPolicy:
    """A sampler policy around a ``RecurrentActorCriticPolicy``: the LSTM state persists between
    calls and is reset for the rows the sampler marks (at the start of each trial)."""

    def __init__(self, policy: nn.Module, episode: int | None = None):
        self.policy = policy
        self.episode = episode
        self.states: tuple[Tensor, Tensor] | None = None
        self.starts: Tensor | None = None

    def reset_memory(self, mask: Tensor) -> None:
        self.starts = mask.float()

    def __call__(self, observations: Tensor) -> Distribution:
        n = observations.shape[0]
        if self.states is None or self.states[0].shape[1] != n:
            shape = self.policy.lstm_hidden_state_shape
            zeros = torch.zeros(shape[0], n, shape[2])
            self.states = (zeros, zeros.clone())
            self.starts = torch.ones(n)
        starts = self.starts if self.starts is not None else torch.zeros(n)
        with torch.no_grad():
            distribution, self.states = self.policy.get_distribution(
                observations.float(), self.states, starts
            )
        self.starts = torch.zeros(n)
        return sb3_distribution(distribution)


class RL2(Learner):
    """RL^2 with sb3-contrib's ``RecurrentPPO`` on :class:`RL2TrialWrapper` trials.

    Each meta-training step sets the training environments' task pool to the meta-batch's tasks
    (every trial draws one of them) and runs PPO for ``steps_per_iteration`` environment steps.
    Adaptation is the LSTM's memory: :meth:`adapt` returns the policy itself. With
    ``per_episode``, ``steps`` are the number of earlier episodes of the trial (the score is
    that of episode ``steps``); otherwise the score is the trial's total return.

    Args:
        distribution: a :class:`TrialTaskDistribution` (gives the environments).
        n_envs: parallel training trials.
        steps_per_iteration: PPO environment steps per meta-training step (a multiple of
            ``n_envs * n_steps`` is best).
        per_episode: report per-episode returns (``steps`` = episodes before) instead of totals.
        seed: seed of PPO's initialization and sampling.
        ppo_kwargs: more ``RecurrentPPO`` arguments (``n_steps``, ``learning_rate``, ...).
    """

    name = "rl2"

    def __init__(
        self,
        distribution: TrialTaskDistribution,
        *,
        n_envs: int = 8,
        steps_per_iteration: int = 4096,
        per_episode: bool = True,
        seed: int = 0,
        hidden: int = 64,
        ppo_kwargs: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        from sb3_contrib import RecurrentPPO
        from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

        self.distribution = distribution
        self.uses_steps = per_episode
        self.steps_per_iteration = steps_per_iteration
        self.seed_value = seed
        self.iteration = 0
        self.vec_env = VecMonitor(DummyVecEnv([distribution.env_fn] * n_envs))
        self.vec_env.seed(seed)
        kwargs = {
            "n_steps": 128,
            "batch_size": 256,
            "n_epochs": 4,
            "learning_rate": 3e-4,
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "ent_coef": 0.01,
            "policy_kwargs": {"lstm_hidden_size": hidden, "net_arch": [hidden]},
            **dict(ppo_kwargs or {}),
        }
        kwargs["batch_size"] = min(kwargs["batch_size"], kwargs["n_steps"] * n_envs)
        self.ppo_kwargs = kwargs
        with isolated_rng(seed):
            self.ppo = RecurrentPPO(
                "MlpLstmPolicy", self.vec_env, seed=None, device="cpu", **kwargs
            )
        self.policy = self.ppo.policy
        self.optimizer = self.ppo.policy.optimizer

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps_per_iteration": self.steps_per_iteration,
            "per_episode": self.uses_steps,
            "episodes_per_trial": self.distribution.episodes_per_trial,
            "n_envs": self.vec_env.num_envs,
            "ppo": {k: v for k, v in self.ppo_kwargs.items() if k != "policy_kwargs"},
        }

    def meta_train_step(self, tasks: Sequence[Any]) -> dict[str, float]:
        pool = [t.params for t in tasks]
        self.vec_env.env_method("set_task_pool", pool)
        self.iteration += 1
        with isolated_rng(self.seed_value * 1_000_003 + self.iteration):
            self.ppo.learn(self.steps_per_iteration, reset_num_timesteps=False)
        returns = [info["r"] for info in self.ppo.ep_info_buffer]
        metrics = {"charts/trial_return": float(np.mean(returns)) if returns else 0.0}
        for key in ("train/loss", "train/entropy_loss", "train/approx_kl"):
            value = self.ppo.logger.name_to_value.get(key)
            if value is not None:
                metrics["losses/" + key.split("/")[1]] = float(value)
        return metrics

    def adapt(self, task: Any, steps: int | None = None) -> Predictor:
        return RecurrentPolicy(self.policy, episode=steps if self.uses_steps else None)

    def adapt_steps(self, task: Any, steps: Iterable[int]) -> dict[int, Predictor]:
        return {s: self.adapt(task, s) for s in steps}

    def checkpoint_state(self) -> dict[str, Any]:
        return {**super().checkpoint_state(), "iteration": self.iteration}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        super().load_checkpoint_state(state)
        self.iteration = int(state.get("iteration", 0))
