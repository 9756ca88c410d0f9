"""Reinforcement learning: vectorized episode collection (:mod:`.sampler`), MAML-RL
(:mod:`.maml_rl`), RL^2 (:mod:`.rl2`), stable-baselines3 and bandit baselines."""

from metagym.rl.maml_rl import MAMLRL  # noqa: E402  (after the sampler it builds on)
from metagym.rl.rl2 import RL2  # noqa: E402
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
from metagym.rl.sb3_learners import PPOBaseline, RandomLearner  # noqa: E402
from metagym.tasks.trials import RL2TrialWrapper, TrialTaskDistribution

__all__ = [
    "MAMLRL",
    "PPOBaseline",
    "RL2",
    "RL2TrialWrapper",
    "RandomLearner",
    "TrialTaskDistribution",
    "EpisodeSampler",
    "Episodes",
    "Policy",
    "PolicyOutput",
    "collect_episodes",
    "draw",
    "episode_seed",
    "random_policy",
]
