"""Reinforcement learning: vectorized episode collection over batches of tasks (:mod:`.sampler`)."""

from metagym.rl.sampler import (
    Episodes,
    EpisodeSampler,
    Policy,
    PolicyOutput,
    collect_episodes,
    draw,
    episode_seed,
    random_policy,
)

__all__ = [
    "EpisodeSampler",
    "Episodes",
    "Policy",
    "PolicyOutput",
    "collect_episodes",
    "draw",
    "episode_seed",
    "random_policy",
]
