"""Few-shot Omniglot classification: train and compare learners in and out of distribution.

    python experiments/omniglot.py --profile quick --out runs/omniglot
    python experiments/omniglot.py --profile paper --ways 5,20 --shots 1,5 --device cuda --out runs/paper

For each ways/shots combination, writes into ``--out/<W>way-<K>shot/``: results.json and
results.md (mean accuracy and 95% interval per learner, split and test-time steps, over the same
tasks for every learner), steps_sweep.json (MAML accuracy after 0..10 steps, in and out of
distribution), examples.json (one test task with every learner's predictions), and the plots
accuracy_by_split.png, accuracy_vs_shift.png, accuracy_vs_steps.png, task_grid.png; per learner
learners/<name>/ holds that learner's own results and runs/<name>/{metrics.csv, checkpoint.pt,
learner.pt}. Learners run in parallel worker processes (``--jobs``), one thread each by default.
Redraw the plots with ``python -m metagym.plots DIR``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from metagym.data.omniglot import OmniglotDataError
from metagym.evaluate import evaluate
from metagym.experiment import (
    LearnerSpec,
    check_names,
    check_out_dir,
    run_experiment,
)
from metagym.learners import MAML, Learner
from metagym.learners.blackbox_classifier import BlackBoxClassifier
from metagym.learners.matching import MatchingNetwork
from metagym.learners.pretrain_classifier import PretrainClassifier
from metagym.learners.protonet import PrototypicalNetwork
from metagym.learners.soft_nn import SoftNearestNeighbour
from metagym.nets.conv4 import conv4
from metagym.plots.classification import redraw
from metagym.results import write_json_atomic, write_report, write_results
from metagym.seeding import split_generator
from metagym.tasks.omniglot import OmniglotTasks
from metagym.train import TrainConfig

LEARNERS = (
    "protonet",
    "matching",
    "matching-fce",
    "soft-nn",
    "maml",
    "maml-fo",
    "blackbox",
    "pretrain",
)
EPISODIC = ("protonet", "matching", "matching-fce", "soft-nn")
GRADIENT = ("maml", "maml-fo", "pretrain")
SWEEP_STEPS = tuple(range(11))
#: Rough relative cost, to start the slowest learners first.
COST = {
    "maml": 10,
    "protonet": 10,
    "blackbox": 9,
    "maml-fo": 6,
    "pretrain": 5,
    "matching-fce": 4,
    "matching": 3,
    "soft-nn": 2,
}


@dataclass
class Profile:
    """Budget of one profile. Iterations and meta-batches are per learner."""

    iterations: dict[str, int]
    """meta-updates per learner"""
    meta_batch: dict[str, int]
    """tasks per meta-update, per learner (MAML's is set by the paper's settings per ways)"""
    learners: tuple[str, ...]
    """learners run when --learners is not given"""
    episode_ways: int
    """ways of the training episodes of the non-parametric learners (0: the test ways)"""
    queries: int
    """query drawings per class of evaluation tasks"""
    train_queries: int
    """query drawings per class of training tasks"""
    eval_tasks: int = 600
    """tasks per split, the same for every learner"""
    sweep_tasks: int = 600
    """tasks per split of the MAML step sweep (0..10 steps)"""
    shear_levels: tuple[float, ...] = (0.2, 0.4, 0.6)
    scale_levels: tuple[float, ...] = (0.8, 0.6, 0.4)
    maml_meta_batch_scale: float = 1.0
    """MAML meta-batch = paper's (32 for 5-way, 16 for 20-way) times this"""
    meta_lr: float = 1e-3
    blackbox_meta_lr: float = 3e-3
    """the black-box learner's Adam step size (1e-3 leaves it at chance for longer)"""
    lr_halving: int = 0
    """halve the non-parametric learners' step size every this many episodes (0: never)"""
    hidden: int = 64
    """channels of conv4"""
    log_every: int = 50
    checkpoint_every: int = 500
    extra: dict[str, Any] = field(default_factory=dict)


PROFILES = {
    # 2 CPU cores, all learners, 5-way 1-shot: under 30 minutes with --jobs 2 (README, Omniglot section).
    "quick": Profile(
        iterations={
            "protonet": 3000,
            "matching": 1200,
            "matching-fce": 1200,
            "soft-nn": 500,
            "maml": 800,
            "maml-fo": 800,
            "blackbox": 1500,
            "pretrain": 1000,
        },
        meta_batch={
            "protonet": 1,
            "matching": 1,
            "matching-fce": 1,
            "soft-nn": 1,
            "blackbox": 8,
            "pretrain": 4,
        },
        learners=("maml", "protonet", "matching-fce", "blackbox", "soft-nn", "pretrain"),
        episode_ways=20,
        queries=1,
        train_queries=5,
        eval_tasks=600,
        sweep_tasks=200,
        maml_meta_batch_scale=0.25,
    ),
    # The papers' settings, for a GPU: Prototypical Networks train 60-way episodes with 5 queries
    # and halve Adam's 1e-3 every 2,000 episodes; MAML 60,000 meta-updates (batch 32 / 16).
    "paper": Profile(
        iterations={
            "protonet": 20_000,
            "matching": 20_000,
            "matching-fce": 20_000,
            "soft-nn": 20_000,
            "maml": 60_000,
            "maml-fo": 60_000,
            "blackbox": 40_000,
            "pretrain": 20_000,
        },
        meta_batch={
            "protonet": 1,
            "matching": 1,
            "matching-fce": 1,
            "soft-nn": 1,
            "blackbox": 32,
            "pretrain": 8,
        },
        learners=LEARNERS,
        episode_ways=60,
        queries=5,
        train_queries=5,
        lr_halving=2000,
        log_every=100,
        checkpoint_every=2000,
    ),
    # For tests: seconds.
    "tiny": Profile(
        iterations=dict.fromkeys(LEARNERS, 3),
        meta_batch=dict.fromkeys(LEARNERS, 2),
        learners=LEARNERS,
        episode_ways=0,
        queries=1,
        train_queries=1,
        eval_tasks=4,
        sweep_tasks=2,
        shear_levels=(0.5,),
        scale_levels=(0.5,),
        maml_meta_batch_scale=1 / 16,
        hidden=8,
        log_every=1,
        checkpoint_every=2,
    ),
}


def maml_settings(ways: int) -> dict[str, Any]:
    """MAML's Omniglot settings (Finn et al. 2017, section 5.2)."""
    if ways <= 5:
        return {"inner_lr": 0.4, "train_steps": 1, "eval_steps": 3, "meta_batch": 32}
    return {"inner_lr": 0.1, "train_steps": 5, "eval_steps": 5, "meta_batch": 16}


def eval_steps_of(name: str, ways: int) -> tuple[int, ...]:
    """Step counts evaluated on every split (the full 0..10 sweep is on a few splits)."""
    if name in ("maml", "maml-fo"):
        return tuple(sorted({0, 1, maml_settings(ways)["eval_steps"]}))
    if name == "pretrain":
        return (0, 1, 3, 10)
    return (0,)


def report_steps_of(name: str, ways: int) -> int | None:
    if name in ("maml", "maml-fo"):
        return maml_settings(ways)["eval_steps"]
    return 10 if name == "pretrain" else None


def train_split(name: str, profile: Profile, ways: int) -> str:
    if name in EPISODIC and profile.episode_ways > ways:
        return f"train-{profile.episode_ways}way"
    return "train"


def build_learner(name: str, profile: Profile, distribution: OmniglotTasks) -> Learner:
    """The learner called ``name`` on conv4 with ``profile.hidden`` channels."""
    ways, hidden = distribution.ways, profile.hidden
    if name == "protonet":
        return PrototypicalNetwork(
            conv4(hidden=hidden), meta_lr=profile.meta_lr, lr_halving=profile.lr_halving
        )
    if name in ("matching", "matching-fce"):
        return MatchingNetwork(
            conv4(hidden=hidden),
            hidden,
            fce=name == "matching-fce",
            meta_lr=profile.meta_lr,
            lr_halving=profile.lr_halving,
        )
    if name == "soft-nn":
        return SoftNearestNeighbour(
            conv4(hidden=hidden), meta_lr=profile.meta_lr, lr_halving=profile.lr_halving
        )
    if name in ("maml", "maml-fo"):
        settings = maml_settings(ways)
        return MAML(
            conv4(hidden=hidden, out_features=ways, track_running_stats=False),
            F.cross_entropy,
            inner_lr=settings["inner_lr"],
            train_steps=settings["train_steps"],
            eval_steps=settings["eval_steps"],
            first_order=name == "maml-fo",
            meta_lr=profile.meta_lr,
        )
    if name == "blackbox":
        return BlackBoxClassifier(
            conv4(hidden=hidden), hidden, ways, meta_lr=profile.blackbox_meta_lr
        )
    if name == "pretrain":
        return PretrainClassifier(
            conv4(hidden=hidden),
            hidden,
            distribution.num_classes("train"),
            ways,
            meta_lr=profile.meta_lr,
        )
    raise ValueError(f"unknown learner {name!r}; accepted: {', '.join(LEARNERS)}")


def meta_batch_of(name: str, profile: Profile, ways: int) -> int:
    if name in ("maml", "maml-fo"):
        return max(1, round(maml_settings(ways)["meta_batch"] * profile.maml_meta_batch_scale))
    return profile.meta_batch[name]


def make_distribution(
    args: argparse.Namespace, profile: Profile, ways: int, shots: int
) -> OmniglotTasks:
    episode_ways = (profile.episode_ways,) if profile.episode_ways > ways else ()
    return OmniglotTasks(
        ways,
        shots,
        profile.queries,
        train_queries=profile.train_queries,
        train_ways=episode_ways,
        protocol=args.protocol,
        shear_levels=profile.shear_levels,
        scale_levels=profile.scale_levels,
        data_root=args.data_root,
        device=args.device,
    )


def eval_splits(distribution: OmniglotTasks) -> list[str]:
    return [s for s in distribution.splits if not s.startswith("train") and s != "val"]


def sweep_splits(distribution: OmniglotTasks) -> list[str]:
    """``test`` and the strongest shift of each kind."""
    strongest = {}
    for split, (kind, level) in distribution.shifts.items():
        far = level if kind == "shear" else -level
        if kind not in strongest or far > strongest[kind][0]:
            strongest[kind] = (far, split)
    return ["test", *(s for _, s in strongest.values())]


def run_learner(job: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one learner (in a worker process): its results, sweep and predictions."""
    torch.set_num_threads(job["threads"])
    args, profile, ways, shots, name = (
        job["args"],
        job["profile"],
        job["ways"],
        job["shots"],
        job["name"],
    )
    start = time.perf_counter()
    distribution = make_distribution(args, profile, ways, shots)
    out_dir = Path(job["out_dir"]) / "learners" / name
    spec = LearnerSpec(
        name,
        lambda: build_learner(name, profile, distribution),
        TrainConfig(
            profile.iterations[name],
            meta_batch_of(name, profile, ways),
            seed=args.seed,
            log_every=profile.log_every,
            checkpoint_every=profile.checkpoint_every,
            split=train_split(name, profile, ways),
        ),
    )
    results, learners = run_experiment(
        distribution,
        [spec],
        out_dir,
        seed=args.seed,
        splits=eval_splits(distribution),
        eval_tasks=profile.eval_tasks,
        steps=eval_steps_of(name, ways),
        config={"learner": name},
        resume=args.resume,
        device=args.device,
        progress=not args.no_progress,
    )
    learner = learners[name]
    sweep: list[dict[str, Any]] = []
    if name in ("maml", "maml-fo"):
        for split in sweep_splits(distribution):
            tasks = distribution.sample(
                profile.sweep_tasks, split, split_generator(args.seed, split)
            )
            sweep += evaluate(
                learner, distribution, split, tasks, SWEEP_STEPS, progress=not args.no_progress
            )
    example = distribution.sample(1, "test", split_generator(args.seed, "example"))[0].to(
        learner.device
    )
    learner.eval()
    predictor = learner.adapt(example)
    predictions = predictor(example.query.x).argmax(-1).tolist()
    return {
        "name": name,
        "rows": results["rows"],
        "sweep": sweep,
        "predictions": predictions,
        "config": learner.config(),
        "wall_s": time.perf_counter() - start,
    }


def example_task(distribution: OmniglotTasks, seed: int) -> dict[str, Any]:
    task = distribution.sample(1, "test", split_generator(seed, "example"))[0]
    return {
        "split": "test",
        "params": task.params,
        "support_x": task.support.x[:, 0].tolist(),
        "support_y": task.support.y.tolist(),
        "query_x": task.query.x[:, 0].tolist(),
        "query_y": task.query.y.tolist(),
        "predictions": {},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile", default="quick", choices=sorted(PROFILES), help="training budget"
    )
    parser.add_argument(
        "--learners",
        default=None,
        help=f"comma-separated learners (default: the profile's): {', '.join(LEARNERS)}",
    )
    parser.add_argument("--ways", default="5", help="comma-separated ways N, e.g. 5,20")
    parser.add_argument("--shots", default="1", help="comma-separated shots K, e.g. 1,5")
    parser.add_argument(
        "--protocol",
        default="standard",
        choices=("standard", "alphabets"),
        help="character split: standard (1,200 / 423 shuffled characters) or alphabets (train on background)",
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="folder of the Omniglot npz files (else $METAGYM_DATA, else the cache)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of tasks and weight init")
    parser.add_argument("--out", default="runs/omniglot", help="output directory")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the checkpoints in --out"
    )
    parser.add_argument(
        "--iterations", type=int, default=None, help="override every learner's iterations"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="parallel learner processes (0: one per core on CPU, 1 on CUDA)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per process (0: cores / jobs)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_args(argv)


def _int_list(option: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{option} takes positive integers, got {text!r}")
    return list(dict.fromkeys(values))


def run_combination(
    args, profile: Profile, names: list[str], ways: int, shots: int, out_dir: Path
) -> dict:
    """All learners for one ways/shots combination; returns the merged results."""
    distribution = make_distribution(args, profile, ways, shots)  # validates ways/shots on the data
    jobs = args.jobs or (1 if args.device != "cpu" else min(len(names), os.cpu_count() or 1))
    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
    order = sorted(names, key=lambda n: -COST.get(n, 1))
    work = [
        {
            "args": args,
            "profile": profile,
            "ways": ways,
            "shots": shots,
            "name": n,
            "out_dir": str(out_dir),
            "threads": threads,
        }
        for n in order
    ]
    if jobs == 1:
        outcomes = [run_learner(job) for job in work]
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            outcomes = list(pool.map(run_learner, work))
    by_name = {o["name"]: o for o in outcomes}
    rows = [row for n in names for row in by_name[n]["rows"]]
    config = {
        "script": "experiments/omniglot.py",
        "args": vars(args),
        "profile": asdict(profile),
        "distribution": distribution.describe(),
        "learners": {n: by_name[n]["config"] for n in names},
        "train_split": {n: train_split(n, profile, ways) for n in names},
        "meta_batch": {n: meta_batch_of(n, profile, ways) for n in names},
        "report_steps": {n: report_steps_of(n, ways) for n in names},
        "wall_s": {n: round(by_name[n]["wall_s"], 1) for n in names},
        "jobs": jobs,
        "threads": threads,
    }
    results = write_report(
        out_dir,
        rows,
        config=config,
        seed=args.seed,
        title=f"Omniglot {ways}-way {shots}-shot results",
    )
    sweep = [row for n in names for row in by_name[n]["sweep"]]
    if sweep:
        write_results(
            out_dir / "steps_sweep.json", sweep, config={"steps": list(SWEEP_STEPS)}, seed=args.seed
        )
    example = example_task(distribution, args.seed)
    example["predictions"] = {n: by_name[n]["predictions"] for n in names}
    write_json_atomic(example, out_dir / "examples.json")
    with (out_dir / "results.md").open("a") as f:
        f.write("Wall time per learner (training and evaluation, seconds): ")
        f.write(", ".join(f"{n} {config['wall_s'][n]}" for n in names) + "\n")
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    names = check_names(
        "learner",
        [s.strip() for s in args.learners.split(",") if s.strip()]
        if args.learners
        else list(profile.learners),
        LEARNERS,
    )
    ways_list, shots_list = _int_list("--ways", args.ways), _int_list("--shots", args.shots)
    out = check_out_dir(args.out)
    if args.iterations is not None:
        if args.iterations < 1:
            raise ValueError(f"--iterations must be >= 1, got {args.iterations}")
        profile = replace(profile, iterations=dict.fromkeys(LEARNERS, args.iterations))
    if args.jobs < 0 or args.threads < 0:
        raise ValueError("--jobs and --threads must be >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} but CUDA is not available; use --device cpu")
    # Validate every combination on the data before any training starts.
    for ways in ways_list:
        for shots in shots_list:
            make_distribution(args, profile, ways, shots)
    start = time.perf_counter()
    all_results = {}
    for ways in ways_list:
        for shots in shots_list:
            out_dir = out / f"{ways}way-{shots}shot"
            out_dir.mkdir(parents=True, exist_ok=True)
            all_results[(ways, shots)] = run_combination(args, profile, names, ways, shots, out_dir)
            plots = redraw(out_dir)
            print((out_dir / "results.md").read_text())
            print("plots: " + ", ".join(str(p) for p in plots))
    print(f"wall time {time.perf_counter() - start:.0f} s")
    return {f"{w}way-{k}shot": r for (w, k), r in all_results.items()}


if __name__ == "__main__":
    try:
        main()
    except (ValueError, NotADirectoryError, OmniglotDataError) as error:
        sys.exit(f"error: {error}")
