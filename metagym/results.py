"""Results files: ``results.json`` (rows in one schema for every domain) and ``results.md``.

A row is ``{"domain", "learner", "split", "steps", "metric", "mean", "ci95", "n_tasks"}`` plus
the domain's own fields (``shots``, ``ways``) and the divergence fields written by
:func:`metagym.evaluate.evaluate`. ``steps`` is None for learners that adapt without gradient
steps; ``mean`` and ``ci95`` are None (JSON null) for diverged rows.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

SCHEMA_VERSION = 1
REQUIRED_ROW_KEYS = ("domain", "learner", "split", "steps", "metric", "mean", "ci95", "n_tasks")


def default_file_mode() -> int:
    """The mode a plain ``open()`` would give a new file under the current umask (temporary files
    made by ``mkstemp`` are 0600, which would leave results unreadable to the group)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(
    path: str | Path, write: Callable[[BinaryIO], None], *, sync: bool = False
) -> Path:
    """Create ``path`` through a temporary file in its folder that ``write(file)`` fills, then a
    rename (``sync``: the file flushed to disk first, and the folder after the rename, so the new
    file survives a power cut too), so a reader never sees a partial file; the mode is what a
    plain ``open()`` would give."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


def write_json_atomic(data: Any, path: str | Path) -> Path:
    """Write ``data`` as JSON (NaN and infinity refused) through a temporary file and a rename,
    synced: ``run.json``, ``rows.json`` and ``results.json`` are what ``--resume`` trusts."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode()), sync=True)


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object written by :func:`write_json_atomic` (a ValueError naming a damaged
    file: not JSON, or JSON but not an object)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): the file is damaged") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} holds a JSON {type(data).__name__}, not an object: the file is damaged"
        )
    return data


def check_rows(rows: Sequence[dict[str, Any]]) -> None:
    """Raise ValueError if a row misses a schema key or holds a non-finite number."""
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"a results row must be an object, got {row!r:.80}")
        missing = [k for k in REQUIRED_ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"results row {row} misses {missing}")
        for key in ("mean", "ci95"):
            value = row[key]
            if value is not None and not math.isfinite(value):
                raise ValueError(f"results row has non-finite {key}: {row}")


def write_results(
    path: str | Path,
    rows: Sequence[dict[str, Any]],
    *,
    config: dict[str, Any],
    seed: int | list[int],
) -> Path:
    """Write ``results.json`` with the rows, the run's config and its seed (or, for results
    aggregated over seeds, the list of seeds)."""
    check_rows(rows)
    data = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "config": config,
        "rows": list(rows),
    }
    return write_json_atomic(data, path)


def read_results(path: str | Path) -> dict[str, Any]:
    """Read and check a ``results.json``."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path} is not a metagym results file (no list of 'rows')")
    try:
        check_rows(data["rows"])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return data


def format_cell(row: dict[str, Any] | None) -> str:
    """``mean ± ci95``, or ``diverged at step s (k/n tasks)``, or an em dash for no row."""
    if row is None:
        return "—"
    if row.get("diverged"):
        return f"diverged at step {row['diverged_at_step']} ({row['n_diverged']}/{row['n_tasks']} tasks)"
    return f"{row['mean']:.3f} ± {row['ci95']:.3f}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """One table per split (and per metric and ``group`` where rows have several): a line per
    learner, a column per number of adaptation steps.

    Learners that adapt without gradient steps (``steps`` None) fill the "no steps" column and
    show "n/a" under the step counts, which do not apply to them.
    """
    lines: list[str] = []
    tables = list(dict.fromkeys((r["split"], r["metric"], r.get("group")) for r in rows))
    step_counts = sorted({r["steps"] for r in rows if r["steps"] is not None})
    has_stepless = any(r["steps"] is None for r in rows)
    for split, metric, group in tables:
        split_rows = [
            r for r in rows if (r["split"], r["metric"], r.get("group")) == (split, metric, group)
        ]
        n_tasks = max(r["n_tasks"] for r in split_rows)
        n_seeds = max(r.get("n_seeds", 1) for r in split_rows)
        over = (
            f"across {n_seeds} seeds, {n_tasks} tasks in all"
            if n_seeds > 1
            else f"over {n_tasks} tasks"
        )
        title = split if group is None else f"{split}, {group}"
        lines.append(f"### {title} ({metric}, mean ± 95% interval {over})")
        lines.append("")
        header = ["learner"] + (["no steps"] if has_stepless else [])
        header += [f"{s} step{'s' if s != 1 else ''}" for s in step_counts]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for learner in dict.fromkeys(r["learner"] for r in split_rows):
            mine = {r["steps"]: r for r in split_rows if r["learner"] == learner}
            if None in mine:
                cells = [format_cell(mine[None])] + ["n/a"] * len(step_counts)
            else:
                cells = (["—"] if has_stepless else []) + [
                    format_cell(mine.get(s)) for s in step_counts
                ]
            lines.append("| " + " | ".join([learner, *cells]) + " |")
        lines.append("")
    if has_stepless:
        lines.append(
            '"no steps": the learner adapts without gradient steps (a forward pass over the '
            "support set, or no adaptation at all), so the step counts do not apply to it."
        )
        lines.append("")
    return "\n".join(lines)


def write_markdown(path: str | Path, results: dict[str, Any], title: str = "Results") -> Path:
    """Write ``results.md`` from a results dict (as read by :func:`read_results`)."""
    text = f"# {title}\n\nseed {results['seed']}, written {results['created']}\n\n"
    text += markdown_table(results["rows"])
    path = Path(path)
    path.write_text(text)
    return path


def write_report(
    out_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    *,
    config: dict[str, Any],
    seed: int | list[int],
    title: str,
) -> dict[str, Any]:
    """Write ``out_dir/results.json`` and ``out_dir/results.md``; return the results as read back
    (so the tables are drawn from the file, never from memory)."""
    out_dir = Path(out_dir)
    write_results(out_dir / "results.json", rows, config=config, seed=seed)
    results = read_results(out_dir / "results.json")
    write_markdown(out_dir / "results.md", results, title=title)
    return results
