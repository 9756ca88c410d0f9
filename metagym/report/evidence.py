"""From the runs' files to :class:`~metagym.report.comparisons.Evidence`: rows (aggregated over seeds
when there are several), Omniglot's step sweep, per-learner costs and training curves, the
registry's families, the shift levels of each split and the references that normalize scores.

Each row also gets its sampling units, so that the claims' differences pair where rows share
them (:mod:`metagym.stats`):

- **One seed**: the row's per-task scores in task order (``runs/<learner>/scores.csv.gz``; the
  step sweep's ``sweep_scores.csv.gz``) under the key (run, seed, split, task group, tasks): rows
  with that key are on the same tasks (the first n of the split's evaluation stream), whatever
  their learner or step count, so their difference is the per-task paired difference.
- **Several seeds**: the unit is the seed: the row's per-seed means under the key (seeds, run),
  seed-level (Student-t, n_seeds - 1 degrees of freedom). A difference of two such rows is the
  mean across seeds of the per-seed differences, with the Student-t interval across seeds of
  those differences: each per-seed difference already holds its tasks' noise, so the seed is the
  unit of replication and nothing is gained by resampling tasks, while a bootstrap over 2-5
  seeds under-covers (the argument of :mod:`metagym.stats`). The per-seed means come from each
  seed's ``results.json``, so this needs no scores files.
- A row without per-task scores (a run folder made before ``scores.csv.gz``, or records that do
  not match the row) keeps its interval and is independent of every other row (the old rule);
  :attr:`Evidence.notes` says which.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metagym import domains
from metagym.aggregate import aggregate_rows
from metagym.metrics_log import read_metrics
from metagym.paired import in_cell, learner_scores
from metagym.report.comparisons import CHUNKS, Evidence, half_width, seed_key, task_key
from metagym.results import read_results
from metagym.scores import SCORES_FILE
from metagym.stats import Estimate

#: The references that normalize each domain's scores (claim 2, "learned" checks, claim 5).
REFERENCES: dict[str, dict[str, dict[str, Any]]] = {
    "sinusoid": {
        "trivial": {"learner": "pretrain", "steps": 0, "label": "pretrain before fine-tuning"},
        "oracle": {"learner": "oracle", "label": "oracle (told amplitude and phase)"},
    },
    "omniglot": {
        "trivial": {"value": 0.2, "label": "chance (1 / 5 ways)"},
        "oracle": {"value": 1.0, "label": "perfect accuracy"},
    },
    "rl": {
        "trivial": {"learner": "random", "label": "random actions"},
        "oracle": {"learner": "oracle", "label": "PPO told the task (oracle)"},
    },
}
KINDS = {"sinusoid": "regression", "omniglot": "classification", "rl": "reinforcement learning"}
_GRADED = re.compile(r"^ood-(?P<kind>[a-z]+)-(?P<level>\d+(\.\d+)?)$")
#: Omniglot's scale levels are shrink factors: the smaller, the stronger the shift.
STRONGER_WHEN_SMALLER = ("scale",)


def shift_levels(splits: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Shifted split -> (kind, rank 1..n from mild to strong).

    ``ood-<kind>-<number>`` splits are graded (ranked by the number; for ``scale`` the smaller
    the stronger); a plain ``ood-<name>`` is one level of its own kind, unless graded levels of
    that kind exist (sinusoid's ``ood-phase`` is the union of ``ood-phase-1..n``).
    """
    graded: dict[str, list[tuple[float, str]]] = {}
    plain = []
    for split in dict.fromkeys(splits):
        match = _GRADED.match(split)
        if match:
            graded.setdefault(match["kind"], []).append((float(match["level"]), split))
        elif split.startswith("ood-"):
            plain.append(split)
    out: dict[str, tuple[str, int]] = {}
    for kind, levels in graded.items():
        levels.sort(reverse=kind in STRONGER_WHEN_SMALLER)
        for rank, (_, split) in enumerate(levels, start=1):
            out[split] = (kind, rank)
    for split in plain:
        kind = split.removeprefix("ood-")
        if kind not in graded:
            out[split] = (kind, 1)
    return out


def update_times(run_dir: Path) -> list[float]:
    """Seconds per meta-update of each logged chunk of training (``metrics.csv``)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    rates = [row.get("charts/iterations_per_second") for row in read_metrics(path)]
    return [1.0 / r for r in rates if isinstance(r, (int, float)) and r > 0]


#: The query loss on the training meta-batches: the MAML family's, then the others'.
LOSS_COLUMNS = ("losses/query_after_adaptation", "losses/query")


def training_curve(run_dir: Path) -> dict[str, Any] | None:
    """``{"loss_column", "seconds", "loss"}`` of ``run_dir/metrics.csv``: cumulative
    meta-training seconds (each chunk's meta-updates / its iterations per second) and the query
    loss at each logged point; ``loss_column`` None when no column of :data:`LOSS_COLUMNS` is
    logged; None without the file."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    rows = read_metrics(path)
    column = next((c for c in LOSS_COLUMNS if any(c in r for r in rows)), None)
    seconds, loss, total, previous = [], [], 0.0, 0.0
    for row in rows:
        rate, iteration = row.get("charts/iterations_per_second"), row.get("iteration")
        if iteration is None or not rate or rate <= 0:
            continue
        total += (iteration - previous) / rate
        previous = iteration
        if column is not None and column in row:
            seconds.append(total)
            loss.append(row[column])
    return {"loss_column": column if loss else None, "seconds": seconds, "loss": loss}


def _per_update(folders: Sequence[Path], group: str, learner: str) -> dict[str, Any]:
    """Seconds per meta-update: per chunk (one seed, or a seed without chunks) or per seed."""
    per_seed = [update_times(folder / "runs" / learner) for folder in folders]
    chunks = [t for times in per_seed for t in times]
    if not chunks:
        return {"per_update_s": None, "per_update_ci95": None, "n_chunks": 0}
    if len(folders) > 1 and all(per_seed):
        units, key, seed_level = [statistics.fmean(t) for t in per_seed], seed_key(group), True
    else:
        units, key, seed_level = chunks, (CHUNKS, group, learner), False
    est = Estimate.of_units(units, key, seed_level=seed_level)
    return {
        "per_update_s": est.mean,
        "per_update_ci95": half_width(est),
        "n_chunks": len(chunks),
        "per_update_units": units,
        "per_update_key": key,
        "per_update_seed_level": seed_level,
    }


def _learner_costs(folders: Sequence[Path], results: Sequence[dict], group: str) -> dict[str, dict]:
    """Per learner: budget, meta-training wall time, time per meta-update and peak memory,
    over the seeds' folders."""
    config = results[0]["config"]
    out = {}
    for learner, family in config.get("families", {}).items():
        timings = [r["config"]["timings"].get(learner, {}) for r in results]
        memory = [(r["config"].get("memory") or {}).get(learner) or {} for r in results]
        train_s = [t["train_s"] for t in timings if "train_s" in t]
        growth = [m["growth_mb"] for m in memory if "growth_mb" in m]
        peak = [m["peak_mb"] for m in memory if "peak_mb" in m]
        out[learner] = {
            "learner": learner,
            "family": family,
            "iterations": config.get("iterations", {}).get(learner),
            "meta_batch": config.get("meta_batch", {}).get(learner),
            "train_s": statistics.fmean(train_s) if train_s else None,
            "eval_s": statistics.fmean(t["eval_s"] for t in timings if "eval_s" in t)
            if any("eval_s" in t for t in timings)
            else None,
            **_per_update(folders, group, learner),
            "growth_mb": statistics.fmean(growth) if growth else None,
            "peak_mb": max(peak) if peak else None,
            "memory_measure": next((m["measure"] for m in memory if "measure" in m), None),
        }
    return out


def _combined(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of one seed, or rows aggregated across seeds (with ``seed_means``)."""
    return list(runs[0]["rows"]) if len(runs) == 1 else aggregate_rows(runs)[0]


def _index(records: Sequence[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in records:
        out.setdefault((r["split"], r["steps"], r["metric"]), []).append(r)
    return out


def task_units(
    records: dict[tuple, list[dict]], row: dict[str, Any]
) -> tuple[list[int], list[float]] | None:
    """The tasks and scores (in task order) behind ``row`` from its learner's records indexed by
    (split, steps, metric); None when they do not make the row (another count or mean: records
    of another scoring) or it diverged."""
    if row.get("diverged") or row.get("mean") is None:
        return None
    chosen = sorted(
        (r for r in records.get((row["split"], row["steps"], row["metric"]), [])
         if in_cell(r, row.get("group"))),
        key=lambda r: r["task"],
    )  # fmt: skip
    tasks = [r["task"] for r in chosen]
    values = [r["score"] for r in chosen]
    if len(tasks) != row["n_tasks"] or len(set(tasks)) != len(tasks) or not tasks:
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    if abs(statistics.fmean(values) - row["mean"]) > 1e-9 * max(1.0, abs(row["mean"])):
        return None
    return tasks, values


def seed_tasks(
    row: dict[str, Any],
    group: str,
    seeds: Sequence[Any],
    per_seed: Sequence[dict[str, dict[tuple, list[dict]]]],
) -> list | None:
    """Per seed, the key and scores of the tasks behind an aggregated ``row`` (its seed means),
    as ``[(task key, scores), ...]``: the floor of its variance across seeds
    (:meth:`metagym.stats.Estimate.variance`); None when a seed has no matching records."""
    n = row["n_tasks"] // len(per_seed)
    tg = None if row.get("group") in (None, "all") else row.get("group")
    out = []
    for seed, records, mean in zip(seeds, per_seed, row["seed_means"], strict=True):
        found = task_units(records.get(row["learner"], {}), {**row, "mean": mean, "n_tasks": n})
        if found is None:
            return None
        tasks, values = found
        out.append((task_key(group, seed, row["split"], tg, tasks), values))
    return out


def with_units(
    rows: Sequence[dict[str, Any]],
    group: str,
    folders: Sequence[Path],
    seeds: Sequence[Any],
    filename: str = SCORES_FILE,
) -> tuple[list[dict[str, Any]], list[str]]:
    """``rows`` (of run ``group``, one per seed in ``folders``) with their units (see the module
    docstring) and the row's own task group moved to ``task_group``; and the learners whose
    measured rows got none (no or mismatched per-task scores)."""
    out, missing = [], []
    if len(folders) > 1:
        per_seed = [{n: _index(r) for n, r in learner_scores(f, filename).items()} for f in folders]
        for row in rows:
            units = row.get("seed_means") if not row.get("diverged") else None
            extra = {"units": units, "unit_key": seed_key(group), "seed_level": True}
            if units:
                extra["within"] = seed_tasks(row, group, seeds, per_seed)
            out.append({**row, "task_group": row.get("group"), **(extra if units else {})})
        return out, missing
    records = {n: _index(r) for n, r in learner_scores(folders[0], filename).items()}
    for row in rows:
        found = task_units(records.get(row["learner"], {}), row)
        extra = {}
        task_group = row.get("group")
        if found is not None:
            tasks, values = found
            tg = None if task_group in (None, "all") else task_group
            extra = {
                "units": values,
                "unit_key": task_key(group, seeds[0], row["split"], tg, tasks),
            }
        elif not row.get("diverged") and row.get("mean") is not None:
            missing.append(row["learner"])
        out.append({**row, "task_group": task_group, **extra})
    return out, list(dict.fromkeys(missing))


def _note(group: str, missing: Sequence[str], filename: str) -> str:
    return (
        f"{group}: no per-task scores ({filename}) for {', '.join(missing)} (a run folder made "
        "before per-task scores, or records that do not match the rows): their comparisons use "
        "the independent rule"
    )


def variant_folders(seed_dirs: Sequence[Path]) -> dict[str, list[Path]]:
    """Variant subfolder ('' for one variant) -> its folder in each seed's run."""
    first = seed_dirs[0]
    if (first / "results.json").is_file():
        return {"": list(seed_dirs)}
    names = sorted(p.parent.name for p in first.glob("*/results.json"))
    return {name: [d / name for d in seed_dirs] for name in names}


def gather(
    experiments: Sequence[Any], seed_dirs: dict[str, list[Path]], covered: Sequence[str]
) -> Evidence:
    """The evidence of the report's experiments; ``seed_dirs``: experiment name -> the runner's
    output folder of each seed; ``covered``: the domains the report covers."""
    rows, costs, training, notes, splits = [], [], [], [], {}
    for experiment in experiments:
        dirs = seed_dirs.get(experiment.name)
        if not dirs:
            continue
        for variant, folders in variant_folders(dirs).items():
            group = f"{experiment.name}/{variant}" if variant else experiment.name
            results = [read_results(f / "results.json") for f in folders]
            seeds = [r["seed"] for r in results]
            report_steps = results[0]["config"].get("report_steps", {})
            extra = {"group": group, "primary": experiment.primary}
            main, missing = with_units(_combined(results), group, folders, seeds)
            if missing:
                notes.append(_note(group, missing, SCORES_FILE))
            for row in main:
                rows.append(
                    {
                        **row,
                        **extra,
                        "source": "main",
                        "report_steps": report_steps.get(row["learner"]),
                    }
                )
            sweeps = [f / "steps_sweep.json" for f in folders]
            if all(p.is_file() for p in sweeps):
                sweep_file = f"sweep_{SCORES_FILE}"
                sweep_rows = _combined([read_results(p) for p in sweeps])
                sweep, missing = with_units(sweep_rows, group, folders, seeds, sweep_file)
                if missing:
                    notes.append(_note(f"{group} (step sweep)", missing, sweep_file))
                rows += [{**r, **extra, "source": "sweep", "report_steps": None} for r in sweep]
            for cost in _learner_costs(folders, results, group).values():
                costs.append({**cost, "domain": experiment.domain, "group": group})
            for learner, family in results[0]["config"].get("families", {}).items():
                for index, folder in enumerate(folders):
                    curve = training_curve(folder / "runs" / learner)
                    if curve is not None:
                        training.append(
                            {"domain": experiment.domain, "group": group, "learner": learner,
                             "family": family, "seed": index, **curve}
                        )  # fmt: skip
            splits.setdefault(experiment.domain, []).extend(r["split"] for r in main)
    recipes, sequence_models = {}, {}
    for name in covered:
        families: dict[str, list[str]] = {}
        for learner, recipe in domains.get(name).recipes.items():
            families.setdefault(recipe.family, []).append(learner)
        recipes[name] = families
        sequence_models[name] = {
            learner: recipe.sequence_model
            for learner, recipe in domains.get(name).recipes.items()
            if recipe.sequence_model
        }
    return Evidence(
        rows=rows,
        costs=costs,
        training=training,
        notes=notes,
        recipes=recipes,
        sequence_models=sequence_models,
        shifts={d: shift_levels(s) for d, s in splits.items()},
        references={d: REFERENCES[d] for d in covered if d in REFERENCES},
        domains=tuple(covered),
        kinds={d: KINDS[d] for d in covered if d in KINDS},
    )
