"""The one meta-training loop, for every learner and domain.

Each iteration draws a meta-batch of ``train`` tasks from an explicit generator and calls
``learner.meta_train_step``. Metrics go to ``metrics.csv``; checkpoints (learner, meta-optimizer,
generator state) are written atomically, so ``resume=True`` reaches the same final weights as an
uninterrupted run with the same seed.

Under ``torchrun`` (several processes), every meta-batch is split across the processes and the
meta-gradients are all-reduced (:mod:`metagym.distributed`); only rank 0 writes files.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from metagym.checkpoint import load_checkpoint, save_atomic
from metagym.distributed import DistributedMetaBatch
from metagym.learners.base import Learner
from metagym.metrics_log import MetricsLog
from metagym.provenance import code_fingerprint
from metagym.tasks.base import TaskDistribution, make_generator


class TrainingDiverged(RuntimeError):
    """A loss or weight became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Settings of one meta-training run."""

    iterations: int
    """number of meta-updates"""
    meta_batch: int
    """tasks per meta-update"""
    seed: int = 0
    """seed of the task generator"""
    log_every: int = 100
    """iterations between rows of metrics.csv"""
    checkpoint_every: int = 1000
    """iterations between checkpoints (one is always written at the end)"""
    split: str = "train"
    """split the meta-batches are drawn from"""
    keep_checkpoints: bool = False
    """also keep each checkpoint as ``checkpoints/iter-NNNNNN.pt`` (for ``metagym evaluate
    --checkpoints``: the score against meta-training time)"""

    def validate(self) -> None:
        for name in ("iterations", "meta_batch", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _last_good(path: Path) -> str:
    if path.exists():
        return f"the last good checkpoint is {path}"
    return "no checkpoint was written before"


#: TrainConfig fields a checkpoint must share with the run that continues it (the others only
#: change how often it logs and saves, or, ``iterations``, how far it goes).
_DEFINING = ("meta_batch", "seed", "split")


def _check_same_training(state: dict, config: TrainConfig, path: Path) -> None:
    """Refuse a checkpoint written under another seed, meta-batch or split, by other code, or
    past the end."""
    saved = state.get("config") or {}
    changed = [
        f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}"
        for k in _DEFINING
        if k in saved and saved[k] != getattr(config, k)
    ]
    if changed:
        raise ValueError(
            f"--resume: {path} was written by another training ({'; '.join(changed)}); delete "
            f"{path.parent} to train that learner afresh"
        )
    code = state.get("code")
    if code is not None and code != code_fingerprint():
        raise ValueError(
            f"--resume: {path} was written by other metagym code (source fingerprint {code}, "
            f"this is {code_fingerprint()}): continuing it would mix two trainings; delete "
            f"{path.parent} to train that learner afresh, or resume with the code that wrote it"
        )
    if int(state["iteration"]) > config.iterations:
        raise ValueError(
            f"--resume: {path} is at iteration {state['iteration']}, past the {config.iterations} "
            f"asked; delete {path.parent} to train that learner afresh"
        )


def _all_finite(learner: Learner) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in learner.parameters())


def train(
    learner: Learner,
    distribution: TaskDistribution,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    tensorboard: bool = False,
    progress: bool = True,
) -> Path:
    """Meta-train ``learner`` on ``distribution``; return the path of the final checkpoint.

    Writes ``run_dir/metrics.csv`` and ``run_dir/checkpoint.pt``. With ``resume``, continues from
    that checkpoint (if any). Raises :class:`TrainingDiverged` on a non-finite loss or weight.

    Under ``torchrun`` the learner moves to this rank's device, each rank adapts to its share of
    every meta-batch, and only rank 0 writes ``run_dir`` (see :mod:`metagym.distributed`).
    """
    config.validate()
    distribution.check_split(config.split)
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"run directory {run_dir} is a file")
    distributed = DistributedMetaBatch.from_environment(learner, config.meta_batch)
    writer = distributed is None or distributed.is_main
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        # temporary files of atomic writes a killed run left (the folder is locked: none is live)
        for stale in [*run_dir.glob(".*.tmp"), *run_dir.glob("checkpoints/.*.tmp")]:
            stale.unlink(missing_ok=True)
    checkpoint_path = run_dir / "checkpoint.pt"

    generator = make_generator(config.seed)
    start = 0
    state = None
    if resume and writer and checkpoint_path.exists():
        map_location = learner.device if distributed is None else "cpu"
        state = load_checkpoint(checkpoint_path, map_location=map_location)
    if distributed is not None:
        state = distributed.broadcast_object(state)  # rank 0's checkpoint reaches every rank
    if state is not None:
        _check_same_training(state, config, checkpoint_path)
        learner.load_checkpoint_state(state["learner"])
        generator.set_state(state["generator"])
        start = int(state["iteration"])
    log = (
        MetricsLog(
            run_dir / "metrics.csv",
            resume_iteration=start if resume else None,
            tensorboard=tensorboard,
        )
        if writer
        else None
    )

    def save(iteration: int) -> None:
        if not writer:
            return
        state = {
            "learner": learner.checkpoint_state(),
            "generator": generator.get_state(),
            "iteration": iteration,
            "config": asdict(config),
            "code": code_fingerprint(),
            # the metrics of iterations not yet in a metrics.csv row (log_every need not divide
            # checkpoint_every): a resumed run's next row then averages what an uninterrupted
            # run's does, over the same seconds
            "pending": {"sums": dict(sums), "count": count, "seconds": time.perf_counter() - tick},
        }
        if config.keep_checkpoints:  # first: a kill between the two writes leaves no gap
            save_atomic(state, run_dir / "checkpoints" / f"iter-{iteration:06d}.pt")
        save_atomic(state, checkpoint_path)

    pending = (state or {}).get("pending") or {}
    sums: dict[str, float] = dict(pending.get("sums") or {})
    count, tick = int(pending.get("count", 0)), time.perf_counter() - pending.get("seconds", 0.0)
    learner.train()
    bar = tqdm(
        range(start, config.iterations),
        initial=start,
        total=config.iterations,
        desc=f"train {learner.name}",
        disable=not progress or not writer,
        dynamic_ncols=True,
    )
    try:
        if distributed is not None:
            distributed.attach()
        for index in bar:
            iteration = index + 1
            tasks = distribution.sample(config.meta_batch, config.split, generator)
            if distributed is not None:
                tasks = distributed.shard(tasks)
            tasks = [t.to(learner.device) for t in tasks]
            metrics = learner.meta_train_step(tasks)
            if distributed is not None:
                metrics = distributed.end_step(metrics)
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            if bad:
                raise TrainingDiverged(
                    f"{learner.name}: {', '.join(bad)} became non-finite at iteration {iteration}; "
                    f"{_last_good(checkpoint_path)} (lower the learning rates)"
                )
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            last = iteration == config.iterations
            if iteration % config.log_every == 0 or last:
                elapsed = time.perf_counter() - tick
                row = {k: v / count for k, v in sums.items()}
                row["charts/iterations_per_second"] = count / max(elapsed, 1e-9)
                if log is not None:
                    log.log(iteration, row)
                bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in row.items()})
                sums, count, tick = {}, 0, time.perf_counter()
            if iteration % config.checkpoint_every == 0 or last:
                if distributed is not None:
                    distributed.check_in_sync()
                if not _all_finite(learner):
                    raise TrainingDiverged(
                        f"{learner.name}: weights became non-finite by iteration {iteration}; "
                        f"{_last_good(checkpoint_path)}"
                    )
                save(iteration)
    finally:
        bar.close()
        if log is not None:
            log.close()
        if distributed is not None:
            distributed.close()
    if start >= config.iterations and writer and not checkpoint_path.exists():
        save(start)
    if distributed is not None:
        distributed.barrier()  # rank 0's checkpoint is complete before any rank returns
    return checkpoint_path
