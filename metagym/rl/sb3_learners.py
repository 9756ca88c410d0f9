"""Baselines with Stable-Baselines3: PPO from scratch on each test task, PPO pretrained on the
mixture of training tasks then fine-tuned on each test task, an oracle PPO that sees the task
parameters, and a random policy.

Their ``steps`` (for :func:`metagym.evaluate.evaluate`) are environment steps of PPO training on
the test task. SB3 draws from torch's and numpy's global generators; every SB3 call here runs
inside :class:`metagym.seeding.isolated_rng`, seeded explicitly, so results are reproducible and
the caller's random state is left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from metagym.learners.base import Learner, Predictor
from metagym.rl.sampler import random_policy
from metagym.seeding import isolated_rng
from metagym.tasks.environment import task_env
from metagym.tasks.gym import GymTaskDistribution

__all__ = [
    "TaskPoolWrapper",
    "TaskInObservation",
    "PPOBaseline",
    "RandomLearner",
    "task_features",
    "task_vector",
]


def sb3_distribution(distribution: Any) -> Distribution:
    """The torch distribution inside a Stable-Baselines3 distribution, batch shape ``(N,)``."""
    inner = distribution.distribution
    if isinstance(inner, Normal):
        return Independent(inner, 1)
    return inner


#: PPO settings of the baselines (SB3 defaults otherwise).
DEFAULT_PPO = {"n_steps": 256, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4}


def task_vector(params: Mapping[str, Any]) -> np.ndarray:
    """The task's numbers, flattened in sorted key order (float32)."""
    values = []
    for key in sorted(params):
        values.extend(np.asarray(params[key], dtype=np.float64).reshape(-1).tolist())
    return np.asarray(values, np.float32)


def task_features(env: gym.Env, params: Mapping[str, Any]) -> np.ndarray:
    """What the oracle sees of a task: the environment's own ``task_features(task)`` when it has
    one (a fixed-size vector, e.g. Meta-World's env one-hot and goal), else :func:`task_vector`."""
    features = getattr(task_env(env), "task_features", None)
    if callable(features):
        return np.asarray(features(params), np.float32).reshape(-1)
    return task_vector(params)


class TaskPoolWrapper(gym.Wrapper):
    """Switches to a task drawn (from the environment's ``np_random``) from ``pool`` at every reset."""

    def __init__(self, env: gym.Env, pool: Sequence[Mapping[str, Any]] | None = None):
        super().__init__(env)
        self.pool = list(pool or [])

    def set_task_pool(self, pool: Sequence[Mapping[str, Any]]) -> None:
        self.pool = list(pool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self.pool and not (options and "task" in options):
            if seed is not None:
                self.env.reset(seed=seed)
                seed = None
            rng = task_env(self.env).np_random
            task_env(self.env).set_task(self.pool[int(rng.integers(len(self.pool)))])
        return self.env.reset(seed=seed, options=options)


class TaskInObservation(gym.ObservationWrapper):
    """Appends :func:`task_vector` of the current task to the (flattened) observation."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        size = int(np.prod(env.observation_space.shape)) + len(self._vector())
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)

    def _vector(self) -> np.ndarray:
        return task_features(self.env, task_env(self.env).get_task())

    def observation(self, observation):
        flat = np.asarray(observation, np.float32).reshape(-1)
        return np.concatenate([flat, self._vector()])


class _EnvMaker:
    """Picklable factory: the distribution's environment, wrapped."""

    def __init__(self, env_fn, *, pool: bool = True, oracle: bool = False, task=None):
        self.env_fn, self.pool, self.oracle, self.task = env_fn, pool, oracle, task

    def __call__(self) -> gym.Env:
        env = self.env_fn()
        if self.task is not None:
            task_env(env).set_task(self.task)
        if self.pool:
            env = TaskPoolWrapper(env)
        if self.oracle:
            env = TaskInObservation(env)
        return env


class SB3Policy:
    """A sampler policy around an SB3 ``ActorCriticPolicy`` (a private copy); ``features`` (the
    oracle's task features, :func:`task_features`) are appended to the observations."""

    def __init__(self, policy: nn.Module, features: np.ndarray | None = None):
        self.policy = policy
        self.extra = torch.as_tensor(features) if features is not None else None

    def __call__(self, observations: Tensor) -> Distribution:
        obs = observations.float().flatten(start_dim=1)
        if self.extra is not None:
            obs = torch.cat([obs, self.extra.expand(obs.shape[0], -1)], dim=1)
        with torch.no_grad():
            return sb3_distribution(self.policy.get_distribution(obs))


class PPOBaseline(Learner):
    """PPO baselines on a :class:`GymTaskDistribution`.

    Args:
        distribution: the tasks (gives the environments).
        mode: ``"scratch"`` (no meta-training; PPO from a fresh policy on each test task),
            ``"pretrain"`` (PPO on the mixture of training tasks: every episode draws one of the
            meta-batch's tasks; fine-tuned by PPO on each test task) or ``"oracle"`` (PPO on the
            mixture with the task parameters appended to the observation; no fine-tuning).
        n_envs: parallel environments in pretraining.
        steps_per_iteration: PPO steps per meta-training step (pretrain, oracle).
        fine_tune_kwargs: PPO settings on a test task (one environment); by default
            ``n_steps`` is one MAML inner batch, e.g. 20 episodes x 100 steps.
        seed: seed of initialization and PPO's sampling.
        ppo_kwargs: PPO settings of pretraining.
    """

    def __init__(
        self,
        distribution: GymTaskDistribution,
        mode: str,
        *,
        n_envs: int = 8,
        steps_per_iteration: int = 4096,
        fine_tune_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
        hidden: Sequence[int] = (64, 64),
        ppo_kwargs: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        from stable_baselines3 import PPO
        from stable_baselines3.common.logger import Logger
        from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

        if mode not in ("scratch", "pretrain", "oracle"):
            raise ValueError(f"unknown PPO baseline {mode!r}; accepted: scratch, pretrain, oracle")
        self.name = mode
        self.mode = mode
        self.uses_steps = mode != "oracle"
        self.trainable = mode != "scratch"
        self.scored_on = "episode"
        self.distribution = distribution
        self.seed_value = seed
        self.iteration = 0
        self.steps_per_iteration = steps_per_iteration
        self.hidden = list(hidden)
        self.ppo_kwargs = {
            **DEFAULT_PPO,
            "policy_kwargs": {"net_arch": list(hidden)},
            **dict(ppo_kwargs or {}),
        }
        self.fine_tune_kwargs = {
            **self.ppo_kwargs,
            "n_steps": 2000,
            "batch_size": 500,
            **dict(fine_tune_kwargs or {}),
        }
        for kwargs, envs in ((self.ppo_kwargs, n_envs), (self.fine_tune_kwargs, 1)):
            kwargs["batch_size"] = min(kwargs["batch_size"], kwargs["n_steps"] * envs)
        self._PPO, self._DummyVecEnv, self._Logger = PPO, DummyVecEnv, Logger
        maker = _EnvMaker(distribution.env_fn, pool=True, oracle=mode == "oracle")
        self.vec_env = VecMonitor(DummyVecEnv([maker] * n_envs))
        self.vec_env.seed(seed)
        with isolated_rng(seed):
            self.ppo = PPO("MlpPolicy", self.vec_env, device="cpu", **self.ppo_kwargs)
        self._quiet(self.ppo)
        self.policy = self.ppo.policy
        self.optimizer = self.ppo.policy.optimizer
        # Snapshots are copies of this never-run policy (a policy that has run holds non-leaf
        # tensors of its last distribution, which deepcopy refuses).
        self._template = [copy.deepcopy(self.policy)]

    def _quiet(self, model: Any) -> None:
        """Give ``model`` a logger that writes nothing: SB3's default makes a fresh empty
        ``SB3-<date>`` folder in the temporary directory at every ``learn`` (one per test task)."""
        model.set_logger(self._Logger(folder=None, output_formats=[]))

    def env_steps(self, steps: int | None) -> int:
        """PPO's ``steps`` on the task are its environment steps."""
        return steps or 0

    def snapshot(self, policy: nn.Module) -> nn.Module:
        copied = copy.deepcopy(self._template[0])
        copied.load_state_dict(policy.state_dict())
        return copied

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps_per_iteration": self.steps_per_iteration,
            "ppo": {k: v for k, v in self.ppo_kwargs.items() if k != "policy_kwargs"},
            "fine_tune": {k: v for k, v in self.fine_tune_kwargs.items() if k != "policy_kwargs"},
            "hidden": self.hidden,
        }

    def meta_train_step(self, tasks: Sequence[Any]) -> dict[str, float]:
        if not self.trainable:
            return {}
        self.vec_env.env_method("set_task_pool", [t.params for t in tasks])
        self.iteration += 1
        with isolated_rng(self.seed_value * 1_000_003 + self.iteration):
            self.ppo.learn(self.steps_per_iteration, reset_num_timesteps=False)
        returns = [info["r"] for info in self.ppo.ep_info_buffer]
        metrics = {"charts/episode_return": float(np.mean(returns)) if returns else 0.0}
        value = self.ppo.logger.name_to_value.get("train/loss")
        if value is not None:
            metrics["losses/ppo_loss"] = float(value)
        return metrics

    def adapt_steps(self, task: Any, steps: Iterable[int]) -> dict[int, Predictor]:
        steps = sorted(set(steps))
        if self.mode == "oracle":
            features = task_features(self.distribution._env, task.params)
            return {s: SB3Policy(self.policy, features) for s in steps}
        if steps[-1] == 0:
            return {0: SB3Policy(self.snapshot(self.policy))}
        env = self._DummyVecEnv([_EnvMaker(self.distribution.env_fn, pool=False, task=task.params)])
        env.seed(int(task.seed))
        with isolated_rng(int(task.seed)):
            model = self._PPO("MlpPolicy", env, device="cpu", **self.fine_tune_kwargs)
            self._quiet(model)
            if self.mode == "pretrain":
                model.policy.load_state_dict(self.policy.state_dict())
            predictors, done = {}, 0
            for s in steps:
                if s > done:
                    model.learn(s - done, reset_num_timesteps=done == 0)
                    done = s
                predictors[s] = SB3Policy(self.snapshot(model.policy))
        env.close()
        return predictors

    def adapt(self, task: Any, steps: int | None = None) -> Predictor:
        return self.adapt_steps(task, [steps or 0])[steps or 0]

    def checkpoint_state(self) -> dict[str, Any]:
        return {**super().checkpoint_state(), "iteration": self.iteration}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        super().load_checkpoint_state(state)
        self.iteration = int(state.get("iteration", 0))


class RandomLearner(Learner):
    """Acts uniformly at random (nothing to learn, nothing to adapt)."""

    name = "random"
    uses_steps = False
    trainable = False

    def __init__(self, action_space: gym.Space, *, scored_on: str = "episode"):
        super().__init__()
        self.action_space = action_space
        self.scored_on = scored_on

    def env_steps(self, steps: int | None) -> int:
        return 0

    def meta_train_step(self, tasks) -> dict[str, float]:
        return {}

    def adapt(self, task: Any, steps: int | None = None) -> Predictor:
        return random_policy(self.action_space)
