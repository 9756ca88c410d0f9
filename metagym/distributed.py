"""Multi-process meta-training with ``torch.distributed``, launched by ``torchrun``.

Run any experiment script under ``torchrun`` and the one training loop (:func:`metagym.train.train`)
splits every meta-batch across the processes::

    torchrun --nproc-per-node 4 experiments/sinusoid.py --device cuda --out runs/sinusoid

How a meta-iteration runs on ``W`` processes (ranks):

1. Every rank draws the *whole* meta-batch from the same seeded task generator (drawing tasks is
   cheap next to adapting to them) and keeps its contiguous share: rank ``r`` of ``W`` adapts to
   tasks ``[r * T // W, (r + 1) * T // W)``. The union of the shares is exactly the meta-batch of a
   single-process run with the same seed, whatever ``W``.
2. Each rank computes the meta-gradient of its own tasks (any learner, any backend).
3. Just before the meta-optimizer's step (a ``torch.optim`` step pre-hook, so no learner changes),
   the gradients are all-reduced, each rank's weighted by its share of the tasks: every rank then
   holds the gradient of the whole meta-batch, takes the same optimizer step, and the weights stay
   identical across ranks (they are broadcast from rank 0 once at the start).
4. Metrics are averaged the same way; only rank 0 writes ``metrics.csv`` and checkpoints, and on
   resume rank 0's checkpoint is broadcast to the others (no shared file system needed).

A learner whose update is not a ``torch.optim`` step (MAML-RL's TRPO step) declares an attribute
``mean_over_processes``, a function ``tensor -> tensor`` that is the identity in one process.
While attached, it is replaced by :meth:`DistributedMetaBatch.mean`, the share-weighted all-reduce,
and the learner applies it to every number its update needs from the whole meta-batch (for TRPO:
the policy gradient, each Fisher-vector product, the line search's loss and KL). Its tasks' data
must not depend on which other tasks share its process (MAML-RL seeds each task's episodes by the
task's own seeds).

Backends: NCCL when the learner is on a GPU (each rank takes ``cuda:LOCAL_RANK``), gloo on CPU.
This assumes, as every learner of the library does, that a learner's meta-loss is the mean of
per-task losses over the tasks it is given.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


def environment_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``), 1 outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run): the process that should write files."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def shard_bounds(n_tasks: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``n_tasks`` tasks (sizes differ by
    at most one)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    return rank * n_tasks // world_size, (rank + 1) * n_tasks // world_size


def init_process_group(device: torch.device) -> None:
    """Initialize the default process group from torchrun's environment (NCCL for CUDA devices,
    gloo otherwise), once per process; it is destroyed at exit."""
    if dist.is_initialized():
        return
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE > 1 but {', '.join(missing)} unset: launch with torchrun "
            "(see docs/performance.md)"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(backend=backend, **kwargs)
    atexit.register(_destroy)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """The device this rank should use: ``cuda:LOCAL_RANK`` for CUDA, ``device`` otherwise."""
    if device.type != "cuda":
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(
            f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs: start at most one "
            "process per GPU (torchrun --nproc-per-node)"
        )
    return torch.device("cuda", local_rank)


class DistributedMetaBatch:
    """Splits meta-batches across ranks and all-reduces one learner's meta-gradients.

    Use :meth:`from_environment`, which returns None for a single-process run. While attached
    (between :meth:`attach` and :meth:`close`), the learner's meta-optimizer all-reduces the
    gradients before each step, and a learner with a ``mean_over_processes`` attribute (MAML-RL)
    has it set to :meth:`mean`. A learner that updates its weights some other way, using neither,
    is refused by :meth:`end_step` rather than left to drift apart across ranks.

    Args:
        learner: a :class:`metagym.learners.Learner` (an ``nn.Module`` with ``optimizer``).
        meta_batch: tasks per meta-iteration (at least the number of ranks).
    """

    def __init__(self, learner: nn.Module, meta_batch: int):
        if not dist.is_initialized():
            raise RuntimeError("DistributedMetaBatch needs an initialized process group")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        if meta_batch < self.world_size:
            raise ValueError(
                f"meta-batch {meta_batch} is smaller than the {self.world_size} processes: every "
                "rank needs at least one task; raise the meta-batch or start fewer processes"
            )
        self.learner = learner
        self.meta_batch = meta_batch
        self.device = next(learner.parameters()).device
        self.weight = 1.0
        self.broadcast_state(learner)
        self._hook: Any = None
        self._local_mean: Any = None
        self._reductions = 0

    @classmethod
    def from_environment(cls, learner: nn.Module, meta_batch: int) -> DistributedMetaBatch | None:
        """None in a single process; under torchrun, move ``learner`` to this rank's device,
        initialize the process group if needed, and attach to ``learner``."""
        if environment_world_size() <= 1:
            return None
        device = rank_device(next(learner.parameters()).device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        learner.to(device)
        init_process_group(device)
        return cls(learner, meta_batch)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def attach(self) -> None:
        """All-reduce the gradients before every step of the learner's meta-optimizer, and give a
        learner with a ``mean_over_processes`` attribute :meth:`mean` in its place."""
        if self._hook is None:
            self._hook = self.learner.optimizer.register_step_pre_hook(self._before_step)
        if self._local_mean is None and hasattr(self.learner, "mean_over_processes"):
            self._local_mean = self.learner.mean_over_processes
            self.learner.mean_over_processes = self._counted_mean

    def close(self) -> None:
        """Detach from the learner (the process group stays for later runs)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._local_mean is not None:
            self.learner.mean_over_processes = self._local_mean
            self._local_mean = None

    # -- tasks ---------------------------------------------------------------------------------
    def shard(self, tasks: Sequence[T]) -> list[T]:
        """This rank's contiguous share of the meta-batch ``tasks`` (the same list on every rank)."""
        start, stop = shard_bounds(len(tasks), self.world_size, self.rank)
        self.weight = (stop - start) / len(tasks)
        return list(tasks[start:stop])

    # -- collectives ---------------------------------------------------------------------------
    def _counted_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        self._reductions += 1
        return self.mean(tensor)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The share-weighted sum over ranks of ``tensor`` (same shape on every rank): the whole
        meta-batch's mean of a number each rank computed as the mean over its own tasks. A new
        tensor, identical on every rank; ``tensor`` is left alone."""
        out = tensor.detach().to(self.device) * self.weight
        dist.all_reduce(out)
        return out.to(tensor.device)

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._reductions += 1
        self.all_reduce_gradients([p for group in optimizer.param_groups for p in group["params"]])

    def all_reduce_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Replace each ``.grad`` by the share-weighted sum over ranks: the whole meta-batch's
        gradient. A parameter without a gradient on every rank keeps none (as in one process)."""
        params = list(params)
        present = torch.tensor(
            [float(p.grad is not None) for p in params], device=self.device, dtype=torch.float32
        )
        dist.all_reduce(present)
        reduced = [p for p, n in zip(params, present.tolist(), strict=True) if n > 0]
        if not reduced:
            return
        flat = torch.cat(
            [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in reduced]
        )
        flat.mul_(self.weight)
        dist.all_reduce(flat)
        offset = 0
        for p in reduced:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def end_step(self, metrics: dict[str, float]) -> dict[str, float]:
        """After a ``meta_train_step``: check that its update went through the meta-optimizer or
        :meth:`mean` (so it was all-reduced) and return the metrics averaged over ranks."""
        if self._reductions == 0:
            name = getattr(self.learner, "name", type(self.learner).__name__)
            raise RuntimeError(
                f"learner {name!r} updated its weights without a step of its optimizer "
                "(learner.optimizer) and without mean_over_processes, so its meta-gradients "
                "cannot be all-reduced across processes; train it in a single process, or give "
                "it a mean_over_processes attribute (see metagym.distributed)"
            )
        self._reductions = 0
        return self.reduce_metrics(metrics)

    def check_in_sync(self) -> None:
        """Raise if the learner's weights differ across ranks (they should be identical)."""
        with torch.no_grad():
            total = sum(
                (p.detach().double().sum() for p in self.learner.parameters()),
                torch.zeros((), dtype=torch.float64, device=self.device),
            )
            low, high = total.clone(), total.clone()
            dist.all_reduce(low, op=dist.ReduceOp.MIN)
            dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if float(high - low) > 1e-9 * max(1.0, abs(float(total))):
            raise RuntimeError(
                f"the learner's weights differ across processes (sums from {float(low)} to "
                f"{float(high)}); its meta-training step is not deterministic across ranks"
            )

    def reduce_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Share-weighted average of every rank's metrics (the whole meta-batch's means)."""
        keys = sorted(metrics)
        values = torch.tensor(
            [metrics[k] * self.weight for k in keys], device=self.device, dtype=torch.float64
        )
        dist.all_reduce(values)
        return dict(zip(keys, values.tolist(), strict=True))

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank (picklable; keep tensors on the CPU)."""
        box = [obj]
        dist.broadcast_object_list(box, src=src, device=self.device)
        return box[0]

    def broadcast_state(self, module: nn.Module, src: int = 0) -> None:
        """Overwrite ``module``'s parameters and buffers with rank ``src``'s."""
        with torch.no_grad():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=src)

    def barrier(self) -> None:
        dist.barrier()
