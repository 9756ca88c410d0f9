"""Sinusoid regression (MAML, Finn et al. 2017, section 5.1): train and compare learners.

    python experiments/sinusoid.py --profile quick --out runs/sinusoid

Writes into --out: results.json, results.md, metric_vs_steps.png (MSE against adaptation steps,
one panel per split), examples.png (fits on a few tasks), training_curves.png, and per learner
runs/<name>/{metrics.csv, checkpoint.pt, learner.pt}. Redraw plots with
``python -m metagym.plots DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass

import torch

from metagym.distributed import is_main_process
from metagym.experiment import (
    LearnerSpec,
    check_names,
    check_out_dir,
    run_experiment,
)
from metagym.learners import MAML, BlackBoxRegressor, Learner, Oracle, PretrainFineTune
from metagym.learners.maml import BACKENDS
from metagym.nets import mlp
from metagym.plots.common import plot_training_curves
from metagym.plots.regression import plot_regression_examples
from metagym.plots.steps import plot_metric_vs_steps
from metagym.results import write_json_atomic
from metagym.seeding import split_generator
from metagym.tasks import SinusoidTasks
from metagym.tasks.sinusoid import ACCEPTED_SHOTS, sinusoid
from metagym.train import TrainConfig

LEARNERS = ("maml", "maml-fo", "meta-sgd", "blackbox", "pretrain", "oracle")
EVAL_STEPS = (0, 1, 2, 5, 10)


@dataclass
class Profile:
    """Budget of one profile (iterations are per learner)."""

    iterations: dict[str, int]
    meta_batch: int
    eval_tasks: int
    inner_lr: float = 0.01
    meta_lr: float = 1e-3
    train_steps: int = 1
    log_every: int = 100
    checkpoint_every: int = 1000
    backend: str = "higher"


PROFILES = {
    # CPU, under 10 minutes on 2 cores with every learner.
    "quick": Profile(
        iterations={
            "maml": 8000,
            "maml-fo": 3000,
            "meta-sgd": 2000,
            "blackbox": 4000,
            "pretrain": 2000,
            "oracle": 2000,
        },
        meta_batch=25,
        eval_tasks=600,
    ),
    # MAML's settings: 70,000 iterations, meta-batch 25, Adam 1e-3, inner lr 0.01, 1 inner step.
    "paper": Profile(
        iterations=dict.fromkeys(LEARNERS, 70_000),
        meta_batch=25,
        eval_tasks=600,
        checkpoint_every=5000,
    ),
    # For tests: seconds.
    "tiny": Profile(
        iterations=dict.fromkeys(LEARNERS, 20),
        meta_batch=4,
        eval_tasks=8,
        log_every=5,
        checkpoint_every=10,
    ),
}


def build_learner(name: str, profile: Profile) -> Learner:
    """The learner called ``name`` with MAML's sinusoid net (1 -> 40 -> 40 -> 1)."""
    net = lambda: mlp(1, [40, 40], 1)  # noqa: E731
    if name in ("maml", "maml-fo", "meta-sgd"):
        return MAML(
            net(),
            inner_lr=profile.inner_lr,
            train_steps=profile.train_steps,
            # Meta-SGD learns its step sizes for train_steps steps; more can diverge.
            eval_steps=profile.train_steps if name == "meta-sgd" else max(EVAL_STEPS),
            first_order=name == "maml-fo",
            meta_sgd=name == "meta-sgd",
            meta_lr=profile.meta_lr,
            backend=profile.backend,
        )
    if name == "blackbox":
        return BlackBoxRegressor(1, 1, hidden=64, meta_lr=profile.meta_lr)
    if name == "pretrain":
        return PretrainFineTune(net(), eval_steps=max(EVAL_STEPS), meta_lr=profile.meta_lr)
    if name == "oracle":
        return Oracle(("amplitude", "phase"), meta_lr=profile.meta_lr)
    raise ValueError(f"unknown learner {name!r}; accepted: {', '.join(LEARNERS)}")


def example_fits(distribution: SinusoidTasks, learners: dict[str, Learner], seed: int) -> dict:
    """Predictions of every learner on a grid of x for a few tasks (for examples.png)."""
    grid = torch.linspace(-5, 5, 200).unsqueeze(1)
    tasks = []
    for split in ("test", "ood-amplitude", "ood-phase", "ood-extrapolate"):
        for index, task in enumerate(
            distribution.sample(2, split, split_generator(seed + 7, split))
        ):
            truth = sinusoid(grid, task.params["amplitude"], task.params["phase"])
            predictions = {}
            for name, learner in learners.items():
                prediction = learner.adapt(task.to(learner.device))(grid.to(learner.device)).cpu()
                predictions[name] = [
                    v if math.isfinite(v) else None for v in prediction[:, 0].tolist()
                ]
            tasks.append(
                {
                    "split": split,
                    "index": index,
                    "params": task.params,
                    "support_x": task.support.x[:, 0].tolist(),
                    "support_y": task.support.y[:, 0].tolist(),
                    "grid": grid[:, 0].tolist(),
                    "truth": truth[:, 0].tolist(),
                    "predictions": predictions,
                }
            )
    return {"tasks": tasks}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--learners",
        default=",".join(LEARNERS),
        help=f"comma-separated learners (default all): {', '.join(LEARNERS)}",
    )
    parser.add_argument(
        "--shots", type=int, default=5, help=f"support points K, one of {ACCEPTED_SHOTS}"
    )
    parser.add_argument(
        "--profile", default="quick", choices=sorted(PROFILES), help="training budget"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of tasks and weight init")
    parser.add_argument("--out", default="runs/sinusoid", help="output directory")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the checkpoints in --out"
    )
    parser.add_argument(
        "--iterations", type=int, default=None, help="override every learner's iterations"
    )
    parser.add_argument(
        "--backend",
        default="higher",
        choices=BACKENDS,
        help="MAML backend: higher (the reference) or vmap (task-batched, ~9x faster)",
    )
    parser.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 is fastest for these tiny nets)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    # Validate everything before any training starts.
    learners = check_names(
        "learner", [s.strip() for s in args.learners.split(",") if s.strip()], LEARNERS
    )
    if args.shots < 1:
        raise SystemExit(
            f"error: --shots must be >= 1 (accepted: {ACCEPTED_SHOTS}), got {args.shots}"
        )
    distribution = SinusoidTasks(shots=args.shots)
    out_dir = check_out_dir(args.out)
    profile = dataclasses.replace(PROFILES[args.profile], backend=args.backend)
    if args.iterations is not None:
        if args.iterations < 1:
            raise SystemExit(f"error: --iterations must be >= 1, got {args.iterations}")
        profile.iterations = dict.fromkeys(LEARNERS, args.iterations)
    if args.threads < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"error: --device {args.device} but CUDA is not available; use --device cpu"
        )

    specs = [
        LearnerSpec(
            name,
            lambda name=name: build_learner(name, profile),
            TrainConfig(
                profile.iterations[name],
                profile.meta_batch,
                seed=args.seed,
                log_every=profile.log_every,
                checkpoint_every=profile.checkpoint_every,
            ),
        )
        for name in learners
    ]
    config = {
        "script": "experiments/sinusoid.py",
        "args": vars(args),
        "profile": asdict(profile),
        "distribution": distribution.describe(),
    }
    start = time.perf_counter()
    results, trained = run_experiment(
        distribution,
        specs,
        out_dir,
        seed=args.seed,
        splits=distribution.splits,
        eval_tasks=profile.eval_tasks,
        steps=EVAL_STEPS,
        config=config,
        resume=args.resume,
        tensorboard=args.tensorboard,
        device=args.device,
        progress=not args.no_progress,
    )
    if not is_main_process():
        return results  # under torchrun, rank 0 writes the files
    write_json_atomic(example_fits(distribution, trained, args.seed), out_dir / "examples.json")
    plots = [
        plot_metric_vs_steps(results, out_dir / "metric_vs_steps.png"),
        plot_regression_examples(
            json.loads((out_dir / "examples.json").read_text()), out_dir / "examples.png"
        ),
        plot_training_curves(
            {n: out_dir / "runs" / n for n in learners}, out_dir / "training_curves.png"
        ),
    ]
    print((out_dir / "results.md").read_text())
    print(f"wall time {time.perf_counter() - start:.0f} s")
    print(f"table: {out_dir / 'results.md'}")
    print("plots: " + ", ".join(str(p) for p in plots if p))
    return results


if __name__ == "__main__":
    try:
        main()
    except (ValueError, NotADirectoryError) as error:
        sys.exit(f"error: {error}")
