"""The slow RL^2 learning tests' check: after meta-training, the trial's second episode beats
its first on new tasks by more than the paired 95% interval."""

from __future__ import annotations

import numpy as np

from metagym.tasks.base import make_generator


def assert_second_episode_beats_the_first(learner, dist, iterations: int) -> None:
    """Meta-train ``learner`` for ``iterations`` steps of 20 ``train`` tasks, then score 20
    ``test`` tasks' first and second episodes; the paired gain must clear its interval."""
    generator = make_generator(1)
    for _ in range(iterations):
        learner.meta_train_step(dist.sample(20, "train", generator))
    tasks = dist.sample(20, "test", make_generator(7))
    first = np.array([dist.score(learner.adapt(t, 0), t) for t in tasks])
    second = np.array([dist.score(learner.adapt(t, 1), t) for t in tasks])
    gain = second - first
    assert gain.mean() > 1.96 * gain.std(ddof=1) / np.sqrt(len(gain)), (first, second)
