"""Plots of few-shot classification experiments, drawn only from their results files.

``python -m metagym.plots DIR`` redraws every plot of an Omniglot experiment folder
(``results.json``, ``steps_sweep.json``, ``examples.json``).

The results config may hold ``report_steps`` (``{learner: steps}``: the row of a gradient learner
to show when one number per split is wanted) and ``distribution.shifts`` (``{split: [kind,
level]}``: the OOD splits and their shift levels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metagym.plots.common import interval_line, plt, save_figure
from metagym.results import read_results

__all__ = [
    "plot_accuracy_by_split",
    "plot_accuracy_vs_shift",
    "plot_accuracy_vs_steps",
    "plot_task_grid",
    "redraw",
    "reported_rows",
]


def reported_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per learner and split: the stepless row, or the row at the learner's
    ``report_steps`` (default: its largest step count)."""
    rows = results["rows"]
    report = results.get("config", {}).get("report_steps", {})
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["learner"], row["split"])
        wanted = report.get(row["learner"])
        if row["steps"] is None or row["steps"] == wanted:
            chosen[key] = row
        elif wanted is None and (key not in chosen or row["steps"] > (chosen[key]["steps"] or -1)):
            chosen[key] = row
    return [chosen[k] for k in sorted(chosen, key=lambda k: _order(rows, k))]


def _order(rows: list[dict[str, Any]], key: tuple[str, str]) -> tuple[int, int]:
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    return learners.index(key[0]), splits.index(key[1])


def _label(row: dict[str, Any]) -> str:
    return row["learner"] if row["steps"] is None else f"{row['learner']} ({row['steps']} steps)"


def plot_accuracy_by_split(results: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars: accuracy per split (x) and learner (bars), with 95% intervals."""
    rows = reported_rows(results)
    splits = list(dict.fromkeys(r["split"] for r in rows))
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    width = 0.8 / max(len(learners), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(splits) + 2), 4.2))
    for i, learner in enumerate(learners):
        mine = {r["split"]: r for r in rows if r["learner"] == learner}
        xs = [j + (i - (len(learners) - 1) / 2) * width for j, s in enumerate(splits) if s in mine]
        good = [mine[s] for s in splits if s in mine]
        ax.bar(
            xs,
            [r["mean"] if r["mean"] is not None else 0.0 for r in good],
            width,
            yerr=[r["ci95"] or 0.0 for r in good],
            capsize=2,
            color=f"C{i}",
            label=_label(good[0]),
        )
    ax.set_xticks(range(len(splits)))
    ax.set_xticklabels(splits, rotation=30, ha="right")
    ax.set_ylabel("query accuracy")
    ax.set_ylim(0, 1)
    ax.axhline(
        1.0 / rows[0]["ways"] if rows and "ways" in rows[0] else 0, color="gray", ls=":", lw=1
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_accuracy_vs_shift(
    results: dict[str, Any], path: str | Path, *, reference_split: str = "test"
) -> Path | None:
    """One panel per shift kind: accuracy against shift level (``reference_split`` drawn as the
    unshifted level: shear 0, scale 1), a line per learner."""
    shifts = results.get("config", {}).get("distribution", {}).get("shifts", {})
    if not shifts:
        return None
    unshifted = {"shear": 0.0, "scale": 1.0}
    kinds = list(dict.fromkeys(kind for kind, _ in shifts.values()))
    rows = reported_rows(results)
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.4 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes.flat, kinds, strict=True):
        levels = {s: lv for s, (k, lv) in shifts.items() if k == kind}
        if kind in unshifted:
            levels[reference_split] = unshifted[kind]
        for i, learner in enumerate(learners):
            points = sorted(
                (levels[r["split"]], r)
                for r in rows
                if r["learner"] == learner and r["split"] in levels and r["mean"] is not None
            )
            if not points:
                continue
            interval_line(
                ax,
                [lv for lv, _ in points],
                [r for _, r in points],
                color=f"C{i}",
                label=_label(points[0][1]),
            )
        ax.set_xlabel(f"{kind} level" + (" (1 = unshifted)" if kind == "scale" else ""))
        if kind == "scale":
            ax.invert_xaxis()
        ax.set_ylabel("query accuracy")
        ax.set_title(f"ood-{kind}")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_accuracy_vs_steps(sweep: dict[str, Any], path: str | Path) -> Path | None:
    """Accuracy against test-time gradient steps: a panel per learner, a line per split."""
    rows = [r for r in sweep["rows"] if r["steps"] is not None]
    if not rows:
        return None
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    fig, axes = plt.subplots(1, len(learners), figsize=(4.6 * len(learners), 3.6), squeeze=False)
    for ax, learner in zip(axes.flat, learners, strict=True):
        mine = [r for r in rows if r["learner"] == learner]
        for i, split in enumerate(dict.fromkeys(r["split"] for r in mine)):
            line = sorted(
                (r for r in mine if r["split"] == split and r["mean"] is not None),
                key=lambda r: r["steps"],
            )
            interval_line(
                ax,
                [r["steps"] for r in line],
                line,
                color=f"C{i}",
                label=f"{split} ({line[0]['n_tasks']} tasks)" if line else split,
            )
        ax.set_title(learner)
        ax.set_xlabel("test-time gradient steps")
        ax.set_ylabel("query accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_task_grid(examples: dict[str, Any], path: str | Path) -> Path:
    """One task: the support images (with labels), then each query with every learner's
    prediction (green when right, red when wrong).

    ``examples``: ``{"split", "support_x": [[28x28]...], "support_y", "query_x", "query_y",
    "predictions": {learner: [label per query]}}``.
    """
    support, query = examples["support_x"], examples["query_x"]
    cols = max(len(support), min(len(query), 10))
    query = query[:cols]
    learners = list(examples["predictions"])
    fig, axes = plt.subplots(
        2, cols, figsize=(1.1 * cols, 1.3 * 2 + 0.16 * len(learners)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for j, (image, label) in enumerate(zip(support, examples["support_y"], strict=True)):
        axes[0, j].imshow(image, cmap="gray_r", vmin=0, vmax=1)
        axes[0, j].set_title(f"support {label}", fontsize=7)
    for j, image in enumerate(query):
        ax = axes[1, j]
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        truth = examples["query_y"][j]
        ax.set_title(f"query, true {truth}", fontsize=7)
        for k, learner in enumerate(learners):
            guess = examples["predictions"][learner][j]
            ax.text(
                0.5,
                -0.12 - 0.16 * k,
                f"{learner}: {guess}",
                transform=ax.transAxes,
                ha="center",
                va="top",
                fontsize=5.5,
                color="green" if guess == truth else "red",
            )
    fig.suptitle(
        f"one {examples.get('split', '')} task: support (top) and queries with predictions",
        fontsize=8,
    )
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def redraw(out_dir: str | Path) -> list[Path]:
    """Redraw every plot of an Omniglot experiment folder from its results files."""
    out_dir = Path(out_dir)
    results = read_results(out_dir / "results.json")
    drawn = [plot_accuracy_by_split(results, out_dir / "accuracy_by_split.png")]
    shift = plot_accuracy_vs_shift(results, out_dir / "accuracy_vs_shift.png")
    if shift:
        drawn.append(shift)
    if (out_dir / "steps_sweep.json").exists():
        steps = plot_accuracy_vs_steps(
            read_results(out_dir / "steps_sweep.json"), out_dir / "accuracy_vs_steps.png"
        )
        if steps:
            drawn.append(steps)
    if (out_dir / "examples.json").exists():
        drawn.append(
            plot_task_grid(
                json.loads((out_dir / "examples.json").read_text()), out_dir / "task_grid.png"
            )
        )
    return drawn
