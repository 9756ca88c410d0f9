"""Multi-armed Bernoulli bandits, as in RL^2 (Duan et al. 2016, section 4.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metagym_envs.core import TaskEnvMixin, check_array

#: Parameters of the skewed Beta distribution of the ``ood-skewed`` split (mean 1/7).
SKEWED_BETA = (0.5, 3.0)


class BanditEnv(TaskEnvMixin, gym.Env):
    """``k`` Bernoulli arms; each pull is one step, with one observation per pull.

    - Observation: a constant ``[0.0]`` (float32 shape ``(1,)``): as in RL^2, everything the agent
      learns comes from the rewards it has seen, so a meta-learner must remember them.
    - Action: the arm, ``Discrete(k)``.
    - Reward: 1 with probability ``means[arm]``, else 0.
    - Termination: after ``pulls`` pulls (default 1, so that an RL^2 trial of ``n`` episodes is
      ``n`` pulls).
    - Task: ``{"means": [m_0, ..., m_{k-1}]}``, each in [0, 1].

    Args:
        k: number of arms (>= 2).
        pulls: pulls per episode (>= 1).

    Splits:
        ``train``, ``test``: means uniform in [0, 1].
        ``ood-skewed``: means from Beta(0.5, 3): most arms pay rarely, a few pay often.
    """

    metadata = {"render_modes": []}
    task_splits = ("train", "test", "ood-skewed")
    task_keys = ("means",)

    def __init__(self, k: int = 5, pulls: int = 1):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"BanditEnv: k (number of arms) must be an int >= 2, got {k!r}")
        if isinstance(pulls, bool) or not isinstance(pulls, (int, np.integer)) or pulls < 1:
            raise ValueError(f"BanditEnv: pulls must be an int >= 1, got {pulls!r}")
        self.k = int(k)
        self.pulls = int(pulls)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.k)
        self._means = np.full(self.k, 0.5)
        self._pulled = 0
        self._init_task({"means": [0.5] * self.k})

    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        if split == "ood-skewed":
            return {"means": rng.beta(*SKEWED_BETA, size=self.k)}
        return {"means": rng.uniform(0.0, 1.0, size=self.k)}

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        means = check_array(self, task, "means", (self.k,), 0.0, 1.0)
        return {"means": means.tolist()}

    def _apply_task(self, task: dict[str, Any]) -> None:
        self._means = np.asarray(task["means"], dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_task_option(options)
        super().reset(seed=seed)
        self._pulled = 0
        return np.zeros(1, dtype=np.float32), self._with_task({})

    def step(self, action):
        arm = int(action)
        if not 0 <= arm < self.k:
            raise ValueError(f"BanditEnv: arm {action!r} is not in [0, {self.k})")
        reward = float(self.np_random.random() < self._means[arm])
        self._pulled += 1
        terminated = self._pulled >= self.pulls
        return np.zeros(1, dtype=np.float32), reward, terminated, False, self._with_task({})
