"""Random tabular MDPs, as in RL^2 (Duan et al. 2016, section 4.2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metagym_envs.core import TaskEnvMixin, check_array

#: Largest accepted |reward mean|.
MAX_REWARD_MEAN = 100.0


class TabularMDPEnv(TaskEnvMixin, gym.Env):
    """A random MDP with ``n_states`` states and ``n_actions`` actions.

    - Observation: the state, ``Discrete(n_states)`` (wrap with
      ``gymnasium.wrappers.FlattenObservation`` for a one-hot float vector).
    - Action: ``Discrete(n_actions)``.
    - Reward: normal with mean ``reward_means[s][a]`` and standard deviation 1.
    - Dynamics: the next state is drawn from ``transitions[s][a]``; every episode starts in state 0.
      Registered with a 10-step limit (truncation).
    - Task: ``{"reward_means": (n_states, n_actions) nested list, "transitions": (n_states,
      n_actions, n_states) nested list of probabilities whose last axis sums to 1}``.

    Splits:
        ``train``, ``test``: reward means N(1, 1), each transition row Dirichlet(1, ..., 1).
        ``ood-peaked``: reward means N(1, 1), transition rows Dirichlet(0.1, ..., 0.1) (nearly
        deterministic dynamics).
    """

    metadata = {"render_modes": []}
    task_splits = ("train", "test", "ood-peaked")
    task_keys = ("reward_means", "transitions")

    def __init__(self, n_states: int = 10, n_actions: int = 5):
        for name, value in (("n_states", n_states), ("n_actions", n_actions)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"TabularMDPEnv: {name} must be an int >= 1, got {value!r}")
        self.n_states, self.n_actions = int(n_states), int(n_actions)
        self.observation_space = spaces.Discrete(self.n_states)
        self.action_space = spaces.Discrete(self.n_actions)
        self._state = 0
        uniform = np.full((self.n_states, self.n_actions, self.n_states), 1.0 / self.n_states)
        self._init_task(
            {
                "reward_means": np.ones((self.n_states, self.n_actions)),
                "transitions": uniform,
            }
        )

    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        alpha = 0.1 if split == "ood-peaked" else 1.0
        shape = (self.n_states, self.n_actions)
        return {
            "reward_means": rng.normal(1.0, 1.0, size=shape),
            "transitions": rng.dirichlet(np.full(self.n_states, alpha), size=shape),
        }

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        shape = (self.n_states, self.n_actions)
        means = check_array(self, task, "reward_means", shape, -MAX_REWARD_MEAN, MAX_REWARD_MEAN)
        transitions = check_array(self, task, "transitions", (*shape, self.n_states), 0.0, 1.0)
        sums = transitions.sum(axis=-1)
        if not np.allclose(sums, 1.0, atol=1e-6):
            worst = np.unravel_index(np.argmax(np.abs(sums - 1.0)), sums.shape)
            raise ValueError(
                f"TabularMDPEnv: task['transitions'][{worst[0]}][{worst[1]}] sums to "
                f"{sums[worst]:.6g}, not 1"
            )
        return {"reward_means": means.tolist(), "transitions": transitions.tolist()}

    def _apply_task(self, task: dict[str, Any]) -> None:
        self._reward_means = np.asarray(task["reward_means"], dtype=np.float64)
        transitions = np.asarray(task["transitions"], dtype=np.float64)
        # Cumulative rows for sampling by inverse CDF; the last entry is forced to 1.
        self._cumulative = np.cumsum(transitions, axis=-1)
        self._cumulative[..., -1] = 1.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_task_option(options)
        super().reset(seed=seed)
        self._state = 0
        return self._state, self._with_task({})

    def step(self, action):
        a = int(action)
        if not 0 <= a < self.n_actions:
            raise ValueError(f"TabularMDPEnv: action {action!r} is not in [0, {self.n_actions})")
        s = self._state
        reward = float(self._reward_means[s, a] + self.np_random.standard_normal())
        self._state = int(np.searchsorted(self._cumulative[s, a], self.np_random.random(), "right"))
        self._state = min(self._state, self.n_states - 1)
        return self._state, reward, False, False, self._with_task({})
