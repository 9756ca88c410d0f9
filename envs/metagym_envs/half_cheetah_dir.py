"""HalfCheetah running forward or backward, as in MAML (Finn et al. 2017, section 5.3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from metagym_envs._mujoco import TotalMassCompat
from metagym_envs.core import ParameterizedEnvMixin, check_choice, check_number


class HalfCheetahDirEnv(ParameterizedEnvMixin, TotalMassCompat, HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5 rewarded for its velocity in a goal direction.

    - Observation and action: those of HalfCheetah-v5 (float64 shape ``(17,)``; float32 shape
      ``(6,)`` in [-1, 1]).
    - Reward: ``direction * v - 0.05 * sum(action**2)``, ``v`` the forward velocity (m/s).
    - Registered with a 200-step limit (truncation); there is no termination.
    - Task: ``{"direction": d, "mass_scale": s}``: ``d`` is +1 (forward) or -1 (backward); every
      body's mass and inertia are ``s`` times their defaults, ``s`` within (0, 10].

    Splits:
        ``train``, ``test``: direction +1 or -1 with equal probability, ``mass_scale`` 1.
        ``ood-heavy``: the same directions with ``mass_scale`` uniform in [1.5, 2.5] (dynamics never
        seen in training).
    """

    task_splits = ("train", "test", "ood-heavy")
    task_keys = ("direction", "mass_scale")

    def __init__(self, ctrl_cost_weight: float = 0.05, **kwargs: Any):
        super().__init__(ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        self._default_body_mass = self.model.body_mass.copy()
        self._default_body_inertia = self.model.body_inertia.copy()
        self._direction = 1.0
        self._init_task({"direction": 1, "mass_scale": 1.0})

    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        direction = 1 if rng.random() < 0.5 else -1
        scale = rng.uniform(1.5, 2.5) if split == "ood-heavy" else 1.0
        return {"direction": direction, "mass_scale": scale}

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "direction": check_choice(self, task, "direction", (1, -1)),
            "mass_scale": check_number(self, task, "mass_scale", 0.0, 10.0, low_open=True),
        }

    def _apply_task(self, task: dict[str, Any]) -> None:
        self._direction = float(task["direction"])
        # Scaling every body's density scales its mass and its inertia alike.
        self.model.body_mass[:] = self._default_body_mass * task["mass_scale"]
        self.model.body_inertia[:] = self._default_body_inertia * task["mass_scale"]

    def _get_rew(self, x_velocity: float, action):
        forward = self._direction * x_velocity
        ctrl_cost = self.control_cost(action)
        return forward - ctrl_cost, {"reward_forward": forward, "reward_ctrl": -ctrl_cost}
