"""What every experiment script shares: build learners from seeds, train each with the one
training loop, evaluate all of them on the same tasks of every split, write the results files.

Scripts in ``experiments/`` stay thin: parse arguments, build the distribution and the learner
specs, call :func:`run_experiment`, draw plots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metagym.distributed import is_main_process
from metagym.evaluate import evaluate
from metagym.learners.base import Learner
from metagym.results import write_report
from metagym.seeding import build_seeded, make_generator, split_generator
from metagym.tasks.base import TaskDistribution
from metagym.train import TrainConfig, train


@dataclass
class LearnerSpec:
    """How to build and meta-train one learner of an experiment."""

    name: str
    build: Callable[[], Learner]
    train: TrainConfig


def check_out_dir(out_dir: str | Path) -> Path:
    """Refuse an output path that exists and is not a directory (before any training)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; give a directory (it is created)")
    return out_dir


def check_names(kind: str, requested: Sequence[str], accepted: Sequence[str]) -> list[str]:
    """Raise a ValueError naming the unknown entries of ``requested`` and the accepted values."""
    unknown = [name for name in requested if name not in accepted]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; accepted: {', '.join(accepted)}")
    if not requested:
        raise ValueError(f"no {kind} given; accepted: {', '.join(accepted)}")
    return list(dict.fromkeys(requested))


def run_experiment(
    distribution: TaskDistribution,
    specs: Sequence[LearnerSpec],
    out_dir: str | Path,
    *,
    seed: int,
    splits: Sequence[str],
    eval_tasks: int,
    steps: Sequence[int],
    config: dict[str, Any],
    resume: bool = False,
    tensorboard: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Learner]]:
    """Train every learner, evaluate it on ``eval_tasks`` tasks of each split, write
    ``results.json`` and ``results.md`` into ``out_dir``; return the results and the learners."""
    out_dir = check_out_dir(out_dir)
    for split in splits:
        distribution.check_split(split)
    out_dir.mkdir(parents=True, exist_ok=True)
    main = is_main_process()  # under torchrun only rank 0 writes files
    learners: dict[str, Learner] = {}
    rows: list[dict[str, Any]] = []
    tasks = {s: distribution.sample(eval_tasks, s, split_generator(seed, s)) for s in splits}
    for spec in specs:
        learner = build_seeded(spec.build, seed).to(device)
        run_dir = out_dir / "runs" / spec.name
        train(
            learner,
            distribution,
            spec.train,
            run_dir,
            resume=resume,
            tensorboard=tensorboard,
            progress=progress,
        )
        learner.after_training(distribution, make_generator(seed + 1))
        if main:
            learner.save(run_dir / "learner.pt")
        learners[spec.name] = learner
        for split in splits:
            rows += evaluate(learner, distribution, split, tasks[split], steps, progress=progress)
    # Configs after training: they include values tuned by after_training (e.g. step sizes).
    config = {**config, "learners": {name: learner.config() for name, learner in learners.items()}}
    if not main:
        return {"seed": seed, "config": config, "rows": rows}, learners
    results = write_report(
        out_dir, rows, config=config, seed=seed, title=f"{distribution.domain} results"
    )
    return results, learners
