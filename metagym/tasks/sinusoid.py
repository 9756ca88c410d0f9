"""Sinusoid regression as in MAML (Finn et al. 2017, section 5.1).

A task is ``y = amplitude * sin(x - phase)``, amplitude U[0.1, 5.0], phase U[0, pi], x U[-5, 5].
The support set has K points; the query set has separate points of the same curve.

Splits:
    ``train``, ``val``, ``test``: the training distribution (drawn from different seeds streams).
    ``ood-amplitude``: amplitude U[5, 10].
    ``ood-phase``: phase U[pi, 2 pi].
    ``ood-extrapolate``: support x U[-5, 0], query x U[0, 5] (outside the support's range).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from metagym.tasks.base import Examples, SupervisedTask, TaskDistribution

ACCEPTED_SHOTS = (5, 10, 20)
#: An MSE above this is reported as diverged: targets are bounded by |amplitude| <= 10.
DIVERGENCE_MSE = 1e6

# (amplitude range, phase range, support x range, query x range) per split.
_SPLIT_RANGES = {
    "train": ((0.1, 5.0), (0.0, math.pi), (-5.0, 5.0), (-5.0, 5.0)),
    "val": ((0.1, 5.0), (0.0, math.pi), (-5.0, 5.0), (-5.0, 5.0)),
    "test": ((0.1, 5.0), (0.0, math.pi), (-5.0, 5.0), (-5.0, 5.0)),
    "ood-amplitude": ((5.0, 10.0), (0.0, math.pi), (-5.0, 5.0), (-5.0, 5.0)),
    "ood-phase": ((0.1, 5.0), (math.pi, 2 * math.pi), (-5.0, 5.0), (-5.0, 5.0)),
    "ood-extrapolate": ((0.1, 5.0), (0.0, math.pi), (-5.0, 0.0), (0.0, 5.0)),
}


def _uniform(n: int, low: float, high: float, generator: torch.Generator, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(n, *shape, generator=generator)


def sinusoid(x: Tensor, amplitude: float | Tensor, phase: float | Tensor) -> Tensor:
    """``amplitude * sin(x - phase)``, elementwise."""
    return amplitude * torch.sin(x - phase)


class SinusoidTasks(TaskDistribution):
    """K-shot sinusoid regression tasks; inputs and targets have shape ``(n, 1)``.

    Args:
        shots: support points per task (K), one of 5, 10, 20.
        queries: query points per task.
    """

    domain = "sinusoid"
    splits = tuple(_SPLIT_RANGES)
    metric = "mse"
    lower_is_better = True
    input_shape = (1,)
    output_size = 1
    param_keys = ("amplitude", "phase")

    def __init__(self, shots: int = 5, queries: int = 10):
        if isinstance(shots, bool) or not isinstance(shots, int) or shots not in ACCEPTED_SHOTS:
            raise ValueError(f"shots must be one of {ACCEPTED_SHOTS}, got {shots!r}")
        if not isinstance(queries, int) or queries < 1:
            raise ValueError(f"queries must be a positive int, got {queries!r}")
        self.shots = shots
        self.queries = queries

    def _sample(self, n: int, split: str, generator: torch.Generator) -> list[SupervisedTask]:
        (a_lo, a_hi), (p_lo, p_hi), (sx_lo, sx_hi), (qx_lo, qx_hi) = _SPLIT_RANGES[split]
        amplitude = _uniform(n, a_lo, a_hi, generator)
        phase = _uniform(n, p_lo, p_hi, generator)
        support_x = _uniform(n, sx_lo, sx_hi, generator, self.shots, 1)
        query_x = _uniform(n, qx_lo, qx_hi, generator, self.queries, 1)
        a, p = amplitude.view(n, 1, 1), phase.view(n, 1, 1)
        support_y, query_y = sinusoid(support_x, a, p), sinusoid(query_x, a, p)
        return [
            SupervisedTask(
                support=Examples(support_x[i], support_y[i]),
                query=Examples(query_x[i], query_y[i]),
                params={"amplitude": float(amplitude[i]), "phase": float(phase[i])},
            )
            for i in range(n)
        ]

    def score(self, predictor: Callable[[Tensor], Tensor], task: SupervisedTask) -> float:
        """Mean squared error on the query set."""
        with torch.no_grad():
            prediction = predictor(task.query.x)
            return float(torch.mean((prediction - task.query.y) ** 2))

    def diverged(self, score: float) -> bool:
        """Not finite, or an MSE beyond ``DIVERGENCE_MSE`` (outputs far off any sinusoid)."""
        return not math.isfinite(score) or score > DIVERGENCE_MSE

    def row_fields(self) -> dict:
        return {"shots": self.shots}

    def describe(self) -> dict:
        return {"domain": self.domain, "shots": self.shots, "queries": self.queries}
