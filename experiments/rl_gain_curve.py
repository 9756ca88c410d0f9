"""MAML-RL's one-step gain against meta-training time, from one ``metagym run rl`` folder.

    # while `metagym run rl --learners maml ... --out RUN` trains: keep each checkpoint it writes
    python experiments/rl_gain_curve.py watch RUN/runs/maml KEEP
    # after it: score every kept checkpoint and the final learner task by task; draw the curve
    python experiments/rl_gain_curve.py evaluate RUN KEEP --out curve.json
    python experiments/rl_gain_curve.py plot curve.json curve.png

The gain of a task is its score after one policy-gradient step minus its score before (the
runner's ``steps`` 1 and 0 rows, on the run's own evaluation tasks and seeds), so it is paired:
the interval is 1.96 standard errors of the per-task differences. ``evaluate`` rebuilds the run's
context from ``runs/maml/rows.json``, scores each checkpoint on ``--splits`` (default ``test``)
and the final learner on every split the run evaluated, and checks that the final learner's means
are within ``--tolerance`` of the ones in ``rows.json`` (both are kept in the curve file). The
training curve is MAML's own per-iteration log (``charts/return_after_adaptation -
charts/return_before_adaptation`` on the meta-batch), with time from the logged iterations per
second.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from metagym import domains
from metagym.checkpoint import load_checkpoint
from metagym.domains.base import Context
from metagym.evaluate import confidence_interval
from metagym.results import read_json, write_json_atomic
from metagym.seeding import build_seeded

LEARNER = "maml"


def paired_gain(before: Sequence[float], after: Sequence[float]) -> dict[str, Any]:
    """Mean and 95% half-width of the per-task differences ``after - before``."""
    if len(before) != len(after) or not before:
        raise ValueError(f"need paired scores, got {len(before)} and {len(after)}")
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    return {
        "before": sum(before) / len(before),
        "after": sum(after) / len(after),
        "gain": sum(diffs) / len(diffs),
        "gain_ci95": confidence_interval(diffs),
        "improved": sum(d > 0 for d in diffs),
        "n_tasks": len(diffs),
    }


def training_curve(metrics_csv: Path) -> list[dict[str, float]]:
    """Rows of ``metrics.csv``: iteration, cumulative training seconds, returns before / after
    adaptation on the meta-batch (means over the logged interval)."""
    rows, seconds, previous = [], 0.0, 0
    with Path(metrics_csv).open(newline="") as f:
        for row in csv.DictReader(f):
            iteration = int(float(row["iteration"]))
            seconds += (iteration - previous) / float(row["charts/iterations_per_second"])
            previous = iteration
            before = float(row["charts/return_before_adaptation"])
            after = float(row["charts/return_after_adaptation"])
            rows.append(
                {
                    "iteration": iteration,
                    "seconds": round(seconds, 2),
                    "before": round(before, 3),
                    "after": round(after, 3),
                    "gain": round(after - before, 3),
                }
            )
    return rows


def watch(learner_dir: Path, keep: Path, poll: float = 2.0) -> None:
    """Copy ``learner_dir/checkpoint.pt`` to ``keep/iter-NNNNN.pt`` each time it is rewritten;
    stop when ``learner_dir/rows.json`` appears (the learner finished)."""
    keep.mkdir(parents=True, exist_ok=True)
    source, seen = learner_dir / "checkpoint.pt", None
    while True:
        done = (learner_dir / "rows.json").exists()
        if source.exists() and (stamp := source.stat().st_mtime_ns) != seen:
            scratch = keep / "copying.pt"
            shutil.copyfile(source, scratch)  # checkpoints are replaced atomically
            iteration = int(load_checkpoint(scratch)["iteration"])
            scratch.replace(keep / f"iter-{iteration:05d}.pt")
            seen = stamp
            print(f"kept iteration {iteration}", flush=True)
        if done:
            return
        time.sleep(poll)


def run_context(run: Path) -> tuple[Context, dict[str, Any]]:
    """The context of ``run``'s maml learner, rebuilt from its ``rows.json``."""
    record = read_json(run / "runs" / LEARNER / "rows.json")
    definition = record["definition"]
    domain = domains.get(definition["domain"])
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in definition["profile"].items()}
    profile = domain.profile_class(**fields).validate()
    context = Context(domain, profile, definition["variant"], (LEARNER,), seed=definition["seed"])
    return context, record


def per_task_scores(learner, distribution, tasks, steps: Sequence[int]) -> dict[int, list[float]]:
    """Each task's score after each step count, as :func:`metagym.evaluate.evaluate` scores."""
    scores: dict[int, list[float]] = {s: [] for s in steps}
    learner.eval()
    for start in range(0, len(tasks), max(1, learner.eval_batch)):
        chunk = [task.to(learner.device) for task in tasks[start : start + learner.eval_batch]]
        for task, predictors in zip(chunk, learner.adapt_many(chunk, list(steps)), strict=True):
            for s in steps:
                scores[s].append(distribution.score(predictors[s], task))
    learner.train()
    return scores


def gain_point(context: Context, learner, split: str) -> dict[str, Any]:
    scores = per_task_scores(
        learner, context.distribution(), context.eval_tasks("tasks", split), (0, 1)
    )
    return {"split": split, **paired_gain(scores[0], scores[1])}


def evaluate_run(
    run: Path, keep: Path | None, splits: Sequence[str], tolerance: float = 1.0
) -> dict[str, Any]:
    """The curve of ``run``: kept checkpoints scored on ``splits``, the final learner on every
    split of the run; a final mean more than ``tolerance`` from ``rows.json``'s is an error."""
    context, record = run_context(run)
    recipe = context.domain.recipes[LEARNER]
    learner = build_seeded(lambda: recipe.build(context), context.seed)
    training = training_curve(run / "runs" / LEARNER / "metrics.csv")
    seconds = {row["iteration"]: row["seconds"] for row in training}
    final_iteration = record["iterations"]
    points = []
    kept = sorted(keep.glob("iter-*.pt")) if keep is not None else []
    for path in kept:
        state = load_checkpoint(path)
        iteration = int(state["iteration"])
        if iteration >= final_iteration:
            continue  # the final learner is scored below, on every split
        learner.load_checkpoint_state(state["learner"])
        for split in splits:
            start = time.perf_counter()
            point = gain_point(context, learner, split)
            points.append({"iteration": iteration, "seconds": seconds.get(iteration), **point})
            print(_line(points[-1], time.perf_counter() - start), flush=True)
    learner.load(run / "runs" / LEARNER / "learner.pt")
    logged = {(r["split"], r["steps"]): r["mean"] for r in record["rows"]}
    for split in sorted({r["split"] for r in record["rows"]}, key=lambda s: (s != "test", s)):
        start = time.perf_counter()
        point = gain_point(context, learner, split)
        for steps, key in ((0, "before"), (1, "after")):
            point[f"run_{key}"] = logged[(split, steps)]
            if not abs(point[key] - logged[(split, steps)]) <= tolerance:
                raise RuntimeError(
                    f"{split}, {steps} steps: scored {point[key]}, rows.json has "
                    f"{logged[(split, steps)]}; the learner or the tasks differ from the run's"
                )
        points.append(
            {"iteration": final_iteration, "seconds": seconds.get(final_iteration), **point}
        )
        print(_line(points[-1], time.perf_counter() - start), flush=True)
    context.close()
    return {
        "run": str(run),
        "profile": context.profile.as_dict(),
        "seed": context.seed,
        "timings": record["timings"],
        "training": training,
        "points": points,
    }


def _line(point: dict[str, Any], seconds: float) -> str:
    return (
        f"iteration {point['iteration']} {point['split']}: before {point['before']:.1f}, after "
        f"{point['after']:.1f}, gain {point['gain']:+.1f} ± {point['gain_ci95']:.1f} "
        f"({point['improved']}/{point['n_tasks']} improved; scored in {seconds:.0f} s)"
    )


def plot(curve: dict[str, Any], path: Path, smooth: int = 10) -> Path:
    """Gain against meta-training minutes: the meta-batch's (a running mean over ``smooth``
    iterations) and each scored split's paired gain with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    training = curve["training"]
    if training:
        minutes = [r["seconds"] / 60 for r in training]
        gains = [r["gain"] for r in training]
        running = [
            sum(gains[max(0, i - smooth + 1) : i + 1]) / len(gains[max(0, i - smooth + 1) : i + 1])
            for i in range(len(gains))
        ]
        ax.plot(minutes, gains, color="0.8", lw=0.8, label="meta-batch, per logged row")
        ax.plot(minutes, running, color="0.4", lw=1.5, label=f"meta-batch, mean of {smooth} rows")
    for split in dict.fromkeys(p["split"] for p in curve["points"]):
        points = [p for p in curve["points"] if p["split"] == split and p["seconds"] is not None]
        ax.errorbar(
            [p["seconds"] / 60 for p in points],
            [p["gain"] for p in points],
            yerr=[p["gain_ci95"] for p in points],
            fmt="o-",
            capsize=3,
            label=f"{split} tasks, paired (95% interval)",
        )
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("meta-training time (minutes)")
    ax.set_ylabel("return after one step - before")
    ax.set_title("MAML-RL one-step gain")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("watch", help="keep each checkpoint of a training learner")
    p.add_argument("learner_dir", type=Path)
    p.add_argument("keep", type=Path)
    p = commands.add_parser("evaluate", help="score kept checkpoints and the final learner")
    p.add_argument("run", type=Path)
    p.add_argument("keep", type=Path, nargs="?")
    p.add_argument("--splits", default="test")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="largest accepted difference of a final mean from rows.json's (default 1.0)",
    )
    p.add_argument("--out", type=Path, required=True)
    p = commands.add_parser("plot", help="draw a curve file")
    p.add_argument("curve", type=Path)
    p.add_argument("png", type=Path)
    args = parser.parse_args(argv)
    if args.command == "watch":
        watch(args.learner_dir, args.keep)
    elif args.command == "evaluate":
        torch.set_num_threads(args.threads)
        splits = [s.strip() for s in args.splits.split(",") if s.strip()]
        curve = evaluate_run(args.run, args.keep, splits, args.tolerance)
        write_json_atomic(curve, args.out)
    else:
        plot(read_json(args.curve), args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
