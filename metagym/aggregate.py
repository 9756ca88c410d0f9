"""Aggregate the results of the same experiment run with several seeds.

    metagym run sinusoid --seed 0 --out runs/s0   # ... and --seed 1, --seed 2
    metagym aggregate runs/s0 runs/s1 runs/s2 --out runs/seeds

A single run's 95% interval is over tasks: it says nothing of how much the result depends on the
training seed. This module takes one ``results.json`` per seed and writes, into ``--out``,
``results.json`` / ``results.md`` in the same schema, where each row's ``mean`` is the mean over
seeds of the per-seed means and ``ci95`` the 95% Student-t interval across seeds
(``t(0.975, n-1) * std / sqrt(n)``, n = number of seeds; never narrower than the seeds' own
task-level intervals give, :func:`across_seeds_ci95`), and redraws the domain's plots from it.
Rows also carry ``n_seeds``, ``seeds`` and ``seed_means``; ``n_tasks`` counts the tasks of all
seeds. A row that diverged in any seed stays diverged.

Where the runs hold per-task scores (``runs/<learner>/scores.csv.gz``), ``results.md`` ends with
each learner's difference to the best learner of each split, paired across seeds (the Student-t
interval of the per-seed paired differences) beside the independent interval, and
``paired.json`` holds those rows (:func:`metagym.paired.paired_table`).
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metagym.paired import paired_markdown, paired_table
from metagym.results import read_results, write_json_atomic, write_report
from metagym.run_folder import RUN_FILE, differences
from metagym.stats import Z975

#: Fields of a row that are measured values of one run (the rest identify the row).
VALUE_FIELDS = ("mean", "ci95", "n_tasks", "diverged", "n_diverged", "diverged_at_step")

# t(0.975, df) for df = 1..30; beyond, a Cornish-Fisher expansion around 1.96 (error < 1e-3).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (``df >= 1``)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def across_seeds_ci95(means: Sequence[float], task_ci95: Sequence[float]) -> float:
    """The 95% half-width across seeds of the mean of per-seed ``means`` (>= 2):
    ``t(0.975, n-1) * sqrt(max(s^2 / n, sum(se_i^2) / n^2))``, ``se_i = task_ci95_i / 1.96`` (the
    seed's own task-level standard error). The floor keeps seeds that agree by chance (two equal
    means: s = 0) from giving a zero-width interval, as :meth:`metagym.stats.Estimate.variance`
    does where per-task scores are known."""
    n = len(means)
    spread = statistics.variance(means) / n
    floor = math.fsum((h / Z975) ** 2 for h in task_ci95) / n**2
    return t_quantile_975(n - 1) * math.sqrt(max(spread, floor))


def row_key(row: dict[str, Any]) -> tuple:
    """What identifies a row across runs: every field but the measured values."""
    return tuple(sorted((k, repr(v)) for k, v in row.items() if k not in VALUE_FIELDS))


def results_path(path: str | Path) -> Path:
    """``path`` itself if it is a file, else ``path/results.json``; an error if neither exists."""
    path = Path(path)
    file = path if path.is_file() else path / "results.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"no results.json at {path} (give a run folder or its results.json)"
        )
    return file


def aggregate_rows(
    runs: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows over seeds from the results dicts of several runs (see the module docstring).

    Returns (rows present in every run, aggregated; rows missing from some run, as found in the
    first run that has them).
    """
    if len(runs) < 2:
        raise ValueError(f"aggregating needs the results of at least 2 seeds, got {len(runs)}")
    seeds = [run["seed"] for run in runs]
    if len(set(map(repr, seeds))) != len(seeds):
        raise ValueError(f"the runs must have different seeds (the same run twice?), got {seeds}")
    domains = {row["domain"] for run in runs for row in run["rows"]}
    if len(domains) > 1:
        raise ValueError(f"the runs mix domains {sorted(domains)}; aggregate one experiment")
    by_run = [{row_key(row): row for row in run["rows"]} for run in runs]
    order = list(dict.fromkeys(key for rows in by_run for key in rows))
    rows, missing = [], []
    for key in order:
        found = [rows_of_run.get(key) for rows_of_run in by_run]
        present = [row for row in found if row is not None]
        if len(present) < len(runs):
            missing.append(present[0])
            continue
        first = present[0]
        out = {k: v for k, v in first.items() if k not in VALUE_FIELDS}
        out["n_tasks"] = sum(row["n_tasks"] for row in present)
        out["n_seeds"] = len(present)
        out["seeds"] = seeds
        diverged = [row for row in present if row.get("diverged") or row["mean"] is None]
        if diverged:
            steps = [row.get("diverged_at_step") for row in diverged]
            known = [s for s in steps if s is not None]
            out.update(
                mean=None,
                ci95=None,
                diverged=True,
                n_diverged=sum(row.get("n_diverged") or 0 for row in diverged),
                diverged_at_step=min(known) if known else None,
                n_diverged_seeds=len(diverged),
                seed_means=[row["mean"] for row in present],
            )
        else:
            means = [row["mean"] for row in present]
            out.update(
                mean=statistics.fmean(means),
                ci95=across_seeds_ci95(means, [row.get("ci95") or 0.0 for row in present]),
                diverged=False,
                n_diverged=0,
                diverged_at_step=None,
                seed_means=means,
            )
        rows.append(out)
    if not rows:
        raise ValueError("the runs have no row in common (different learners, splits or steps?)")
    return rows, missing


#: Config entries that define a run's results apart from its seed (others: timings, jobs, ...).
DEFINING = ("domain", "variant", "profile", "distribution")


def check_same_settings(runs: Sequence[dict[str, Any]], files: Sequence[Path]) -> None:
    """Refuse runs whose settings differ in anything but the seed, naming the differences."""
    first = {k: runs[0].get("config", {}).get(k) for k in DEFINING}
    for run, file in zip(runs[1:], files[1:], strict=True):
        other = {k: run.get("config", {}).get(k) for k in DEFINING}
        changed = differences(first, other)
        if changed:
            raise ValueError(
                f"{file} was run with other settings than {files[0]} ({'; '.join(changed[:6])}); "
                "aggregate runs that differ only in their seed"
            )


def aggregate(paths: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Aggregate the runs at ``paths`` into ``out_dir/results.json`` and ``results.md``; return
    the results as written (``main`` also redraws the plots)."""
    files = [results_path(p) for p in paths]
    target = Path(out_dir).resolve()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; give a folder (it is created)")
    for file in files:
        if file.parent.resolve() == target:
            raise ValueError(f"--out {out_dir} is one of the runs; aggregate into another folder")
    if (target / RUN_FILE).is_file() or any(target.glob(f"*/{RUN_FILE}")):
        raise ValueError(
            f"--out {out_dir} holds a run (its {RUN_FILE}); aggregate into another folder"
        )
    runs = [read_results(f) for f in files]
    check_same_settings(runs, files)
    rows, missing = aggregate_rows(runs)
    seeds = rows[0]["seeds"]
    if missing:
        learners = sorted({str(row["learner"]) for row in missing})
        print(
            f"left out (not in every run): {len(missing)} rows of {', '.join(learners)}",
            file=sys.stderr,
        )
    config = {
        **runs[0].get("config", {}),
        "aggregate": {
            "runs": [str(f) for f in files],
            "seeds": seeds,
            "interval": "95% Student-t interval across seeds of the per-seed means",
        },
    }
    domain = rows[0]["domain"]
    results = write_report(
        out_dir,
        rows,
        config=config,
        seed=seeds,
        title=f"{domain} results over {len(seeds)} seeds (intervals across seeds)",
    )
    write_paired(out_dir, [f.parent for f in files], seeds)
    return results


#: What ``paired.json`` and the paired section say when the runs hold no per-task scores.
NO_SCORES = (
    "No paired differences: the runs hold no per-task scores (runs/<learner>/scores.csv.gz; run "
    "folders made before them), so only the intervals across seeds above apply."
)


def write_paired(out_dir: str | Path, folders: Sequence[Path], seeds: Sequence[Any]) -> Path:
    """``out_dir/paired.json`` (``{"seeds", "interval", "rows"}``, rows of
    :func:`~metagym.paired.paired_table` over ``folders``, one per seed) and its section at the
    end of ``out_dir/results.md``; returns the json path."""
    table = paired_table(folders)
    interval = (
        "95% Student-t interval across seeds of the per-seed paired differences to the best "
        "learner (ci95), and the independent rule sqrt(h_a^2 + h_b^2) of the intervals across "
        "seeds (ci95_unpaired)"
    )
    path = write_json_atomic(
        {"seeds": list(seeds), "interval": interval if table else NO_SCORES, "rows": table},
        Path(out_dir) / "paired.json",
    )
    markdown = Path(out_dir) / "results.md"
    text = markdown.read_text().rstrip("\n")
    section = paired_markdown(table) or f"### Paired differences to the best learner\n\n{NO_SCORES}"
    markdown.write_text(f"{text}\n\n{section.rstrip()}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m metagym.aggregate``: the same as ``metagym aggregate``."""
    from metagym.cli import main as cli

    return cli(["aggregate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
