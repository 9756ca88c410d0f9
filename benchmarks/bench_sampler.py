"""Environment steps per second: one raw environment vs the vectorized episode sampler.

For each environment it measures

- ``raw``: ``gymnasium.make(id)`` stepped with ``env.action_space.sample()`` actions (the usual
  "random actions" rate; drawing the action is part of the loop);
- ``raw step only``: the same loop with the actions drawn beforehand (the environment's own cost);
- ``sampler``: :class:`metagym.rl.EpisodeSampler` collecting complete episodes for a batch of
  tasks with a small MLP Gaussian policy (2 x 64 tanh), one batched forward per vector step,
  everything recorded (observations, actions, rewards, dones, log-probabilities).

and reports ``sampler / raw``. With the ``metaworld`` extra it adds Meta-World ML1 reach-v3
(``metaworld/ML1-reach-v3``, 500-step episodes, the 39-dim observations) and, as its ``raw step
only`` loop, the bare Sawyer environment (``metaworld``'s own class, its task set, no wrapper).
Run it with ``python -m benchmarks.bench_sampler`` (``--help`` for
sizes); it is a measurement, never a test.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import gymnasium as gym
import metagym_envs  # noqa: F401  (registers metagym/*)
import numpy as np
import torch
from torch import nn
from torch.distributions import Independent, Normal

from metagym.rl import EpisodeSampler

# (env id, tasks, episodes per task) per benchmark: 40 and 200 sub-environments.
DEFAULT_CASES = (
    ("metagym/HalfCheetahVel-v0", 10, 4),
    ("metagym/Navigation2D-v0", 20, 10),
)
#: Meta-World (when installed): 4 tasks x 10 episodes of 500 steps, 40 Sawyer environments.
METAWORLD_CASE = ("metaworld/ML1-reach-v3", 4, 10)
#: Raw-loop steps for Meta-World (its steps cost about 1 ms: 20,000 would take minutes).
METAWORLD_RAW_STEPS = 3_000


def cases() -> tuple[tuple[str, int, int], ...]:
    """The default cases, plus Meta-World when the metaworld package is installed."""
    try:
        import metaworld  # noqa: F401
    except ImportError:
        return DEFAULT_CASES
    return (*DEFAULT_CASES, METAWORLD_CASE)


def bare_metaworld_env(env_id: str):
    """The Sawyer environment behind ``env_id`` with its first train task set, no wrapper."""
    env = gym.make(env_id).unwrapped
    return env._sawyer


class MLPPolicy(nn.Module):
    """A Gaussian policy: observation ``(N, obs_dim)`` -> Independent Normal over ``(N, act_dim)``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, act_dim),
        )
        self.log_std = nn.Parameter(torch.full((act_dim,), -0.5))

    def forward(self, observations: torch.Tensor) -> Independent:
        mean, std = self.body(observations), self.log_std.exp()
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)


def raw_rate(env_id: str, steps: int, seed: int, presampled: bool) -> float:
    """Steps per second of one ``gymnasium.make(env_id)`` with random actions (resets included);
    ``presampled``: actions drawn beforehand, and for Meta-World the bare Sawyer environment."""
    bare = presampled and env_id.startswith("metaworld/")
    env = bare_metaworld_env(env_id) if bare else gym.make(env_id)
    env.reset(seed=None if bare else seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)] if presampled else None
    start = time.perf_counter()
    for i in range(steps):
        action = actions[i] if presampled else env.action_space.sample()
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated or (bare and env.curr_path_length >= env.max_path_length):
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


class SamplerRun:
    """An :class:`EpisodeSampler` with its policy and tasks, built once (the pool is warm)."""

    def __init__(self, env_id: str, tasks: int, episodes: int, seed: int):
        self.sampler = EpisodeSampler(env_id)
        obs_dim = int(np.prod(self.sampler.observation_space.shape))
        act_dim = int(np.prod(self.sampler.action_space.shape))
        self.policy = MLPPolicy(obs_dim, act_dim)
        probe = self.sampler.env_fn()
        probe.reset(seed=seed)
        self.tasks = probe.unwrapped.sample_tasks(tasks)
        probe.close()
        self.episodes, self.seed, self.sub_envs = episodes, seed, tasks * episodes
        self.steps_per_call = self.sampler.sample(
            self.policy, self.tasks, episodes, seed=seed
        ).num_steps

    def rate(self) -> float:
        """Steps per second of one :meth:`EpisodeSampler.sample` call."""
        self.seed += 1
        start = time.perf_counter()
        result = self.sampler.sample(self.policy, self.tasks, self.episodes, seed=self.seed)
        return result.num_steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw-steps", type=int, default=20_000, help="steps of the raw loops")
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds of the three measurements (best kept)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=str, default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="gymnasium")
    torch.set_num_threads(1)

    rows = []
    for env_id, tasks, episodes in cases():
        run = SamplerRun(env_id, tasks, episodes, args.seed)
        raw, raw_only, sampled = 0.0, 0.0, 0.0
        raw_steps = args.raw_steps
        if env_id.startswith("metaworld/"):
            raw_steps = min(raw_steps, METAWORLD_RAW_STEPS)
        # Interleaved rounds, best of each: a busy machine slows all three alike.
        for _ in range(args.repeats):
            raw = max(raw, raw_rate(env_id, raw_steps, args.seed, False))
            raw_only = max(raw_only, raw_rate(env_id, raw_steps, args.seed, True))
            sampled = max(sampled, run.rate())
        run.sampler.close()
        rows.append(
            {
                "env": env_id,
                "raw_steps_per_s": raw,
                "raw_step_only_steps_per_s": raw_only,
                "sampler_steps_per_s": sampled,
                "ratio_sampler_over_raw": sampled / raw,
                "ratio_sampler_over_raw_step_only": sampled / raw_only,
                "tasks": tasks,
                "episodes_per_task": episodes,
                "sub_envs": run.sub_envs,
                "sampler_steps_per_call": run.steps_per_call,
            }
        )

    header = (
        f"{'env':28} {'raw':>9} {'raw step only':>14} {'sampler':>9} "
        f"{'sampler/raw':>12} {'sampler/step only':>18} {'sub-envs':>9}"
    )
    print(header)
    for row in rows:
        print(
            f"{row['env']:28} {row['raw_steps_per_s']:9.0f} {row['raw_step_only_steps_per_s']:14.0f} "
            f"{row['sampler_steps_per_s']:9.0f} {row['ratio_sampler_over_raw']:12.2f} "
            f"{row['ratio_sampler_over_raw_step_only']:18.2f} {row['sub_envs']:9d}"
        )
    print(
        "(environment steps per second, best of",
        args.repeats,
        "interleaved rounds; torch on 1 thread)",
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
