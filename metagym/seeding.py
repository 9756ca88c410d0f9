"""Explicit seeds: generators made from seeds, the generator of a split's evaluation tasks,
learners built under a seeded fork of the global generator, and a block that seeds and restores
the global generators for libraries that draw from them."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from metagym.tasks.base import make_generator

if TYPE_CHECKING:
    from metagym.learners.base import Learner

__all__ = ["build_seeded", "isolated_rng", "make_generator", "split_generator"]


def build_seeded(build: Callable[[], Learner], seed: int) -> Learner:
    """Call ``build`` with the global generator forked and seeded, so weight init is reproducible
    and leaves the caller's random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def split_generator(seed: int, split: str) -> torch.Generator:
    """The generator of a split's evaluation tasks: the same for every learner of a run."""
    return make_generator(seed * 1_000_003 + zlib.crc32(split.encode()))


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
