"""The environment steps a meta-RL learner has collected in meta-training, for return against
environment steps (sample efficiency) in the training curves.

:class:`StepCount` is mixed into a learner: :meth:`count` adds a collection's steps, the
learner's metrics report the total as ``charts/env_steps``, and checkpoints carry it. A checkpoint
written before the count existed resumes with the count unknown (None): no ``charts/env_steps``
is logged rather than a total that misses the steps before the resume.
"""

from __future__ import annotations

from typing import Any

from metagym.rl.sampler import Episodes

__all__ = ["StepCount"]


class StepCount:
    """Mixin: ``env_steps_seen``, the environment steps collected in meta-training so far."""

    env_steps_seen: int | None = 0

    def count(self, episodes: Episodes) -> None:
        if self.env_steps_seen is not None:
            self.env_steps_seen += episodes.num_steps

    def step_metrics(self) -> dict[str, float]:
        """``{"charts/env_steps": total}``, or nothing when the total is unknown."""
        if self.env_steps_seen is None:
            return {}
        return {"charts/env_steps": float(self.env_steps_seen)}

    def step_state(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps_seen}

    def load_step_state(self, state: dict[str, Any]) -> None:
        self.env_steps_seen = state.get("env_steps")
