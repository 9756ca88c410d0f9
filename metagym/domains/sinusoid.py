"""Sinusoid regression (MAML, Finn et al. 2017, section 5.1): the regression recipes on
:class:`metagym.tasks.SinusoidTasks`, plus example fits (``examples.json``, ``examples.png``).

    metagym run sinusoid --profile quick --out runs/sinusoid
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metagym.domains import register
from metagym.domains.base import Context, Domain, LearnerRecipe
from metagym.domains.profile import setting
from metagym.domains.regression import (
    REGRESSION_PROFILES,
    RegressionProfile,
    all_splits,
    regression_recipes,
)
from metagym.learners.base import Learner
from metagym.plots.regression import redraw
from metagym.results import write_json_atomic
from metagym.seeding import split_generator
from metagym.tasks.sinusoid import ACCEPTED_SHOTS, SinusoidTasks, sinusoid

#: Splits of the example fits, two tasks each.
EXAMPLE_SPLITS = ("test", "ood-amplitude", "ood-phase", "ood-extrapolate")


@dataclass(frozen=True)
class SinusoidProfile(RegressionProfile):
    """The regression profile with the sinusoid tasks' size."""

    shots: int = setting(5, choices=ACCEPTED_SHOTS)
    """support points K per task"""
    shift_levels: int = setting(0, low=0, high=20)
    """levels of the graded shifts also evaluated (ood-amplitude-1..N, ood-phase-1..N, ood-extrapolate-1..N; 0: none)"""


PROFILES = {
    name: SinusoidProfile(**{f: getattr(p, f) for f in p.__dataclass_fields__})
    for name, p in REGRESSION_PROFILES.items()
}


def make_distribution(context: Context, key: str) -> SinusoidTasks:
    return SinusoidTasks(shots=context.profile.shots, levels=context.profile.shift_levels)


def _example_tasks(distribution: SinusoidTasks, seed: int) -> list[tuple[str, int, Any]]:
    return [
        (split, index, task)
        for split in EXAMPLE_SPLITS
        for index, task in enumerate(
            distribution.sample(2, split, split_generator(seed + 7, split))
        )
    ]


def _grid() -> torch.Tensor:
    return torch.linspace(-5, 5, 200).unsqueeze(1)


def example_fits(context: Context, recipe: LearnerRecipe, learner: Learner) -> dict[str, Any]:
    """The learner's predictions on a grid of x for the example tasks (None where not finite)."""
    grid = _grid().to(learner.device)
    fits = []
    for _, _, task in _example_tasks(context.distribution(), context.seed):
        prediction = learner.adapt(task.to(learner.device))(grid).cpu()
        fits.append([v if math.isfinite(v) else None for v in prediction[:, 0].tolist()])
    return {"fits": fits}


def write_examples(context: Context, out_dir: Path, results: dict, extras: dict) -> None:
    """``examples.json``: the example tasks with every learner's fit."""
    grid = _grid()
    tasks = []
    for i, (split, index, task) in enumerate(_example_tasks(context.distribution(), context.seed)):
        truth = sinusoid(grid, task.params["amplitude"], task.params["phase"])
        tasks.append(
            {
                "split": split,
                "index": index,
                "params": task.params,
                "support_x": task.support.x[:, 0].tolist(),
                "support_y": task.support.y[:, 0].tolist(),
                "grid": grid[:, 0].tolist(),
                "truth": truth[:, 0].tolist(),
                "predictions": {
                    name: extra["fits"][i] for name, extra in extras.items() if "fits" in extra
                },
            }
        )
    write_json_atomic({"tasks": tasks}, out_dir / "examples.json")


DOMAIN = register(
    Domain(
        name="sinusoid",
        summary="sinusoid regression (MAML section 5.1), K = 5, 10 or 20 support points",
        profile_class=SinusoidProfile,
        profiles=PROFILES,
        recipes=regression_recipes(),
        make_distribution=make_distribution,
        default_learners=lambda p: p.default_learners,
        eval_splits=all_splits,
        redraw=redraw,
        after_learner=example_fits,
        after_run=write_examples,
        title=lambda c: "sinusoid results",
        splits="train, val, test (amplitude U[0.1, 5], phase U[0, pi]), ood-amplitude, ood-phase, "
        "ood-extrapolate; with --shift-levels N also ood-<kind>-1..N (graded)",
    )
)
