"""From the runs' files to :class:`~metagym.report.claims.Evidence`: rows (aggregated over seeds
when there are several), Omniglot's step sweep, per-learner costs, the registry's families, the
shift levels of each split and the references that normalize scores."""

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
from metagym.report.claims import Evidence
from metagym.results import read_results

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


def ci95(values: Sequence[float]) -> float:
    """1.96 standard errors of the mean (0 for fewer than 2 values)."""
    if len(values) < 2:
        return 0.0
    return 1.96 * statistics.stdev(values) / math.sqrt(len(values))


def update_times(run_dir: Path) -> list[float]:
    """Seconds per meta-update of each logged chunk of training (``metrics.csv``)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    rates = [row.get("charts/iterations_per_second") for row in read_metrics(path)]
    return [1.0 / r for r in rates if isinstance(r, (int, float)) and r > 0]


def _learner_costs(folders: Sequence[Path], results: Sequence[dict]) -> dict[str, dict]:
    """Per learner: budget, meta-training wall time, time per meta-update and peak memory,
    pooled over the seeds' folders."""
    config = results[0]["config"]
    out = {}
    for learner, family in config.get("families", {}).items():
        timings = [r["config"]["timings"].get(learner, {}) for r in results]
        memory = [(r["config"].get("memory") or {}).get(learner) or {} for r in results]
        chunks = [t for folder in folders for t in update_times(folder / "runs" / learner)]
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
            "per_update_s": statistics.fmean(chunks) if chunks else None,
            "per_update_ci95": ci95(chunks) if chunks else None,
            "n_chunks": len(chunks),
            "growth_mb": statistics.fmean(growth) if growth else None,
            "peak_mb": max(peak) if peak else None,
            "memory_measure": next((m["measure"] for m in memory if "measure" in m), None),
        }
    return out


def _combined(files: Sequence[Path]) -> dict[str, Any]:
    """The results of one seed, or rows aggregated across seeds (intervals across seeds)."""
    runs = [read_results(f) for f in files]
    if len(runs) == 1:
        return runs[0]
    rows, _ = aggregate_rows(runs)
    return {**runs[0], "rows": rows, "seed": [r["seed"] for r in runs]}


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
    rows, costs, splits = [], [], {}
    for experiment in experiments:
        dirs = seed_dirs.get(experiment.name)
        if not dirs:
            continue
        for variant, folders in variant_folders(dirs).items():
            group = f"{experiment.name}/{variant}" if variant else experiment.name
            results = [read_results(f / "results.json") for f in folders]
            combined = _combined([f / "results.json" for f in folders])
            report_steps = combined["config"].get("report_steps", {})
            extra = {"group": group, "primary": experiment.primary}
            for row in combined["rows"]:
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
                for row in _combined(sweeps)["rows"]:
                    rows.append({**row, **extra, "source": "sweep", "report_steps": None})
            for cost in _learner_costs(folders, results).values():
                costs.append({**cost, "domain": experiment.domain, "group": group})
            splits.setdefault(experiment.domain, []).extend(r["split"] for r in combined["rows"])
    recipes = {}
    for name in covered:
        families: dict[str, list[str]] = {}
        for learner, recipe in domains.get(name).recipes.items():
            families.setdefault(recipe.family, []).append(learner)
        recipes[name] = families
    return Evidence(
        rows=rows,
        costs=costs,
        recipes=recipes,
        shifts={d: shift_levels(s) for d, s in splits.items()},
        references={d: REFERENCES[d] for d in covered if d in REFERENCES},
        domains=tuple(covered),
        kinds={d: KINDS[d] for d in covered if d in KINDS},
    )
