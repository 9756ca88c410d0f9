"""The metric against adaptation steps, a panel per split and a line per learner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metagym.plots.common import hide_unused, interval_line, panel_grid, save_figure, shared_legend

__all__ = ["plot_metric_vs_steps"]


def plot_metric_vs_steps(results: dict[str, Any], path: str | Path) -> Path:
    """One panel per split: the metric against adaptation steps, a line per learner.

    Learners without gradient steps are drawn as horizontal dashed lines; diverged points are
    left out and marked with an x at the panel's top edge.
    """
    rows = results["rows"]
    splits = list(dict.fromkeys(r["split"] for r in rows))
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    colors = {name: f"C{i}" for i, name in enumerate(learners)}
    fig, axes = panel_grid(len(splits), 4.2, 3.4)
    for ax, split in zip(axes.flat, splits, strict=False):
        split_rows = [r for r in rows if r["split"] == split]
        step_counts = sorted({r["steps"] for r in split_rows if r["steps"] is not None}) or [0]
        for learner in learners:
            mine = [r for r in split_rows if r["learner"] == learner]
            if not mine:
                continue
            if mine[0]["steps"] is None:
                if mine[0]["mean"] is not None:
                    ax.axhline(mine[0]["mean"], ls="--", color=colors[learner], label=learner)
                continue
            mine.sort(key=lambda r: r["steps"])
            good = [r for r in mine if r["mean"] is not None]
            interval_line(
                ax, [r["steps"] for r in good], good, color=colors[learner], label=learner
            )
            bad = [r["steps"] for r in mine if r["mean"] is None]
            if bad:
                ax.plot(
                    bad,
                    [1.0] * len(bad),
                    "x",
                    color=colors[learner],
                    ms=8,
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                )
        ax.set_title(split)
        ax.set_xlabel("adaptation steps")
        ax.set_ylabel(split_rows[0]["metric"])
        ax.set_xticks(step_counts)
        if split_rows[0]["metric"] == "mse":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    hide_unused(axes, len(splits))
    shared_legend(fig, axes, 6, 0.06)
    return save_figure(fig, path, dpi=110)
