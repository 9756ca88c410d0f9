"""Plots of the reinforcement-learning experiment, drawn from its results files only.

``python -m metagym.plots DIR`` redraws them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metagym.plots.common import (
    hide_unused,
    interval_line,
    panel_grid,
    plot_training_curves,
    plt,
    return_keys,
    save_figure,
)
from metagym.results import read_results

__all__ = [
    "navigation_trajectories",
    "plot_navigation_trajectories",
    "plot_return_vs_adaptation",
    "plot_rl_training",
    "redraw",
]


def plot_return_vs_adaptation(results: dict[str, Any], path: str | Path) -> Path:
    """One panel per split (and metric: Meta-World has success and return): the score against
    the environment steps of experience on the task (``env_steps``; symlog axis), a line per
    learner; learners that do not adapt are dashed horizontal lines. Rows scored on whole trials
    (bandits) get their own panels; per-group rows (Meta-World's per-env rows) are left out, the
    rows over all tasks drawn."""
    rows = [r for r in results["rows"] if r.get("group") in (None, "all")]
    panels = list(
        dict.fromkeys((r["split"], r.get("scored_on", "episode"), r["metric"]) for r in rows)
    )
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    colors = {name: f"C{i}" for i, name in enumerate(learners)}
    fig, axes = panel_grid(len(panels), 4.6, 3.6)
    for ax, (split, scored, metric) in zip(axes.flat, panels, strict=False):
        mine = [
            r
            for r in rows
            if (r["split"], r.get("scored_on", "episode"), r["metric"]) == (split, scored, metric)
        ]
        for learner in learners:
            points = sorted(
                (r for r in mine if r["learner"] == learner and r["mean"] is not None),
                key=lambda r: r.get("env_steps", 0),
            )
            if not points:
                continue
            if len(points) == 1:
                ax.axhline(points[0]["mean"], ls="--", color=colors[learner], label=learner)
                continue
            interval_line(
                ax,
                [r.get("env_steps", 0) for r in points],
                points,
                color=colors[learner],
                label=learner,
            )
        ax.set_xscale("symlog", linthresh=100)
        ax.set_xlim(left=-10)
        kind = "trial total" if scored == "trial" else f"episode {metric}"
        ax.set_title(f"{split} ({kind})")
        ax.set_xlabel("environment steps on the task before the scored episode")
        ax.set_ylabel(f"{mine[0]['metric']} (mean ± 95%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    hide_unused(axes, len(panels))
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_rl_training(run_dirs: dict[str, Path], path: str | Path) -> Path | None:
    """Meta-training returns (``charts/*return*`` columns of each ``metrics.csv``)."""
    return plot_training_curves(
        run_dirs,
        path,
        keys=return_keys,
        label=lambda name, key: f"{name}: {key.split('/')[-1]}",
        ylabel="average return in training",
        log_scale=False,
        figsize=(6.4, 4.0),
        legend_fontsize=7,
    )


def navigation_trajectories(learner, distribution, tasks, steps=(0, 1), episodes: int = 2) -> dict:
    """Positions visited by ``learner``'s policy on Navigation2D ``tasks`` before and after
    adaptation (JSON-serializable, for :func:`plot_navigation_trajectories`)."""
    out = []
    for task in tasks:
        predictors = learner.adapt_steps(task, list(steps))
        paths = {}
        for s, predictor in predictors.items():
            data = distribution.sampler.sample(predictor, [task], episodes, seed=task.eval_seed)
            paths[str(s)] = [
                data.observations[0, e, : int(data.lengths[0, e]) + 1].tolist()
                for e in range(episodes)
            ]
        out.append({"goal": task.params["goal"], "split": task.split, "paths": paths})
    return {"learner": learner.name, "tasks": out}


def plot_navigation_trajectories(data: dict, path: str | Path) -> Path:
    """One panel per task: trajectories before (0 steps) and after adaptation, goal marked."""
    tasks = data["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for i, (steps, paths) in enumerate(task["paths"].items()):
            for j, points in enumerate(paths):
                xs, ys = zip(*points, strict=True)
                label = f"{steps} step{'s' if steps != '1' else ''}" if j == 0 else None
                ax.plot(xs, ys, color=f"C{i}", lw=1, alpha=0.8, label=label)
        ax.plot(*task["goal"], marker="*", ms=14, color="k", label="goal")
        ax.plot(0, 0, marker="o", ms=5, color="grey")
        ax.set_aspect("equal")
        ax.set_xlim(-1.1, 1.1)
        ax.set_ylim(-1.1, 1.1)
        ax.set_title(f"{data['learner']} ({task['split']})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def redraw(out_dir: str | Path) -> list[Path]:
    """Redraw every plot of an RL experiment folder from its results files."""
    out_dir = Path(out_dir)
    drawn = [
        plot_return_vs_adaptation(
            read_results(out_dir / "results.json"), out_dir / "return_vs_adaptation.png"
        )
    ]
    runs = out_dir / "runs"
    if runs.is_dir():
        curve = plot_rl_training(
            {d.name: d for d in sorted(runs.iterdir()) if d.is_dir()},
            out_dir / "training_curves.png",
        )
        if curve:
            drawn.append(curve)
    trajectories = out_dir / "trajectories.json"
    if trajectories.exists():
        drawn.append(
            plot_navigation_trajectories(
                json.loads(trajectories.read_text()), out_dir / "trajectories.png"
            )
        )
    return drawn
