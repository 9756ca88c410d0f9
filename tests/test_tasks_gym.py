"""The RL task distribution: any task-protocol environment, named any way, with clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from metagym.evaluate import evaluate
from metagym.learners.base import Learner
from metagym.tasks import make_generator
from metagym.tasks.gym import GymTaskDistribution, ProtocolError, RLTask, make_env_fn

ROOT = Path(__file__).resolve().parents[1]


class LineEnv(gym.Env):
    """A test-only environment with just ``sample_tasks(n)`` (no splits) and ``set_task``."""

    observation_space = spaces.Box(-5.0, 5.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.goal = 0.0
        self.x = 0.0

    def sample_tasks(self, n):
        return [{"goal": float(g)} for g in self.np_random.uniform(-1.0, 1.0, n) * self.scale]

    def set_task(self, task):
        self.goal = float(task["goal"])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.x = float(np.clip(self.x + action[0], -5.0, 5.0))
        return np.array([self.x], np.float32), -abs(self.x - self.goal), False, False, {}


def make_line_env(scale: float = 1.0) -> LineEnv:
    """A factory, for the ``module:factory`` form."""
    return LineEnv(scale=scale)


def goal_seeker(observations: torch.Tensor) -> torch.Tensor:
    """Steps of 0.5 towards the origin's right (a fixed policy for LineEnv)."""
    return torch.full((observations.shape[0], 1), 0.5)


def test_registered_env_splits_and_seed_semantics():
    dist = GymTaskDistribution("metagym/Navigation2D-v0", eval_episodes=2)
    assert dist.splits == ("train", "val", "test", "ood-far")
    assert (dist.metric, dist.lower_is_better, dist.domain) == ("return", False, "rl")
    first = dist.sample(5, "train", make_generator(0))
    again = dist.sample(5, "train", make_generator(0))
    assert first == again and all(isinstance(t, RLTask) for t in first)
    assert first != dist.sample(5, "train", make_generator(1))
    assert dist.sample(5, "val", make_generator(0)) != dist.sample(5, "test", make_generator(0))
    for task in dist.sample(20, "ood-far", make_generator(0)):
        assert 0.7 <= np.hypot(*task.params["goal"]) <= 1.0 and task.split == "ood-far"
    assert all(max(abs(c) for c in t.params["goal"]) <= 0.5 for t in first)
    assert json.loads(json.dumps([t.params for t in first])) == [t.params for t in first]
    assert dist.row_fields() == {"env": "metagym/Navigation2D-v0"}
    json.dumps(dist.describe())
    with pytest.raises(ValueError, match="unknown split"):
        dist.sample(1, "ood-nope", make_generator(0))


@pytest.mark.parametrize(
    "env",
    [
        "metagym_envs:metagym/Navigation2D-v0",
        "metagym_envs.navigation:Navigation2DEnv",
        f"{__name__}:LineEnv",
        f"{__name__}:make_line_env",
        LineEnv,
        make_line_env,
    ],
)
def test_every_way_of_naming_an_environment(env):
    dist = GymTaskDistribution(env, max_episode_steps=5, eval_episodes=2)
    tasks = dist.sample(3, "test", make_generator(0))
    shape = dist.action_space.shape
    episodes = dist.sampler.sample(lambda o: torch.zeros(o.shape[0], *shape), tasks, 2, seed=0)
    assert episodes.lengths.tolist() == [[5, 5]] * 3
    dist.close()


def test_env_kwargs_reach_the_constructor():
    dist = GymTaskDistribution(LineEnv, env_kwargs={"scale": 100.0}, max_episode_steps=3)
    goals = [t.params["goal"] for t in dist.sample(20, "train", make_generator(0))]
    assert max(abs(g) for g in goals) > 1.0


def test_a_test_file_environment_plugs_in_and_is_sampled():
    dist = GymTaskDistribution(
        LineEnv,
        max_episode_steps=4,
        ood={"ood-far": lambda n, rng: [{"goal": float(g)} for g in rng.uniform(3, 4, n)]},
        eval_episodes=3,
    )
    # No split argument: val/test come from the train distribution; OOD splits are those given.
    assert dist.splits == ("train", "val", "test", "ood-far")
    far = dist.sample(4, "ood-far", make_generator(2))
    assert all(3 <= t.params["goal"] <= 4 for t in far)
    assert far == dist.sample(4, "ood-far", make_generator(2))
    tasks = dist.sample(2, "train", make_generator(0)) + far[:1]
    episodes = dist.sampler.sample(goal_seeker, tasks, 3, seed=0)
    assert episodes.lengths.tolist() == [[4, 4, 4]] * 3
    assert episodes.tasks == tuple(t.params for t in tasks)
    # The rewards follow each episode's own task: x = 0.5, 1.0, 1.5, 2.0.
    for b, task in enumerate(tasks):
        expected = [-abs(x - task.params["goal"]) for x in (0.5, 1.0, 1.5, 2.0)]
        assert episodes.rewards[b].tolist() == [pytest.approx(expected)] * 3
    score = dist.score(goal_seeker, far[0])
    assert score == pytest.approx(
        sum(-abs(x - far[0].params["goal"]) for x in (0.5, 1.0, 1.5, 2.0))
    )
    assert score == dist.score(goal_seeker, far[0])  # seeded by the task


def test_protocol_errors_name_the_missing_methods():
    class Bare(gym.Env):
        observation_space = spaces.Box(0, 1, (1,))
        action_space = spaces.Discrete(2)

    class OnlySample(Bare):
        def sample_tasks(self, n):
            return [{}] * n

    with pytest.raises(ProtocolError, match="sample_tasks and no method set_task"):
        GymTaskDistribution(Bare)
    with pytest.raises(ProtocolError, match="no method set_task"):
        GymTaskDistribution(OnlySample)

    class GlobalRandom(LineEnv):
        def sample_tasks(self, n):
            return [
                {"goal": float(g)} for g in np.random.uniform(-1, 1, n)
            ]  # the mistake under test

    with pytest.raises(ProtocolError, match="np_random"):
        GymTaskDistribution(GlobalRandom, max_episode_steps=3)

    class NotJson(LineEnv):
        def sample_tasks(self, n):
            return [{"goal": object()}] * n

    with pytest.raises(ProtocolError, match="JSON"):
        GymTaskDistribution(NotJson, max_episode_steps=3)


def test_a_module_in_the_working_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "cwd_envs_xyz.py").write_text(
        f"from {__name__} import LineEnv\n\nclass CwdEnv(LineEnv):\n    max_episode_steps = 2\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    dist = GymTaskDistribution("cwd_envs_xyz:CwdEnv")
    assert dist.sampler.sample(
        goal_seeker, dist.sample(1, "train", make_generator(0)), 1, seed=0
    ).lengths.tolist() == [[2]]


def test_bad_names_get_clear_errors():
    with pytest.raises(ValueError, match="no environment registered"):
        GymTaskDistribution("metagym/Nope-v0")
    with pytest.raises(ValueError, match="cannot import module"):
        GymTaskDistribution("no_such_module_xyz:Env")
    with pytest.raises(ValueError, match="has no attribute"):
        GymTaskDistribution(f"{__name__}:Missing")
    with pytest.raises(ValueError, match="ood-"):
        GymTaskDistribution(LineEnv, max_episode_steps=3, ood={"far": lambda n, rng: []})
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_env_fn(LineEnv, max_episode_steps=0)


def test_the_evaluation_routine_scores_rl_tasks():
    class FixedPolicyLearner(Learner):
        name = "fixed"

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1))
            self.optimizer = torch.optim.SGD(self.parameters(), lr=0.1)

        def meta_train_step(self, tasks):
            return {}

        def adapt(self, task, steps=None):
            return goal_seeker

    dist = GymTaskDistribution(LineEnv, max_episode_steps=4, eval_episodes=2)
    tasks = dist.sample(3, "test", make_generator(0))
    (row,) = evaluate(FixedPolicyLearner(), dist, "test", tasks, progress=False)
    assert row["metric"] == "return" and row["env"] == dist.name and row["n_tasks"] == 3
    assert row["mean"] == pytest.approx(np.mean([dist.score(goal_seeker, t) for t in tasks]))
