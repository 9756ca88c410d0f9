"""Sinusoid regression as in MAML (Finn et al. 2017, section 5.1).

A task is ``y = amplitude * sin(x - phase)``, amplitude U[0.1, 5.0], phase U[0, pi], x U[-5, 5].
The support set has K points; the query set has separate points of the same curve.

Splits:
    ``train``, ``val``, ``test``: the training distribution (drawn from different seeds streams).
    ``ood-amplitude``: amplitude U[5, 10].
    ``ood-phase``: phase U[pi, 2 pi].
    ``ood-extrapolate``: support x U[-5, 0], query x U[0, 5] (outside the support's range).

Graded shifts (``levels`` = n, default 3), level k = 1..n stepping out from mild to strong:
    ``ood-amplitude-k``: amplitude U[5 + 5 (k-1)/n, 5 + 5 k/n] (together: ``ood-amplitude``).
    ``ood-phase-k``: phase at a circular distance U[(k-1)/n, k/n] * pi/2 from the training range
    [0, pi], on either side (pi + d or 2 pi - d, even odds; together: ``ood-phase``). The phase is
    an angle, so 2 pi - d is as close to the training phases as pi + d: the distance, not the
    phase itself, grades the shift.
    ``ood-extrapolate-k``: support x U[-5, 0], query x U[5 (k-1)/n, 5 k/n] (queries moving away
    from the support's range; together: ``ood-extrapolate``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from metagym.tasks.base import Examples, SupervisedTask, TaskDistribution

ACCEPTED_SHOTS = (5, 10, 20)
#: The kinds of graded shift; split ``ood-<kind>-<k>`` is level k.
SHIFT_KINDS = ("amplitude", "phase", "extrapolate")
DEFAULT_LEVELS = 3
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


def shift_split(kind: str, level: int) -> str:
    """The name of level ``level`` of the graded shift ``kind``: ``ood-<kind>-<level>``."""
    return f"ood-{kind}-{level}"


def graded_ranges(
    kind: str, level: int, levels: int
) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]:
    """(amplitude range, phase range, support x range, query x range) of level ``level`` of
    ``levels``; for ``phase`` the range is of the circular distance d from [0, pi]."""
    lo, hi = (level - 1) / levels, level / levels
    base = _SPLIT_RANGES["test"]
    if kind == "amplitude":
        return (5.0 + 5.0 * lo, 5.0 + 5.0 * hi), base[1], base[2], base[3]
    if kind == "phase":
        return base[0], (lo * math.pi / 2, hi * math.pi / 2), base[2], base[3]
    if kind == "extrapolate":
        return base[0], base[1], (-5.0, 0.0), (5.0 * lo, 5.0 * hi)
    raise ValueError(f"unknown shift {kind!r}; accepted: {', '.join(SHIFT_KINDS)}")


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
        levels: levels of each graded shift (splits ``ood-<kind>-1..levels``, see the module
            docstring; 0: none).

    Attributes:
        shifts: graded split -> (kind, level k), for the levelled splits.
    """

    domain = "sinusoid"
    metric = "mse"
    lower_is_better = True
    input_shape = (1,)
    output_size = 1
    param_keys = ("amplitude", "phase")

    def __init__(self, shots: int = 5, queries: int = 10, levels: int = DEFAULT_LEVELS):
        if isinstance(shots, bool) or not isinstance(shots, int) or shots not in ACCEPTED_SHOTS:
            raise ValueError(f"shots must be one of {ACCEPTED_SHOTS}, got {shots!r}")
        if not isinstance(queries, int) or queries < 1:
            raise ValueError(f"queries must be a positive int, got {queries!r}")
        if isinstance(levels, bool) or not isinstance(levels, int) or not 0 <= levels <= 100:
            raise ValueError(f"levels must be an int between 0 and 100, got {levels!r}")
        self.shots = shots
        self.queries = queries
        self.levels = levels
        self.shifts = {
            shift_split(kind, k): (kind, k) for kind in SHIFT_KINDS for k in range(1, levels + 1)
        }
        self.splits = (*_SPLIT_RANGES, *self.shifts)

    def _sample(self, n: int, split: str, generator: torch.Generator) -> list[SupervisedTask]:
        if split in self.shifts:
            ranges = graded_ranges(*self.shifts[split], self.levels)
        else:
            ranges = _SPLIT_RANGES[split]
        (a_lo, a_hi), (p_lo, p_hi), (sx_lo, sx_hi), (qx_lo, qx_hi) = ranges
        amplitude = _uniform(n, a_lo, a_hi, generator)
        phase = _uniform(n, p_lo, p_hi, generator)
        if self.shifts.get(split, ("",))[0] == "phase":
            # phase is the distance d from [0, pi]: pi + d or 2 pi - d
            above = torch.rand(n, generator=generator) < 0.5
            phase = torch.where(above, math.pi + phase, 2 * math.pi - phase)
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
        return {
            "domain": self.domain,
            "shots": self.shots,
            "queries": self.queries,
            "levels": self.levels,
        }
