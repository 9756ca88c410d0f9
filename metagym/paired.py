"""Paired differences to the best learner of a run (or of the seeds of one experiment).

    from metagym.paired import paired_table, paired_markdown
    table = paired_table([Path("runs/s0")])                      # one run: paired over its tasks
    table = paired_table([Path("runs/s0"), Path("runs/s1")])     # seeds: paired across seeds
    text = paired_markdown(table)

Every learner of a run is scored on the same evaluation tasks (``runs/<learner>/scores.csv.gz``,
:mod:`metagym.scores`), so "learner minus the best learner" is judged on the per-task differences
(:mod:`metagym.stats`): their interval leaves out the task effect both share. With several seeds
the unit is the seed: the Student-t interval across seeds of the per-seed paired differences.
Each difference also carries the old independent interval (``ci95_unpaired``).

Per split, metric and task group (``group``: ``None`` for all tasks of a split with one group,
``"all"`` and one per group otherwise, as :func:`metagym.scores.summarize` makes rows), each
learner is taken at its reported step count (``config.report_steps`` of ``results.json``; None:
its largest step count, or its stepless row). The best learner is the one with the highest mean
(errors negated: mse, loss and error are lower-is-better) among the non-baseline learners
(``config.families``; the baselines only when every other learner is a baseline or diverged); a
diverged learner is never best, and a cell where every learner diverged has them all as
``diverged`` rows with no best. Seeds (one seed: tasks) pair on the tasks both learners were
scored on; across seeds the interval is never narrower than the seeds' own tasks give (two
seeds that agree by chance would otherwise give a zero-width interval). A folder without
``results.json`` or without any scores file gives ``[]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metagym.results import read_results
from metagym.scores import SCORES_FILE, read_scores
from metagym.stats import Estimate

#: Metrics where lower is better (every other metric: higher is better).
LOWER_IS_BETTER = ("mse", "loss", "error")
#: Verdicts of a difference to the best learner (decided on the oriented difference).
WORSE, INDISTINGUISHABLE, BETTER = "worse", "indistinguishable", "better"


def orientation(metric: str) -> int:
    """+1 where higher is better (accuracy, return, success), -1 for errors (mse, loss, error)."""
    return -1 if metric in LOWER_IS_BETTER else 1


def learner_scores(folder: str | Path, filename: str = SCORES_FILE) -> dict[str, list[dict]]:
    """Learner -> the records of its final learner (``iteration`` None) in
    ``folder/runs/<learner>/<filename>``; learners without that file are absent."""
    out = {}
    for path in sorted(Path(folder).glob(f"runs/*/{filename}")):
        records = [r for r in read_scores(path) if r["iteration"] is None]
        if records:
            out[path.parent.name] = records
    return out


def selections(records: Sequence[dict]) -> list[tuple[str, str, str | None]]:
    """The ``(split, metric, group)`` cells of ``records``, in the order met: ``group`` None for a
    split with at most one task group, else ``"all"`` and each group (sorted)."""
    cells = []
    for split in dict.fromkeys(r["split"] for r in records):
        mine = [r for r in records if r["split"] == split]
        groups = sorted({r["group"] for r in mine if r["group"] is not None})
        for metric in dict.fromkeys(r["metric"] for r in mine):
            names = [None] if len(groups) <= 1 else ["all", *groups]
            cells += [(split, metric, g) for g in names]
    return cells


def in_cell(record: dict, group: str | None) -> bool:
    """Whether ``record`` is one of the tasks of task group ``group`` (None, "all": every task)."""
    return group in (None, "all") or record["group"] == group


def reported_steps(available: Sequence[int | None], wanted: int | None) -> int | None:
    """The reported step count: None for a stepless learner, else ``wanted`` when evaluated,
    else the largest."""
    steps = set(available)
    if None in steps or not steps:
        return None
    return wanted if wanted in steps else max(s for s in steps if s is not None)


def _by_cell(records: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    """``records`` indexed by (split, metric)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        out.setdefault((r["split"], r["metric"]), []).append(r)
    return out


def _cell_scores(
    index: dict[tuple[str, str], list[dict]], cell: tuple[str, str, str | None], wanted: int | None
) -> tuple[int | None, dict[int, float], bool] | None:
    """(steps, task -> score, diverged) of one learner in one cell at its reported steps."""
    split, metric, group = cell
    mine = [r for r in index.get((split, metric), []) if in_cell(r, group)]
    if not mine:
        return None
    steps = reported_steps([r["steps"] for r in mine], wanted)
    chosen = [r for r in mine if r["steps"] == steps]
    diverged = any(r["diverged"] or not math.isfinite(r["score"]) for r in chosen)
    return steps, {r["task"]: r["score"] for r in chosen}, diverged


def _read_run(folder: Path) -> tuple[dict, dict[str, list[dict]]] | None:
    file = folder if folder.is_file() else folder / "results.json"
    if not file.is_file():
        return None
    scores = learner_scores(file.parent)
    return (read_results(file), scores) if scores else None


def _verdict(d: float, h: float) -> str:
    if not math.isfinite(h) or abs(d) <= h:
        return INDISTINGUISHABLE
    return BETTER if d > 0 else WORSE


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _seed_mean(scores: dict[int, float], tasks: Sequence[int]) -> float:
    return sum(scores[t] for t in tasks) / len(tasks)


def _difference(
    mine: Sequence[tuple], best: Sequence[tuple], key: tuple
) -> tuple[Estimate, list[list[int]], str]:
    """``learner - best`` over the tasks both were scored on: per task (one seed), or across
    seeds of the per-seed paired differences (several), never narrower than the seeds' tasks
    give (:meth:`Estimate.variance`'s floor); the shared tasks of each seed; a note.

    A seed where the two share no task compares each one's own tasks, independently (note
    ``"no shared tasks: independent"``)."""
    shared = [sorted(set(m[1]) & set(b[1])) for m, b in zip(mine, best, strict=True)]
    paired = all(shared)
    note = "" if paired else "no shared tasks: independent"
    own = (
        shared if paired else [sorted(x[1]) for x in mine],
        shared if paired else [sorted(x[1]) for x in best],
    )
    tags = ("", "") if paired else ("learner", "best")
    if len(mine) == 1:
        a, b = (
            Estimate.of_units([x[0][1][t] for t in tasks[0]], ("tasks", *key, tag))
            for x, tasks, tag in zip((mine, best), own, tags, strict=True)
        )
        return a - b, shared, note
    a, b = (
        Estimate.of_units(
            [_seed_mean(x[1], t) for x, t in zip(per_seed, tasks, strict=True)],
            ("seeds", *key),
            seed_level=True,
            within={
                (tag, i): [x[1][j] for j in t]
                for i, (x, t) in enumerate(zip(per_seed, tasks, strict=True))
            },
        )
        for per_seed, tasks, tag in zip((mine, best), own, tags, strict=True)
    )
    return a - b, shared, note


def _diverged_row(row: dict) -> dict:
    return {**row, "difference": None, "ci95": None, "ci95_unpaired": None,
            "verdict": "diverged", "verdict_unpaired": "diverged",
            "n_tasks": None, "note": "diverged on some task"}  # fmt: skip


def _cell_rows(cell: tuple, found: dict[str, list[tuple]], families: dict) -> list[dict]:
    """The rows of one (split, metric, group) cell; ``found``: learner -> per seed
    (steps, task -> score, diverged)."""
    sign = orientation(cell[1])
    healthy = [n for n, per_seed in found.items() if not any(x[2] for x in per_seed)]
    candidates = [n for n in healthy if families.get(n) != "baseline"] or healthy
    overall = {
        n: sum(_seed_mean(x[1], sorted(x[1])) for x in found[n]) / len(found[n]) for n in healthy
    }
    best = max(candidates, key=lambda n: sign * overall[n]) if candidates else None
    rows = []
    for name, per_seed in found.items():
        row = {
            "split": cell[0],
            "metric": cell[1],
            "group": cell[2],
            "learner": name,
            "family": families.get(name),
            "steps": per_seed[0][0],
            "mean": overall.get(name),
            "best": best,
            "best_steps": None if best is None else found[best][0][0],
            "n_seeds": len(per_seed),
            "pairing": "tasks" if len(per_seed) == 1 else "seeds",
        }
        if name not in healthy:
            rows.append(_diverged_row(row))
            continue
        d, shared, note = _difference(per_seed, found[best], cell)
        h, u = d.half_width(), d.unpaired
        itself = name == best
        full = all(
            len(t) == len(x[1]) == len(y[1])
            for t, x, y in zip(shared, per_seed, found[best], strict=True)
        )
        if not note and not full:
            note = "paired over the tasks both were scored on"
        rows.append(
            {
                **row,
                "difference": d.mean,
                "ci95": None if itself else _finite(h),
                "ci95_unpaired": None if itself else _finite(u),
                "verdict": "best" if itself else _verdict(sign * d.mean, h),
                "verdict_unpaired": "best" if itself else _verdict(sign * d.mean, u),
                "n_tasks": min(len(t) for t in shared),
                "note": note,
            }
        )
    return rows


def paired_table(folders: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row per (split, metric, group, learner): the learner's mean at its reported steps and
    its difference to the best learner, with the paired and the unpaired 95% half-widths.

    Row fields: ``split, metric, group, learner, family, steps, mean, best, best_steps,
    difference`` (learner - best, in the metric's units), ``ci95`` (paired), ``ci95_unpaired``,
    ``verdict`` / ``verdict_unpaired`` (``worse``, ``indistinguishable`` or ``better`` than the
    best, errors oriented; ``best``; ``diverged``), ``n_tasks`` (shared tasks, fewest over
    seeds), ``n_seeds``, ``pairing`` (``"tasks"`` or ``"seeds"``), ``note``. ``folders``: run
    folders (or their ``results.json``), one per seed of the same experiment. ``[]`` when a
    folder has no results or no per-task scores; learners without scores in every folder are
    left out.
    """
    runs = [_read_run(Path(f)) for f in folders]
    if not runs or any(r is None for r in runs):
        return []
    families = {}
    for results, _ in runs:
        families.update(results["config"].get("families") or {})
    report = runs[0][0]["config"].get("report_steps") or {}
    learners = [n for n in runs[0][1] if all(n in scores for _, scores in runs)]
    cells = list(dict.fromkeys(c for n in learners for c in selections(runs[0][1][n])))
    indexes = [{n: _by_cell(scores[n]) for n in learners} for _, scores in runs]
    table = []
    for cell in cells:
        found = {}
        for name in learners:
            per_seed = [_cell_scores(index[name], cell, report.get(name)) for index in indexes]
            if all(p is not None for p in per_seed):
                found[name] = per_seed
        table += _cell_rows(cell, found, families)
    return table


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def paired_markdown(table: Sequence[dict[str, Any]]) -> str:
    """``### Paired differences to the best learner ...``: one table per split, metric and task
    group; ``""`` for an empty table."""
    if not table:
        return ""
    seeds = table[0]["n_seeds"]
    unit = (
        "paired over tasks"
        if seeds == 1
        else f"across {seeds} seeds of the per-seed paired differences, Student-t"
    )
    lines = [
        f"### Paired differences to the best learner (95% intervals {unit})",
        "",
        "Each learner at its reported steps minus the best learner of the split (highest mean; "
        "errors lower-is-better; baselines only when nothing else ran or the rest diverged), "
        "paired, beside the "
        "independent interval sqrt(h_a² + h_b²). Verdict: worse / indistinguishable / better "
        "than the best, by each rule.",
        "",
    ]
    cells = list(dict.fromkeys((r["split"], r["metric"], r["group"]) for r in table))
    for split, metric, group in cells:
        rows = [r for r in table if (r["split"], r["metric"], r["group"]) == (split, metric, group)]
        title = f"{split}, {metric}" + (f", {group}" if group is not None else "")
        best = rows[0]["best"]
        about = (
            "every learner diverged"
            if best is None
            else f"best: {best} at steps {_fmt(rows[0]['best_steps'])}"
        )
        lines += [
            f"**{title}** ({about})",
            "",
            "| learner | steps | mean | − best | ± paired | ± unpaired | verdict (paired / "
            "unpaired) | tasks |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            verdict = (
                r["verdict"]
                if r["verdict"] == "best"
                else (f"{r['verdict']} / {r['verdict_unpaired']}")
            )
            note = f" ({r['note']})" if r["note"] else ""
            lines.append(
                f"| {r['learner']} | {_fmt(r['steps'])} | {_fmt(r['mean'])} | "
                f"{_fmt(r['difference'])} | {_fmt(r['ci95'], 2)} | {_fmt(r['ci95_unpaired'], 2)} | "
                f"{verdict}{note} | {_fmt(r['n_tasks'])} |"
            )
        lines.append("")
    return "\n".join(lines)
