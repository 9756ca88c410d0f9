"""Ant running in a goal direction, as in MAML (Finn et al. 2017, section 5.3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv

from metagym_envs.core import ParameterizedEnvMixin, check_number


class AntDirEnv(ParameterizedEnvMixin, AntEnv):
    """Gymnasium's Ant-v5 rewarded for its velocity along a goal direction in the plane.

    - Observation and action: those of Ant-v5 (float64 shape ``(105,)``; float32 shape ``(8,)``
      in [-1, 1]).
    - Reward: ``cos(angle) * vx + sin(angle) * vy`` (torso velocity in m/s) plus a survival bonus
      of 0.05 per step, minus ``0.005 * sum(action**2)`` and Ant-v5's contact cost, as in MAML's
      ant environments.
    - Termination: Ant-v5's (the torso leaves the healthy height range). Registered with a
      200-step limit (truncation).
    - Task: ``{"angle": a}``, the goal direction in radians within [-2 pi, 2 pi]; 0 is +x (MAML's
      direction +1) and pi is -x (direction -1).

    Splits:
        ``train``, ``test``: angle 0 or pi with equal probability (forward or backward).
        ``ood-angle``: angle uniform in [-pi, pi) (directions never seen in training).
    """

    task_splits = ("train", "test", "ood-angle")
    task_keys = ("angle",)

    def __init__(
        self,
        healthy_reward: float = 0.05,
        ctrl_cost_weight: float = 0.005,
        **kwargs: Any,
    ):
        super().__init__(healthy_reward=healthy_reward, ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        self._goal_direction = (1.0, 0.0)
        self._init_task({"angle": 0.0})

    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        if split == "ood-angle":
            return {"angle": rng.uniform(-math.pi, math.pi)}
        return {"angle": 0.0 if rng.random() < 0.5 else math.pi}

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        return {"angle": check_number(self, task, "angle", -2 * math.pi, 2 * math.pi)}

    def _apply_task(self, task: dict[str, Any]) -> None:
        self._goal_direction = (math.cos(task["angle"]), math.sin(task["angle"]))

    def step(self, action):
        observation, reward, terminated, truncated, info = super().step(action)
        # Replace Ant-v5's forward (+x) reward by the velocity along the goal direction.
        forward = (
            self._goal_direction[0] * info["x_velocity"]
            + self._goal_direction[1] * info["y_velocity"]
        )
        reward = reward - info["reward_forward"] + forward
        info["reward_forward"] = forward
        return observation, reward, terminated, truncated, info
