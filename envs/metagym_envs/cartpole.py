"""Cart-pole balancing with gravity, masses and pole length as task parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from metagym_envs.core import ParameterizedEnvMixin, check_number

#: Split ranges (low, high) per parameter; ``test`` uses the ``train`` ranges.
SPLIT_RANGES = {
    "train": {
        "gravity": (8.8, 10.8),
        "masscart": (0.5, 1.5),
        "masspole": (0.05, 0.15),
        "length": (0.25, 0.75),
    },
    "ood-heavy": {
        "gravity": (8.8, 10.8),
        "masscart": (1.5, 3.0),
        "masspole": (0.3, 0.6),
        "length": (0.75, 1.5),
    },
    "ood-light": {
        "gravity": (8.8, 10.8),
        "masscart": (0.1, 0.5),
        "masspole": (0.01, 0.05),
        "length": (0.05, 0.25),
    },
}
#: Physically valid ranges: (low, high], all strictly positive.
VALID_RANGES = {
    "gravity": (0.0, 100.0),
    "masscart": (0.0, 100.0),
    "masspole": (0.0, 100.0),
    "length": (0.0, 100.0),
}


class CartPoleParamsEnv(ParameterizedEnvMixin, CartPoleEnv):
    """Gymnasium's CartPole-v1 with its physical parameters set by the task.

    - Observation, action, reward: those of CartPole-v1 (float32 shape ``(4,)``; ``Discrete(2)``;
      +1 per step until the pole falls or the cart leaves the track). Registered with a 200-step
      limit.
    - Task: ``{"gravity": m/s^2, "masscart": kg, "masspole": kg, "length": m}``, each in (0, 100];
      ``length`` is half the pole's length, as in Gymnasium. CartPole-v1 itself is
      ``{"gravity": 9.8, "masscart": 1, "masspole": 0.1, "length": 0.5}``. The derived
      ``total_mass`` and ``polemass_length`` are recomputed with every task.

    Splits:
        ``train``, ``test``: gravity U[8.8, 10.8], masscart U[0.5, 1.5], masspole U[0.05, 0.15],
        length U[0.25, 0.75].
        ``ood-heavy``: masscart U[1.5, 3], masspole U[0.3, 0.6], length U[0.75, 1.5].
        ``ood-light``: masscart U[0.1, 0.5], masspole U[0.01, 0.05], length U[0.05, 0.25] (a short
        pole falls fast).
    """

    task_splits = ("train", "test", "ood-heavy", "ood-light")
    task_keys = ("gravity", "masscart", "masspole", "length")

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        self._init_task({"gravity": 9.8, "masscart": 1.0, "masspole": 0.1, "length": 0.5})

    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        ranges = SPLIT_RANGES["train" if split == "test" else split]
        return {key: rng.uniform(low, high) for key, (low, high) in ranges.items()}

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        return {
            key: check_number(self, task, key, low, high, low_open=True)
            for key, (low, high) in VALID_RANGES.items()
        }

    def _apply_task(self, task: dict[str, Any]) -> None:
        self.gravity = task["gravity"]
        self.masscart = task["masscart"]
        self.masspole = task["masspole"]
        self.length = task["length"]
        # Derived in CartPoleEnv.__init__ only: recompute them, or the old values stay in use.
        self.total_mass = self.masspole + self.masscart
        self.polemass_length = self.masspole * self.length
