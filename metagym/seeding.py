"""Explicit seeds: generators made from seeds, the generator of a split's evaluation tasks,
learners built under a seeded fork of the global generator, and a block that seeds and restores
the global generators for libraries that draw from them."""

from __future__ import annotations

import hashlib
import random
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from metagym.tasks.base import make_generator

if TYPE_CHECKING:
    from metagym.learners.base import Learner
    from metagym.tasks.base import TaskDistribution

__all__ = [
    "build_seeded",
    "eval_task_stream",
    "isolated_rng",
    "make_generator",
    "split_generator",
]

#: Evaluation tasks are drawn in blocks of this many, each block from a generator of its own, so
#: the first n tasks of a split's stream are the same whatever number of tasks is drawn.
TASK_BLOCK = 50
#: Written into a run's definition: a run whose stream differs cannot be extended or re-scored.
TASK_STREAM = f"blocks of {TASK_BLOCK} (blake2b of seed, split, block)"


def build_seeded(build: Callable[[], Learner], seed: int) -> Learner:
    """Call ``build`` with the global generator forked and seeded, so weight init is reproducible
    and leaves the caller's random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def split_generator(seed: int, split: str) -> torch.Generator:
    """The generator of a split's evaluation tasks: the same for every learner of a run."""
    return make_generator(seed * 1_000_003 + zlib.crc32(split.encode()))


def block_generator(seed: int, split: str, block: int) -> torch.Generator:
    """The generator of block ``block`` of the evaluation stream of ``split``."""
    digest = hashlib.blake2b(f"{seed}/{split}/{block}".encode(), digest_size=8).digest()
    return make_generator(int.from_bytes(digest, "big") >> 1)


def eval_task_stream(
    distribution: TaskDistribution, split: str, seed: int, n: int, start: int = 0
) -> list[Any]:
    """Tasks ``start .. n - 1`` of the evaluation stream of ``split`` under ``seed``: the same
    tasks for every learner of a run, and the first tasks of a longer stream are those of a
    shorter one (each block of :data:`TASK_BLOCK` tasks is drawn from its own generator;
    distributions that stratify a draw, such as Meta-World's envs, stratify within a block)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of evaluation tasks must be a positive int, got {n!r}")
    if not 0 <= start <= n:
        raise ValueError(f"start must be between 0 and {n}, got {start}")
    tasks: list[Any] = []
    for block in range(start // TASK_BLOCK, (n + TASK_BLOCK - 1) // TASK_BLOCK):
        first = block * TASK_BLOCK
        drawn = distribution.sample(TASK_BLOCK, split, block_generator(seed, split, block))
        lo, hi = max(start, first) - first, min(n, first + TASK_BLOCK) - first
        tasks.extend(drawn[lo:hi])
    return tasks


class isolated_rng:  # noqa: N801 (a context manager used like a function)
    """Seed torch's, numpy's and Python's global generators inside the block and restore them
    after, for libraries (Stable-Baselines3) that draw from global state."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self._torch = torch.random.get_rng_state()
        self._numpy = np.random.get_state()
        self._python = random.getstate()
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)
        random.seed(self.seed)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self._torch)
        np.random.set_state(self._numpy)
        random.setstate(self._python)
