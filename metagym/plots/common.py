"""What every plot module shares: the Agg backend, saving, panel grids and legends, lines with
95% intervals, and training curves from each learner's ``metrics.csv``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from metagym.metrics_log import read_metrics  # noqa: E402

__all__ = [
    "grid_shape",
    "hide_unused",
    "interval_line",
    "loss_keys",
    "panel_grid",
    "plt",
    "return_keys",
    "save_figure",
    "shared_legend",
    "plot_training_curves",
]


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (PNG), close it, return the path."""
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def grid_shape(n: int) -> tuple[int, int]:
    """Rows and columns of a grid of ``n`` panels, at most three a row."""
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def panel_grid(n: int, width: float, height: float):
    """A figure with a :func:`grid_shape` grid of ``n`` panels of ``width`` x ``height`` inches;
    returns ``(fig, axes)`` (``axes`` always 2-D)."""
    n_rows, n_cols = grid_shape(n)
    return plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False)


def hide_unused(axes, n: int) -> None:
    """Blank the panels after the first ``n``."""
    for ax in list(axes.flat)[n:]:
        ax.axis("off")


def shared_legend(fig, axes, max_columns: int, bottom: float) -> None:
    """One legend (the first panel's entries) centred below the panels, which keep the figure
    above ``bottom`` (a fraction of its height)."""
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(len(labels), max_columns), frameon=False
    )
    fig.tight_layout(rect=(0, bottom, 1, 1))


def interval_line(ax, xs: Sequence[float], rows: Sequence[Mapping[str, Any]], **style: Any):
    """The rows' ``mean`` against ``xs`` with their ``ci95`` as error bars (markers at the points)."""
    return ax.errorbar(
        list(xs),
        [r["mean"] for r in rows],
        yerr=[r["ci95"] for r in rows],
        marker="o",
        ms=3,
        capsize=2,
        **style,
    )


def loss_keys(columns: Iterable[str]) -> list[str]:
    """The first ``losses/*`` column (a learner's meta-training loss)."""
    return [k for k in columns if k.startswith("losses/")][:1]


def return_keys(columns: Iterable[str]) -> list[str]:
    """Every ``charts/*return*`` column (the returns of RL meta-training)."""
    return [k for k in columns if k.startswith("charts/") and "return" in k]


def plot_training_curves(
    run_dirs: Mapping[str, str | Path],
    path: str | Path,
    *,
    keys: Callable[[Iterable[str]], list[str]] = loss_keys,
    label: Callable[[str, str], str] = lambda name, key: f"{name} ({key})",
    ylabel: str = "training loss",
    log_scale: bool = True,
    figsize: tuple[float, float] = (6.0, 4.0),
    legend_fontsize: float = 8,
) -> Path | None:
    """Meta-training curves from each learner's ``metrics.csv``: the columns ``keys`` selects
    (default: the training loss, log scale) against the meta-iteration; None without any file."""
    curves = {n: Path(d) / "metrics.csv" for n, d in run_dirs.items()}
    curves = {n: p for n, p in curves.items() if p.exists()}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=figsize)
    for i, (name, csv_path) in enumerate(curves.items()):
        rows = read_metrics(csv_path)
        for j, key in enumerate(keys(rows[0] if rows else {})):
            ax.plot(
                [r["iteration"] for r in rows],
                [r[key] for r in rows],
                color=f"C{i}",
                ls=["-", "--", ":"][j % 3],
                label=label(name, key),
            )
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(ylabel)
    if log_scale:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_fontsize)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
