"""Plots of regression experiments (the sinusoid domain), drawn only from their results files:
``metric_vs_steps.png``, ``examples.png`` and ``training_curves.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metagym.plots.common import (
    hide_unused,
    panel_grid,
    plot_training_curves,
    save_figure,
    shared_legend,
)
from metagym.plots.steps import plot_metric_vs_steps
from metagym.results import read_results

__all__ = ["plot_regression_examples", "redraw"]


def plot_regression_examples(examples: dict[str, Any], path: str | Path) -> Path:
    """Example fits: support points, the true curve and each learner's prediction, per task."""
    tasks = examples["tasks"]
    fig, axes = panel_grid(len(tasks), 4.2, 3.2)
    for ax, task in zip(axes.flat, tasks, strict=False):
        ax.plot(task["grid"], task["truth"], color="black", lw=2, label="true")
        for i, (learner, prediction) in enumerate(task["predictions"].items()):
            ax.plot(task["grid"], prediction, color=f"C{i}", lw=1.2, label=learner)
        ax.scatter(
            task["support_x"], task["support_y"], color="red", zorder=5, s=18, label="support"
        )
        params = ", ".join(f"{k} {v:.2f}" for k, v in task["params"].items())
        ax.set_title(f"{task['split']}: {params}", fontsize=9)
        limit = 1.5 * max(abs(v) for v in task["truth"]) + 0.5
        ax.set_ylim(-limit, limit)
        ax.grid(alpha=0.3)
    hide_unused(axes, len(tasks))
    shared_legend(fig, axes, 8, 0.07)
    return save_figure(fig, path, dpi=110)


def redraw(out_dir: str | Path) -> list[Path]:
    """Redraw every plot of a regression experiment folder from its results files."""
    out_dir = Path(out_dir)
    results = read_results(out_dir / "results.json")
    drawn = [plot_metric_vs_steps(results, out_dir / "metric_vs_steps.png")]
    examples = out_dir / "examples.json"
    if examples.exists():
        examples_data = json.loads(examples.read_text())
        drawn.append(plot_regression_examples(examples_data, out_dir / "examples.png"))
    runs = out_dir / "runs"
    if runs.is_dir():
        run_dirs = {d.name: d for d in sorted(runs.iterdir()) if d.is_dir()}
        curve = plot_training_curves(run_dirs, out_dir / "training_curves.png")
        if curve:
            drawn.append(curve)
    return drawn
