"""HalfCheetah running at a goal velocity, as in MAML (Finn et al. 2017, section 5.3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from metagym_envs._mujoco import TotalMassCompat
from metagym_envs.core import ParameterizedEnvMixin, check_number

#: Fastest accepted goal velocity (m/s); a half-cheetah cannot run faster than about 15 m/s.
MAX_VELOCITY = 20.0


class HalfCheetahVelEnv(ParameterizedEnvMixin, TotalMassCompat, HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5 rewarded for matching a goal forward velocity.

    - Observation and action: those of HalfCheetah-v5 (float64 shape ``(17,)``; float32 shape
      ``(6,)`` in [-1, 1]).
    - Reward: ``-|v - goal| - 0.05 * sum(action**2)``, ``v`` the forward velocity (m/s).
    - Registered with a 200-step limit (truncation); there is no termination.
    - Task: ``{"velocity": v}``, the goal velocity in m/s, within [-20, 20].

    Splits:
        ``train``, ``test``: velocity uniform in [0, 2].
        ``ood-fast``: velocity uniform in [2, 3].
    """

    task_splits = ("train", "test", "ood-fast")
    task_keys = ("velocity",)

    def __init__(self, ctrl_cost_weight: float = 0.05, **kwargs: Any):
        super().__init__(ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        self._goal_velocity = 0.0
        self._init_task({"velocity": 1.0})

    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        low, high = (2.0, 3.0) if split == "ood-fast" else (0.0, 2.0)
        return {"velocity": rng.uniform(low, high)}

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        return {"velocity": check_number(self, task, "velocity", -MAX_VELOCITY, MAX_VELOCITY)}

    def _apply_task(self, task: dict[str, Any]) -> None:
        self._goal_velocity = task["velocity"]

    def _get_rew(self, x_velocity: float, action):
        forward = -abs(x_velocity - self._goal_velocity)
        ctrl_cost = self.control_cost(action)
        return forward - ctrl_cost, {"reward_forward": forward, "reward_ctrl": -ctrl_cost}
