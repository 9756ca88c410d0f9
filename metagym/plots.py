"""Plots drawn only from results files, so they can be redrawn without retraining.

``python -m metagym.plots DIR`` redraws every plot of an experiment folder, whatever its domain
(classification plots live in :mod:`metagym.plots_classification`, RL plots in
:mod:`metagym.plots_rl`).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from metagym.logging import read_metrics  # noqa: E402
from metagym.results import read_results  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (PNG), close it, return the path."""
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def plot_metric_vs_steps(results: dict[str, Any], path: str | Path) -> Path:
    """One panel per split: the metric against adaptation steps, a line per learner.

    Learners without gradient steps are drawn as horizontal dashed lines; diverged points are
    left out and marked with an x at the panel's top edge.
    """
    rows = results["rows"]
    splits = list(dict.fromkeys(r["split"] for r in rows))
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    colors = {name: f"C{i}" for i, name in enumerate(learners)}
    n_rows, n_cols = _grid(len(splits))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.4 * n_rows), squeeze=False)
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
            ax.errorbar(
                [r["steps"] for r in good],
                [r["mean"] for r in good],
                yerr=[r["ci95"] for r in good],
                marker="o",
                ms=3,
                capsize=2,
                color=colors[learner],
                label=learner,
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
    for ax in list(axes.flat)[len(splits) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_figure(fig, path, dpi=110)


def plot_regression_examples(examples: dict[str, Any], path: str | Path) -> Path:
    """Example fits: support points, the true curve and each learner's prediction, per task."""
    tasks = examples["tasks"]
    n_rows, n_cols = _grid(len(tasks))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.2 * n_rows), squeeze=False)
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
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return save_figure(fig, path, dpi=110)


def plot_training_curves(run_dirs: dict[str, Path], path: str | Path) -> Path | None:
    """Meta-training losses from each learner's ``metrics.csv`` (log scale)."""
    curves = {n: d / "metrics.csv" for n, d in run_dirs.items() if (d / "metrics.csv").exists()}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, csv_path) in enumerate(curves.items()):
        rows = read_metrics(csv_path)
        keys = [k for k in rows[0] if k.startswith("losses/")] if rows else []
        if not keys:
            continue
        key = keys[0]
        ax.plot(
            [r["iteration"] for r in rows],
            [r[key] for r in rows],
            color=f"C{i}",
            label=f"{name} ({key})",
        )
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def redraw(out_dir: str | Path) -> list[Path]:
    """Redraw every plot of an experiment folder from its results files (any domain)."""
    out_dir = Path(out_dir)
    results = read_results(out_dir / "results.json")
    domain = results["rows"][0]["domain"] if results["rows"] else ""
    if domain == "omniglot":
        from metagym.plots_classification import redraw as redraw_classification

        return redraw_classification(out_dir)
    if domain == "rl":
        from metagym.plots_rl import redraw as redraw_rl

        return redraw_rl(out_dir)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", help="an experiment folder holding results.json")
    for path in redraw(parser.parse_args(argv).out_dir):
        print(path)


if __name__ == "__main__":
    main()
