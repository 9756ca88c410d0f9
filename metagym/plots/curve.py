"""A learner's score against meta-training time, from its kept checkpoints (``curve.json``,
written by ``metagym evaluate RUN --learners NAME --checkpoints``), and every RL learner's
score against the environment steps of its meta-training (``sample_efficiency.png``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def _environment(run: Path) -> str | None:
    if not (run / "run.json").is_file():
        raise FileNotFoundError(f"no run.json in {run}: give run folders (--out of metagym run)")
    return json.loads((run / "run.json").read_text()).get("profile", {}).get("env")


def check_same_environment(run: Path, beside: Sequence[str | Path]) -> None:
    """Refuse ``beside`` runs whose environment is not ``run``'s (ValueError)."""
    if not beside:
        return
    mine = _environment(run)
    if mine is None:
        raise ValueError(
            f"--beside joins the sample-efficiency curves of RL runs; {run} is not an RL run"
        )
    for other in map(Path, beside):
        theirs = _environment(other)
        if theirs != mine:
            raise ValueError(f"--beside {other} ran {theirs}, {run} ran {mine}: not one figure")


def sample_efficiency_curves(
    run: Path, beside: Sequence[str | Path] = ()
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(curve, its points with environment steps) per learner of ``run`` and of the ``beside``
    runs; a learner's points from several runs are pooled into one curve."""
    check_same_environment(run, beside)
    by_learner: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for folder in [run, *map(Path, beside)]:
        for path in sorted(folder.glob("runs/*/curve.json")):
            curve = json.loads(path.read_text())
            points = [
                p
                for p in curve["points"]
                if "group" not in p and not p["diverged"] and p.get("train_env_steps") is not None
            ]
            if points and curve["learner"] in by_learner:
                by_learner[curve["learner"]][1].extend(points)
            elif points:
                by_learner[curve["learner"]] = (curve, points)
    return list(by_learner.values())


def plot_sample_efficiency(run: str | Path, beside: Sequence[str | Path] = ()) -> Path | None:
    """``RUN/sample_efficiency.png``: for each split, every learner's score (at its
    :func:`curve_steps`) against the environment steps of meta-training behind each kept
    checkpoint, from the learners' ``curve.json`` (and those of the ``beside`` runs of the same
    environment: :func:`sample_efficiency_curves`); None when no curve has environment steps."""
    run = Path(run)
    curves = sample_efficiency_curves(run, beside)
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
