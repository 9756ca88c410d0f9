"""A learner's score against meta-training time, from its kept checkpoints (``curve.json``,
written by ``metagym evaluate RUN --learners NAME --checkpoints``), and every RL learner's
score against the environment steps of its meta-training (``sample_efficiency.png``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metagym.plots.common import interval_line, panel_grid, save_figure, shared_legend


def plot_curve(curve: dict[str, Any], path: str | Path) -> Path:
    """One panel per split: the mean score (95% interval) after each step count against the
    meta-training seconds of the checkpoint (its iteration when no time was logged)."""
    points = [p for p in curve["points"] if "group" not in p and not p["diverged"]]
    splits = list(dict.fromkeys(p["split"] for p in points))
    fig, axes = panel_grid(max(1, len(splits)), 4.5, 3.2)
    timed = all(p["seconds"] is not None for p in points)
    for ax, split in zip(axes.flat, splits, strict=False):
        mine = [p for p in points if p["split"] == split]
        for steps in dict.fromkeys(p["steps"] for p in mine):
            line = [p for p in mine if p["steps"] == steps]
            xs = [p["seconds"] if timed else p["iteration"] for p in line]
            label = "no steps" if steps is None else f"{steps} step{'s' * (steps != 1)}"
            interval_line(ax, xs, line, label=label)
        ax.set_title(split)
        ax.set_xlabel("meta-training seconds" if timed else "meta-updates")
        ax.set_ylabel(mine[0]["metric"] if mine else "")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{curve['learner']}: score against meta-training time (kept checkpoints)")
    shared_legend(fig, axes, 6, 0.12)
    return save_figure(fig, path)


def curve_steps(curve: dict[str, Any], points: list[dict[str, Any]]) -> Any:
    """The step count a learner's curve is drawn at: its recipe's ``report_steps``, else its
    largest step count (``None``: a stepless learner)."""
    counts = {p["steps"] for p in points}
    if curve.get("report_steps") in counts:
        return curve["report_steps"]
    numbered = [c for c in counts if c is not None]
    return max(numbered) if numbered else None


def plot_sample_efficiency(run: str | Path) -> Path | None:
    """``RUN/sample_efficiency.png``: for each split, every learner's score (at its
    :func:`curve_steps`) against the environment steps of meta-training behind each kept
    checkpoint, from the learners' ``curve.json``; None when no curve has environment steps."""
    run = Path(run)
    curves = []
    for path in sorted(run.glob("runs/*/curve.json")):
        curve = json.loads(path.read_text())
        points = [
            p
            for p in curve["points"]
            if "group" not in p and not p["diverged"] and p.get("train_env_steps") is not None
        ]
        if points:
            curves.append((curve, points))
    if not curves:
        return None
    splits = list(dict.fromkeys(p["split"] for _, points in curves for p in points))
    fig, axes = panel_grid(len(splits), 4.5, 3.2)
    for ax, split in zip(axes.flat, splits, strict=False):
        for curve, points in curves:
            steps = curve_steps(curve, points)
            line = [p for p in points if p["split"] == split and p["steps"] == steps]
            if not line:
                continue
            line.sort(key=lambda p: p["train_env_steps"])
            after = "" if steps is None else f" ({steps} step{'s' * (steps != 1)})"
            interval_line(
                ax, [p["train_env_steps"] for p in line], line, label=f"{curve['learner']}{after}"
            )
            ax.set_ylabel(line[0]["metric"])
        ax.set_xscale("log")
        ax.set_title(split)
        ax.set_xlabel("environment steps of meta-training")
        ax.grid(alpha=0.3)
    fig.suptitle("score against meta-training samples (kept checkpoints)")
    shared_legend(fig, axes, 6, 0.12)
    return save_figure(fig, run / "sample_efficiency.png")
