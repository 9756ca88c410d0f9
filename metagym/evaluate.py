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

Every task's score is also a record (:mod:`metagym.scores`); the rows are the records' summary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from metagym.learners.base import Learner
from metagym.scores import confidence_interval, summarize
from metagym.tasks.base import SupervisedTask, TaskDistribution

__all__ = ["confidence_interval", "evaluate", "task_records"]


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


def task_records(
    learner: Learner,
    distribution: TaskDistribution,
    split: str,
    tasks: Sequence[Any],
    steps: Sequence[int] = (0, 1, 2, 5, 10),
    *,
    first_task: int = 0,
    iteration: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Score ``learner`` on each of ``tasks`` (all of ``split``; ``tasks[0]`` is task
    ``first_task`` of the split's evaluation stream) after each number of ``steps``: one record
    per task, step count and metric (:mod:`metagym.scores`); ``iteration``: the learner's
    meta-updates, written into the records."""
    distribution.check_split(split)
    if not tasks:
        raise ValueError("evaluate() needs at least one task")
    if any(not isinstance(s, int) or s < 0 for s in steps):
        raise ValueError(f"adaptation steps must be ints >= 0, got {list(steps)}")
    step_list: list[int | None] = sorted(set(steps)) if learner.uses_steps else [None]
    metrics = tuple(getattr(distribution, "metrics", None) or (distribution.metric,))
    task_group = getattr(distribution, "task_group", None)
    records: list[dict[str, Any]] = []
    learner.eval()
    bar = tqdm(
        total=len(tasks), desc=f"eval {learner.name} {split}", disable=not progress, leave=False
    )
    for start in range(0, len(tasks), max(1, learner.eval_batch)):
        chunk = [task.to(learner.device) for task in tasks[start : start + learner.eval_batch]]
        adapted = learner.adapt_many(chunk, [s for s in step_list if s is not None])
        for offset, (task, predictors) in enumerate(zip(chunk, adapted, strict=True)):
            group = task_group(task) if task_group is not None else None
            params = getattr(task, "params", None)
            for s in step_list:
                score = _score(distribution, predictors[s], task)
                for metric in metrics:
                    value = float(score[metric] if len(metrics) > 1 else score)
                    records.append(
                        {
                            "learner": learner.name,
                            "split": split,
                            "task": first_task + start + offset,
                            "steps": s,
                            "metric": metric,
                            "score": value,
                            "diverged": bool(distribution.diverged(value)),
                            "group": group,
                            "env_steps": learner.env_steps(s)
                            if learner.scored_on is not None
                            else None,
                            "iteration": iteration,
                            "params": params,
                        }
                    )
        bar.update(len(chunk))
    bar.close()
    learner.train()
    return records


def summary_rows(
    learner: Learner, distribution: TaskDistribution, records: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The results rows of one learner's ``records`` (:func:`metagym.scores.summarize`) with the
    fields that identify them: ``domain, learner, split``, the distribution's row fields,
    ``group`` where there is one, ``steps, metric``, the measured fields, and for RL learners
    ``env_steps`` and ``scored_on``."""
    rows = []
    for summary in summarize(records):
        group = {"group": summary["group"]} if "group" in summary else {}
        row = {
            "domain": distribution.domain,
            "learner": learner.name,
            "split": summary["split"],
            **distribution.row_fields(),
            **group,
            **{k: v for k, v in summary.items() if k not in ("split", "group")},
        }
        if learner.scored_on is not None:
            row["env_steps"] = learner.env_steps(summary["steps"])
            row["scored_on"] = learner.scored_on
        rows.append(row)
    return rows


def evaluate(
    learner: Learner,
    distribution: TaskDistribution,
    split: str,
    tasks: Sequence[Any],
    steps: Sequence[int] = (0, 1, 2, 5, 10),
    *,
    progress: bool = True,
    records: list[dict[str, Any]] | None = None,
    first_task: int = 0,
) -> list[dict[str, Any]]:
    """Score ``learner`` on ``tasks`` (all drawn from ``split``) after each number of ``steps``.

    Returns one row per step count (one row with ``steps: None`` for learners without gradient
    steps) in the results schema: ``domain, learner, split, steps, metric, mean, ci95, n_tasks``
    plus the distribution's own fields (e.g. ``shots``) and ``diverged`` / ``n_diverged`` /
    ``diverged_at_step``. With ``records`` (a list), the per-task records are appended to it
    (``first_task``: the stream index of ``tasks[0]``).
    """
    mine = task_records(
        learner, distribution, split, tasks, steps, first_task=first_task, progress=progress
    )
    if records is not None:
        records.extend(mine)
    return summary_rows(learner, distribution, mine)
