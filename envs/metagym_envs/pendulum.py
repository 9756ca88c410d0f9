"""Pendulum swing-up with gravity, mass and length as task parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv

from metagym_envs.core import ParameterizedEnvMixin, check_number

#: Split ranges (low, high) per parameter; ``test`` uses the ``train`` ranges.
SPLIT_RANGES = {
    "train": {"gravity": (8.0, 12.0), "mass": (0.5, 1.5), "length": (0.5, 1.5)},
    "ood-heavy": {"gravity": (8.0, 12.0), "mass": (1.5, 3.0), "length": (1.5, 2.0)},
    "ood-gravity": {"gravity": (12.0, 20.0), "mass": (0.5, 1.5), "length": (0.5, 1.5)},
}
#: Physically valid ranges: (low, high], all strictly positive.
VALID_RANGES = {"gravity": (0.0, 100.0), "mass": (0.0, 100.0), "length": (0.0, 100.0)}


class PendulumParamsEnv(ParameterizedEnvMixin, PendulumEnv):
    """Gymnasium's Pendulum-v1 with its physical parameters set by the task.

    - Observation, action, reward: those of Pendulum-v1 (``[cos, sin, angular velocity]`` float32
      shape ``(3,)``; torque float32 shape ``(1,)`` in [-2, 2] N m). Registered with a 200-step limit.
    - Task: ``{"gravity": m/s^2, "mass": kg, "length": m}``, each in (0, 100]. Pendulum-v1 itself is
      ``{"gravity": 10, "mass": 1, "length": 1}``.

    Splits:
        ``train``, ``test``: gravity U[8, 12], mass U[0.5, 1.5], length U[0.5, 1.5].
        ``ood-heavy``: mass U[1.5, 3], length U[1.5, 2] (the maximum torque can no longer lift the
        pendulum directly).
        ``ood-gravity``: gravity U[12, 20].
    """

    task_splits = ("train", "test", "ood-heavy", "ood-gravity")
    task_keys = ("gravity", "mass", "length")

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        self._init_task({"gravity": 10.0, "mass": 1.0, "length": 1.0})

    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        ranges = SPLIT_RANGES["train" if split == "test" else split]
        return {key: rng.uniform(low, high) for key, (low, high) in ranges.items()}

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        return {
            key: check_number(self, task, key, low, high, low_open=True)
            for key, (low, high) in VALID_RANGES.items()
        }

    def _apply_task(self, task: dict[str, Any]) -> None:
        self.g, self.m, self.l = task["gravity"], task["mass"], task["length"]
