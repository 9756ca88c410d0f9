"""2D point-mass navigation to a goal, as in MAML (Finn et al. 2017, section 5.3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metagym_envs.core import TaskEnvMixin, check_array

#: Largest accepted goal coordinate (|x|, |y|); beyond it the task is not a navigation task.
GOAL_LIMIT = 10.0


class Navigation2DEnv(TaskEnvMixin, gym.Env):
    """A point mass that starts at the origin and must reach a goal.

    - Observation: the position ``(x, y)``, float32 shape ``(2,)``, unbounded.
    - Action: a velocity ``(dx, dy)``, float32 shape ``(2,)``, clipped to [-0.1, 0.1] per axis.
    - Reward: minus the Euclidean distance from the new position to the goal.
    - Termination: within 0.01 of the goal. Registered with a 100-step limit (truncation).
    - Task: ``{"goal": [x, y]}``, each coordinate within [-10, 10].

    Splits:
        ``train``, ``test``: goal uniform in [-0.5, 0.5]^2.
        ``ood-far``: goal at a distance uniform in [0.7, 1.0] from the origin, uniform angle.
    """

    metadata = {"render_modes": []}
    task_splits = ("train", "test", "ood-far")
    task_keys = ("goal",)

    def __init__(self, goal_tolerance: float = 0.01):
        self.goal_tolerance = float(goal_tolerance)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-0.1, 0.1, shape=(2,), dtype=np.float32)
        self._x, self._y = 0.0, 0.0
        self._goal_x, self._goal_y = 0.0, 0.0
        self._init_task({"goal": [0.5, 0.5]})

    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        if split == "ood-far":
            radius = rng.uniform(0.7, 1.0)
            angle = rng.uniform(0.0, 2.0 * np.pi)
            goal = [radius * np.cos(angle), radius * np.sin(angle)]
        else:
            goal = rng.uniform(-0.5, 0.5, size=2)
        return {"goal": goal}

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        goal = check_array(self, task, "goal", (2,), -GOAL_LIMIT, GOAL_LIMIT)
        return {"goal": [float(goal[0]), float(goal[1])]}

    def _apply_task(self, task: dict[str, Any]) -> None:
        self._goal_x, self._goal_y = task["goal"]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_task_option(options)
        super().reset(seed=seed)
        self._x, self._y = 0.0, 0.0
        return np.zeros(2, dtype=np.float32), self._with_task({})

    def step(self, action):
        # Plain floats: this environment is cheap, and the sampler benchmark measures it.
        dx, dy = float(action[0]), float(action[1])
        self._x += -0.1 if dx < -0.1 else (0.1 if dx > 0.1 else dx)
        self._y += -0.1 if dy < -0.1 else (0.1 if dy > 0.1 else dy)
        distance = math.hypot(self._x - self._goal_x, self._y - self._goal_y)
        terminated = distance < self.goal_tolerance
        info = self._with_task({"distance": distance})
        observation = np.array((self._x, self._y), dtype=np.float32)
        return observation, -distance, terminated, False, info
