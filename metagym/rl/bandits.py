"""Classic bandit algorithms as sampler policies on RL^2 trials, and learners around them.

They read the previous arm and reward from :class:`metagym.tasks.trials.RL2TrialWrapper`'s
observation ``[obs, one-hot previous arm, previous reward, done flag]`` and keep per-row counts
that the sampler's ``reset_memory`` clears at the start of each trial, so they are scored on
exactly the trials and tasks RL^2 is scored on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from metagym.learners.base import Learner, Predictor


class BanditPolicy:
    """Base class: per-row pull counts and reward sums over ``k`` arms."""

    def __init__(self, k: int, obs_dim: int = 1):
        self.k, self.obs_dim = k, obs_dim
        self.counts: np.ndarray | None = None
        self.sums: np.ndarray | None = None

    def reset_memory(self, mask: Tensor) -> None:
        if self.counts is None or self.counts.shape[0] != mask.shape[0]:
            self.counts = np.zeros((mask.shape[0], self.k))
            self.sums = np.zeros((mask.shape[0], self.k))
        rows = mask.cpu().numpy().astype(bool)
        self.counts[rows] = 0
        self.sums[rows] = 0

    def __call__(self, observations: Tensor) -> Tensor:
        obs = observations.cpu().numpy()
        if self.counts is None or self.counts.shape[0] != obs.shape[0]:
            self.reset_memory(torch.ones(obs.shape[0], dtype=torch.bool))
        onehot = obs[:, self.obs_dim : self.obs_dim + self.k]
        pulled = onehot.sum(1) > 0
        arms = onehot.argmax(1)
        rows = np.nonzero(pulled)[0]
        self.counts[rows, arms[rows]] += 1
        self.sums[rows, arms[rows]] += obs[rows, -2]
        return torch.as_tensor(self.choose(), dtype=torch.int64)

    def choose(self) -> np.ndarray:
        raise NotImplementedError


class UCB1(BanditPolicy):
    """UCB1 (Auer et al. 2002): pull each arm once, then the arm maximizing
    ``mean + sqrt(2 ln t / n)``."""

    def choose(self) -> np.ndarray:
        counts = self.counts
        t = counts.sum(1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = self.sums / counts + np.sqrt(2 * np.log(np.maximum(t, 1)) / counts)
        score = np.where(counts == 0, np.inf, score)
        return score.argmax(1)


class Thompson(BanditPolicy):
    """Thompson sampling with Beta(1, 1) priors on Bernoulli arms, from an explicit seed."""

    def __init__(self, k: int, obs_dim: int = 1, seed: int = 0):
        super().__init__(k, obs_dim)
        self.rng = np.random.default_rng(seed)

    def choose(self) -> np.ndarray:
        samples = self.rng.beta(1 + self.sums, 1 + self.counts - self.sums)
        return samples.argmax(1)


class BanditLearner(Learner):
    """A non-learning learner that plays ``UCB1`` or ``Thompson`` on each task's trials."""

    uses_steps = False
    trainable = False
    scored_on = "trial"

    def __init__(self, algorithm: str, k: int, obs_dim: int = 1):
        super().__init__()
        if algorithm not in ("ucb1", "thompson"):
            raise ValueError(f"unknown bandit algorithm {algorithm!r}; accepted: ucb1, thompson")
        self.name, self.k, self.obs_dim = algorithm, k, obs_dim

    def env_steps(self, steps: int | None) -> int:
        return 0

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k}

    def meta_train_step(self, tasks) -> dict[str, float]:
        return {}

    def adapt(self, task: Any, steps: int | None = None) -> Predictor:
        if self.name == "ucb1":
            return UCB1(self.k, self.obs_dim)
        return Thompson(self.k, self.obs_dim, seed=int(task.eval_seed))
