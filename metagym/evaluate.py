"""The one evaluation routine: adapt a learner to each task of a split and score its queries.

For learners that take gradient steps, every requested step count is scored from one adaptation
run. Tasks go to the learner in chunks of ``learner.eval_batch`` (:meth:`Learner.adapt_many`), so
learners that adapt many tasks in one call (MAML on the vmap backend) do. A task whose score is not finite, whose predictions are not finite (classification: the
argmax of NaN logits would look like class 0), or whose score is beyond the distribution's
divergence bound counts as diverged: its row reports ``diverged`` with the first evaluated step at
which it happened, never a NaN, a crash or a dropped row.

A distribution with several metrics (``metrics = ("success", "return")``: Meta-World) returns a
dict ``{metric: value}`` from ``score`` and gets rows for each metric; one whose tasks fall into
groups (``task_group(task) -> str``: Meta-World's env names) also gets rows per group, with a
``group`` field (``"all"`` on the rows over every task), when a split holds several groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from metagym.learners.base import Learner
from metagym.tasks.base import SupervisedTask, TaskDistribution


def confidence_interval(values: Sequence[float]) -> float:
    """Half-width of the 95% interval of the mean: 1.96 * std / sqrt(n) (0 for n < 2)."""
    n = len(values)
    if n < 2:
        return 0.0
    return 1.96 * float(torch.tensor(values, dtype=torch.float64).std()) / math.sqrt(n)


class _FiniteWatch:
    """A predictor that remembers whether any of its outputs was not finite."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.finite = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.predictor(x)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            self.finite = self.finite and bool(torch.isfinite(out).all())
        return out


def _score(distribution: TaskDistribution, predictor, task) -> float:
    """The task's score; NaN (diverged) when a supervised predictor gave a non-finite output,
    whatever the metric makes of it (the arg-max of NaN logits is class 0, not a failure)."""
    if not isinstance(task, SupervisedTask):
        return distribution.score(predictor, task)
    watched = _FiniteWatch(predictor)
    score = distribution.score(watched, task)
    return score if watched.finite else math.nan


def evaluate(
    learner: Learner,
    distribution: TaskDistribution,
    split: str,
    tasks: Sequence[Any],
    steps: Sequence[int] = (0, 1, 2, 5, 10),
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Score ``learner`` on ``tasks`` (all drawn from ``split``) after each number of ``steps``.

    Returns one row per step count (one row with ``steps: None`` for learners without gradient
    steps) in the results schema: ``domain, learner, split, steps, metric, mean, ci95, n_tasks``
    plus the distribution's own fields (e.g. ``shots``) and ``diverged`` / ``n_diverged`` /
    ``diverged_at_step``.
    """
    distribution.check_split(split)
    if not tasks:
        raise ValueError("evaluate() needs at least one task")
    if any(not isinstance(s, int) or s < 0 for s in steps):
        raise ValueError(f"adaptation steps must be ints >= 0, got {list(steps)}")
    step_list: list[int | None] = sorted(set(steps)) if learner.uses_steps else [None]
    scores: dict[int | None, list[Any]] = {s: [] for s in step_list}
    learner.eval()
    bar = tqdm(
        total=len(tasks), desc=f"eval {learner.name} {split}", disable=not progress, leave=False
    )
    for start in range(0, len(tasks), max(1, learner.eval_batch)):
        chunk = [task.to(learner.device) for task in tasks[start : start + learner.eval_batch]]
        adapted = learner.adapt_many(chunk, [s for s in step_list if s is not None])
        for task, predictors in zip(chunk, adapted, strict=True):
            for s, predictor in predictors.items():
                scores[s].append(_score(distribution, predictor, task))
        bar.update(len(chunk))
    bar.close()
    learner.train()

    metrics = tuple(getattr(distribution, "metrics", None) or (distribution.metric,))
    task_group = getattr(distribution, "task_group", None)
    groups = [task_group(task) for task in tasks] if task_group is not None else []
    selections: list[tuple[dict[str, Any], list[int]]] = [({}, list(range(len(tasks))))]
    if len(set(groups)) > 1:
        selections = [({"group": "all"}, selections[0][1])]
        for name in sorted(set(groups)):
            selections.append(({"group": name}, [i for i, g in enumerate(groups) if g == name]))
    rows = []
    for fields, picked in selections:
        for metric in metrics:
            values = {
                s: [v[metric] if len(metrics) > 1 else v for v in (scores[s][i] for i in picked)]
                for s in step_list
            }
            rows += _rows(learner, distribution, split, step_list, values, metric, fields)
    return rows


def _rows(learner, distribution, split, step_list, scores, metric, fields) -> list[dict[str, Any]]:
    """One row per step count of ``metric``'s ``scores`` (step -> per-task values)."""
    rows = []
    first_diverged = None
    for s in step_list:
        values = scores[s]
        good = [v for v in values if not distribution.diverged(v)]
        n_bad = len(values) - len(good)
        if n_bad and first_diverged is None:
            first_diverged = s
        row = {
            "domain": distribution.domain,
            "learner": learner.name,
            "split": split,
            **distribution.row_fields(),
            **fields,
            "steps": s,
            "metric": metric,
            "mean": None if n_bad else sum(values) / len(values),
            "ci95": None if n_bad else confidence_interval(values),
            "n_tasks": len(values),
            "diverged": bool(n_bad),
            "n_diverged": n_bad,
            "diverged_at_step": first_diverged if n_bad else None,
        }
        if learner.scored_on is not None:
            row["env_steps"] = learner.env_steps(s)
            row["scored_on"] = learner.scored_on
        rows.append(row)
    return rows
