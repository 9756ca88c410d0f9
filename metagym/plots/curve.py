"""A learner's score against meta-training time, from its kept checkpoints (``curve.json``,
written by ``metagym evaluate RUN --learners NAME --checkpoints``)."""

from __future__ import annotations

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
