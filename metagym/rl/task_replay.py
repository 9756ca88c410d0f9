"""Replay of many tasks at once: one ring buffer of transitions per task slot (PEARL's per-task
replay buffers).

A pool of ``slots`` tasks, each with room for ``capacity`` transitions of ``width`` floats. A new
task takes the next slot in turn (the oldest task's data is dropped: a continuous task
distribution never repeats a task, so the pool holds the most recent ``slots`` tasks); a full slot
overwrites its oldest transitions. The storage is registered as buffers, so a learner's
``state_dict`` (and so its checkpoint) holds the whole pool.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["TaskReplay"]


class TaskReplay(nn.Module):
    """Transitions of up to ``slots`` tasks, ``capacity`` per task, each a row of ``width``
    floats."""

    def __init__(self, slots: int, capacity: int, width: int):
        super().__init__()
        if slots < 1 or capacity < 1 or width < 1:
            raise ValueError(
                f"slots, capacity and width must be >= 1, got {slots, capacity, width}"
            )
        self.register_buffer("data", torch.zeros(slots, capacity, width))
        self.register_buffer("counts", torch.zeros(slots, dtype=torch.int64))
        self.register_buffer("next_slot", torch.zeros((), dtype=torch.int64))
        self.register_buffer("tasks_added", torch.zeros((), dtype=torch.int64))

    @property
    def slots(self) -> int:
        return self.data.shape[0]

    @property
    def capacity(self) -> int:
        return self.data.shape[1]

    def filled(self) -> Tensor:
        """Indices of the slots that hold data, ``(S,)`` int64."""
        return torch.nonzero(self.counts > 0).flatten()

    def new_task(self) -> int:
        """Empty the next slot in turn for a new task and return its index."""
        slot = int(self.next_slot)
        self.counts[slot] = 0
        self.next_slot.fill_((slot + 1) % self.slots)
        self.tasks_added += 1
        return slot

    def clear(self, slot: int) -> None:
        self.counts[slot] = 0

    def add(self, slot: int, rows: Tensor) -> None:
        """Append ``rows (n, width)`` to ``slot`` (its oldest rows are overwritten when full)."""
        rows = rows.reshape(-1, self.data.shape[2]).to(self.data.dtype)
        n = rows.shape[0]
        if n > self.capacity:
            rows, n = rows[-self.capacity :], self.capacity
        start = int(self.counts[slot])
        positions = (start + torch.arange(n)) % self.capacity
        self.data[slot, positions] = rows
        self.counts[slot] = start + n

    def size(self, slot: int) -> int:
        return min(int(self.counts[slot]), self.capacity)

    def rows(self, slot: int) -> Tensor:
        """Every transition held for ``slot``, ``(n, width)`` (in no particular order)."""
        return self.data[slot, : self.size(slot)]

    def sample(self, slots: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """``n`` transitions drawn uniformly with replacement from each of ``slots (K,)``:
        ``(K, n, width)``. Every slot must hold data."""
        sizes = self.counts[slots].clamp_max(self.capacity)
        if bool((sizes == 0).any()):
            raise ValueError("cannot sample from an empty task slot")
        u = torch.rand(len(slots), n, generator=generator)
        index = (u * sizes[:, None]).long().clamp_max(sizes[:, None] - 1)
        return self.data[slots[:, None], index]
