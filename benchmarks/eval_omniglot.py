"""Omniglot MAML evaluation on each backend: task by task through higher (the reference) and
through the torch.func loop, and chunks of tasks in one vmap call.

    python -m benchmarks.eval_omniglot --data-root ../shared/data/omniglot --tasks 100

Builds the quick profile's MAML net (conv4, 64 channels, BatchNorm with batch statistics, 5-way
1-shot, 1 query per class, inner lr 0.4), draws ``--tasks`` tasks of the ``test`` split and times
:func:`metagym.evaluate.evaluate` at the quick profile's steps (0, 1, 3) and at the step sweep's
(0, 1, 2, 3, 5, 10), with the same weights on every path, interleaved (the order rotating),
``--rounds`` times (median seconds per task, wall clock and CPU time, and higher's time over each
path's). It also reports the largest difference of the mean accuracies (they must be equal up to
rounding: the same tasks, the same adaptation). ``--train N`` first meta-trains N steps so that the
accuracies are not chance. A measurement, never a test.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from torch.nn import functional as F

from metagym.evaluate import evaluate
from metagym.learners import MAML
from metagym.nets.conv4 import conv4
from metagym.tasks import make_generator
from metagym.tasks.omniglot import OmniglotTasks


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_omniglot")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train", type=int, default=0, help="meta-training steps first")
    parser.add_argument("--chunk", type=int, default=None, help="tasks per vmap call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON output file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    distribution = OmniglotTasks(5, 1, 1, train_queries=5, data_root=args.data_root)
    torch.manual_seed(0)
    loop = MAML(
        conv4(1, 64, out_features=5, track_running_stats=False),
        F.cross_entropy,
        inner_lr=0.4,
        eval_steps=3,
        backend="higher",
    )
    generator = make_generator(0)
    for _ in range(args.train):
        loop.meta_train_step(distribution.sample(8, "train", generator))
    learners = {"higher": loop}
    for backend in ("loop", "vmap"):
        learners[backend] = copy.deepcopy(loop)
        learners[backend].backend, learners[backend].chunk_size = backend, args.chunk
    tasks = distribution.sample(args.tasks, "test", make_generator(1))
    results: dict = {"tasks": args.tasks, "train_steps": args.train, "chunk": args.chunk}
    for label, steps in (
        ("profile steps (0, 1, 3)", (0, 1, 3)),
        ("sweep (0..10)", (0, 1, 2, 3, 5, 10)),
    ):
        seconds: dict[str, list[float]] = {name: [] for name in learners}
        cpu: dict[str, list[float]] = {name: [] for name in learners}
        means: dict[str, list[float]] = {}
        for r in range(args.rounds):
            order = list(learners.items())
            for name, learner in order[r % len(order) :] + order[: r % len(order)]:
                start, start_cpu = time.perf_counter(), time.thread_time()
                rows = evaluate(learner, distribution, "test", tasks, steps, progress=False)
                seconds[name].append((time.perf_counter() - start) / len(tasks))
                cpu[name].append((time.thread_time() - start_cpu) / len(tasks))
                means[name] = [row["mean"] for row in rows]
        medians = {name: statistics.median(v) for name, v in seconds.items()}
        cpu_medians = {name: statistics.median(v) for name, v in cpu.items()}
        diff = max(
            abs(a - b)
            for name in learners
            for a, b in zip(means[name], means["higher"], strict=True)
        )
        results[label] = {
            "s_per_task": medians,
            "cpu_s_per_task": cpu_medians,
            "higher_over": {n: medians["higher"] / m for n, m in medians.items()},
            "higher_over_cpu": {n: cpu_medians["higher"] / m for n, m in cpu_medians.items()},
            "mean_accuracy": means,
            "max_accuracy_difference": diff,
        }
        print(
            f"{label}: "
            + ", ".join(
                f"{n} {medians[n] * 1e3:.1f} ms/task (CPU {cpu_medians[n] * 1e3:.1f}, "
                f"higher/{n} x{results[label]['higher_over_cpu'][n]:.2f})"
                for n in learners
            )
            + f"; accuracies {means}",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
