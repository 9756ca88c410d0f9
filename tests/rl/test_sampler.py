"""The vectorized episode sampler: exact episodes per task, the right task in each, seeds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.distributions import Categorical, Independent, Normal

from metagym.rl import Episodes, EpisodeSampler, collect_episodes, episode_seed, random_policy
from metagym.tasks.gym import ProtocolError


class CounterEnv(gym.Env):
    """A test environment whose observations name the task and the step.

    Observation ``[task id, step, reset noise]``; the episode terminates after ``length`` steps
    (task-dependent, so episodes of a batch have different lengths); reward = task id.
    """

    observation_space = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
    action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def __init__(self):
        self.task = {"id": 0, "length": 3}
        self.noise = 0.0
        self.step_index = 0

    def sample_tasks(self, n, split="train"):
        return [
            {"id": int(i), "length": int(k)}
            for i, k in zip(
                self.np_random.integers(0, 100, n), self.np_random.integers(1, 6, n), strict=True
            )
        ]

    def set_task(self, task):
        self.task = dict(task)

    def _obs(self):
        return np.array([self.task["id"], self.step_index, self.noise], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.step_index = 0
        self.noise = float(self.np_random.random())
        return self._obs(), {"task": dict(self.task)}

    def step(self, action):
        self.step_index += 1
        terminated = self.step_index >= self.task["length"]
        return self._obs(), float(self.task["id"]), terminated, False, {"task": dict(self.task)}


TASKS = [{"id": 7, "length": 2}, {"id": 3, "length": 5}, {"id": 11, "length": 1}]


def zero_policy(observations: torch.Tensor) -> torch.Tensor:
    return torch.zeros(observations.shape[0], 1)


def _check_episodes(episodes: Episodes, tasks: list[dict], per_task: int) -> None:
    assert episodes.num_tasks == len(tasks) and episodes.episodes_per_task == per_task
    assert episodes.tasks == tuple(tasks)
    for b, task in enumerate(tasks):
        length = task["length"]
        assert episodes.lengths[b].tolist() == [length] * per_task
        for e in range(per_task):
            obs = episodes.observations[b, e]
            # The right task in every observation; the step counter starts at 0 (a real reset,
            # never an autoreset step) and counts up to the final observation.
            assert torch.all(obs[: length + 1, 0] == task["id"])
            assert obs[: length + 1, 1].tolist() == list(range(length + 1))
            assert torch.all(obs[length + 1 :] == 0)  # padding
            assert episodes.rewards[b, e, :length].tolist() == [task["id"]] * length
            assert episodes.dones[b, e].tolist() == [
                t == length - 1 for t in range(obs.shape[0] - 1)
            ]
            assert torch.equal(episodes.terminated[b, e], episodes.dones[b, e])
            assert episodes.mask[b, e].sum() == length
    assert episodes.num_steps == per_task * sum(t["length"] for t in tasks)
    assert torch.allclose(
        episodes.returns(),
        torch.tensor([[t["id"] * t["length"]] * per_task for t in tasks]).float(),
    )


@pytest.mark.parametrize("max_envs", [None, 4, 1])
def test_exact_complete_episodes_with_the_right_task(max_envs):
    with EpisodeSampler(CounterEnv, max_envs=max_envs, max_episode_steps=50) as sampler:
        episodes = sampler.sample(zero_policy, TASKS, 4, seed=0)
    _check_episodes(episodes, TASKS, 4)
    assert episodes.observations.shape == (3, 4, 6, 3) and episodes.actions.shape == (3, 4, 5, 1)


@pytest.mark.parametrize("trials", [False, True])
def test_row_layout_lets_a_policy_act_per_task(trials):
    seen = []

    def policy(observations):
        seen.append(observations[:, 0].clone())  # the task id of each row
        return torch.zeros(observations.shape[0], 1)

    tasks = [{"id": i, "length": 3} for i in (4, 5, 6)]
    collect_episodes(CounterEnv, policy, tasks, 2, seed=0, trials=trials)
    per_row = [4, 5, 6] if trials else [4, 4, 5, 5, 6, 6]  # row i: task i // E
    assert all(ids.tolist() == per_row for ids in seen[:3])


def test_trials_keep_each_task_on_one_sub_environment():
    episodes = collect_episodes(CounterEnv, zero_policy, TASKS, 3, seed=0, trials=True)
    _check_episodes(episodes, TASKS, 3)


def test_episode_seeds_make_collections_reproducible():
    def collect(seed, max_envs=None):
        return collect_episodes(
            CounterEnv,
            random_policy(CounterEnv.action_space),
            TASKS,
            3,
            seed=seed,
            max_envs=max_envs,
        )

    a, b, c = collect(5), collect(5), collect(6)
    assert torch.equal(a.observations, b.observations) and torch.equal(a.actions, b.actions)
    assert not torch.equal(a.observations[..., 2], c.observations[..., 2])
    # Each episode's reset seed depends on (seed, task, episode) only, not on the batching.
    d = collect(5, max_envs=2)
    assert torch.equal(a.observations[..., 0, 2], d.observations[..., 0, 2])
    assert a.seeds[1, 2] == episode_seed(5, 1, 2)
    assert len(set(a.seeds.flatten().tolist())) == a.seeds.numel()


def test_time_limit_truncates_and_keeps_the_final_observation():
    tasks = [{"id": 1, "length": 10}]
    episodes = collect_episodes(CounterEnv, zero_policy, tasks, 2, seed=0, max_episode_steps=3)
    assert episodes.lengths.tolist() == [[3, 3]]
    assert episodes.dones[0, 0].tolist() == [False, False, True]
    assert not episodes.terminated.any()  # truncated, not terminated: bootstrap from the final obs
    assert episodes.observations[0, 0, 3, 1] == 3


def test_distribution_policies_record_log_probs_and_extras():
    def policy(observations):
        n = observations.shape[0]
        dist = Independent(Normal(torch.zeros(n, 1), torch.ones(n, 1)), 1)
        return dist, {"value": torch.full((n,), 2.0)}

    episodes = collect_episodes(CounterEnv, policy, TASKS, 2, seed=1)
    assert set(episodes.extras) == {"log_prob", "value"}
    mask = episodes.mask.bool()
    expected = Normal(0.0, 1.0).log_prob(episodes.actions[..., 0])
    assert torch.allclose(episodes.extras["log_prob"][mask], expected[mask])
    assert torch.all(episodes.extras["value"][mask] == 2.0)
    # Actions are recorded as drawn (unclipped), and not all inside [-1, 1] for a unit Normal.
    assert episodes.actions[mask].abs().max() > 1.0


def test_reset_memory_is_called_for_rows_that_start_afresh():
    class Recurrent:
        def __init__(self):
            self.calls = []

        def reset_memory(self, mask):
            self.calls.append(mask.clone())

        def __call__(self, observations):
            return torch.zeros(observations.shape[0], 1)

    parallel = Recurrent()
    collect_episodes(CounterEnv, parallel, TASKS, 2, seed=0, max_envs=3)
    assert parallel.calls[0].all() and len(parallel.calls) > 1  # episodes restart rows
    trials = Recurrent()
    collect_episodes(CounterEnv, trials, TASKS, 2, seed=0, trials=True)
    assert len(trials.calls) == 1 and trials.calls[0].all()  # memory kept across a trial


def test_registered_environment_and_rltask_inputs():
    tasks = [{"goal": [0.3, 0.4]}, {"goal": [-0.5, 0.0]}]
    with EpisodeSampler("metagym/Navigation2D-v0", max_envs=3) as sampler:
        episodes = sampler.sample(lambda o: torch.zeros(o.shape[0], 2), tasks, 2, seed=0)
    # Standing still at the origin: every reward is minus the distance to that task's goal.
    assert torch.allclose(episodes.rewards[0, :, :100], torch.full((2, 100), -0.5))
    assert torch.allclose(episodes.rewards[1, :, :100], torch.full((2, 100), -0.5))
    assert episodes.lengths.tolist() == [[100, 100], [100, 100]]


def test_discrete_spaces_and_categorical_policies():
    tasks = [{"means": [0.0, 1.0, 0.0]}, {"means": [1.0, 1.0, 1.0]}]

    def best_arm(observations):
        return Categorical(
            logits=torch.tensor([[-1e9, 0.0, -1e9]]).expand(observations.shape[0], 3)
        )

    episodes = collect_episodes(
        "metagym/Bandit-v0", best_arm, tasks, 5, seed=0, env_kwargs={"k": 3}
    )
    assert episodes.actions.dtype == torch.int64 and torch.all(episodes.actions == 1)
    assert episodes.returns().tolist() == [[1.0] * 5, [1.0] * 5]


def test_clear_errors():
    class NoTasks(gym.Env):
        observation_space = spaces.Box(0, 1, (1,))
        action_space = spaces.Discrete(2)

    with pytest.raises(ProtocolError, match="set_task"):
        EpisodeSampler(NoTasks)
    with EpisodeSampler(CounterEnv) as sampler:
        with pytest.raises(ValueError, match="shape"):
            sampler.sample(lambda o: torch.zeros(o.shape[0], 2), TASKS, 1, seed=0)
        with pytest.raises(ValueError, match="episodes_per_task"):
            sampler.sample(zero_policy, TASKS, 0, seed=0)
        with pytest.raises(TypeError, match="params"):
            sampler.sample(zero_policy, [3.0], 1, seed=0)
