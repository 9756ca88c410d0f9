"""RL^2 (Duan et al. 2016): a recurrent policy whose memory persists across the episodes of a
trial on one task, trained with PPO.

:class:`metagym.tasks.trials.RL2TrialWrapper` turns a trial of ``episodes_per_trial`` episodes of
one task into one Gymnasium episode whose observation is ``(observation, previous action, previous
reward, done flag)``; sb3-contrib's ``RecurrentPPO`` then trains the LSTM policy unchanged, since
its hidden state is reset only at the start of a (wrapped) episode, i.e. of a trial. This
expresses RL^2 exactly, so no separate implementation is needed.

:class:`metagym.tasks.trials.TrialTaskDistribution` scores policies on whole trials; :class:`RL2`
is the learner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from metagym.learners.base import Learner, Predictor
from metagym.seeding import isolated_rng
from metagym.tasks.trials import TrialTaskDistribution

__all__ = ["RL2", "RecurrentPolicy", "sb3_distribution"]


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
    """RL^2 with sb3-contrib's ``RecurrentPPO`` on :class:`~metagym.tasks.trials.RL2TrialWrapper` trials.

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
        self.scored_on = "episode" if per_episode else "trial"
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

    def env_steps(self, steps: int | None) -> int:
        """Steps of the ``steps`` earlier episodes of the trial (episodes of the step limit)."""
        return (steps or 0) * (self.distribution.sampler.time_limit or 100)

    def adapt(self, task: Any, steps: int | None = None) -> Predictor:
        return RecurrentPolicy(self.policy, episode=steps if self.uses_steps else None)

    def adapt_steps(self, task: Any, steps: Iterable[int]) -> dict[int, Predictor]:
        return {s: self.adapt(task, s) for s in steps}

    def checkpoint_state(self) -> dict[str, Any]:
        return {**super().checkpoint_state(), "iteration": self.iteration}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        super().load_checkpoint_state(state)
        self.iteration = int(state.get("iteration", 0))
