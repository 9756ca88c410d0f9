"""The RL^2 trial wrapper, trial scoring, and the bandit algorithms."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from metagym.rl.bandits import UCB1, BanditLearner, Thompson
from metagym.rl.sampler import random_policy
from metagym.tasks.base import make_generator
from metagym.tasks.trials import RL2TrialWrapper, TrialTaskDistribution, trial_episode_returns


def test_trial_keeps_task_and_passes_previous_action_reward_done():
    env = RL2TrialWrapper(gym.make("metagym/Navigation2D-v0", max_episode_steps=3), 2)
    task = {"goal": [0.3, -0.2]}
    obs, info = env.reset(seed=0, options={"task": task})
    assert env.observation_space.shape == (2 + 2 + 2,)
    assert np.allclose(obs, 0) and info["task"] == task
    tasks, episodes, steps = [], [], 0
    action = np.array([0.05, -0.02], np.float32)
    terminated = False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        tasks.append(info["task"])
        episodes.append(info["episode_in_trial"])
        assert not truncated
        assert np.allclose(obs[2:4], action) and obs[4] == pytest.approx(reward)
        # The done flag is set exactly when an inner episode has just ended.
        assert obs[5] == (1.0 if steps % 3 == 0 else 0.0)
        if steps == 3:  # the next episode starts at the origin again, same task
            assert np.allclose(obs[:2], 0)
    assert steps == 6 and episodes == [0, 0, 0, 1, 1, 1]
    assert all(t == task for t in tasks)


def test_trial_wrapper_one_hot_actions_and_task_pool():
    env = RL2TrialWrapper(gym.make("metagym/Bandit-v0", k=3), 4, task_pool=[{"means": [1, 0, 0]}])
    obs, info = env.reset(seed=1)
    assert info["task"] == {"means": [1.0, 0.0, 0.0]}
    obs, reward, terminated, _, _ = env.step(0)
    assert reward == 1.0 and not terminated
    assert obs.tolist() == [0.0, 1.0, 0.0, 0.0, 1.0, 1.0]  # obs, one-hot arm 0, reward, done
    obs, reward, _, _, _ = env.step(2)
    assert obs.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    for _ in range(2):
        *_, terminated, _, _ = env.step(1)
    assert terminated


def test_trial_episode_returns_split_at_done_flags():
    # One trial, 2 episodes of 2 steps: the done flag (last entry) is 1 after step 2.
    obs = torch.tensor([[[0.0], [0.0], [1.0], [0.0], [1.0]]])  # (1, T + 1, 1)
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 4)
    out = trial_episode_returns(obs, rewards, mask, 2)
    assert out.tolist() == [[3.0, 7.0]]


def test_ucb1_pulls_every_arm_once_then_the_best():
    policy = UCB1(3)
    policy.reset_memory(torch.tensor([True]))
    means = [0.0, 1.0, 0.0]
    obs = torch.zeros(1, 1 + 3 + 2)
    pulls = []
    for _ in range(8):
        arm = int(policy(obs)[0])
        pulls.append(arm)
        obs = torch.zeros(1, 6)
        obs[0, 1 + arm] = 1
        obs[0, -2] = means[arm]
        obs[0, -1] = 1
    assert sorted(pulls[:3]) == [0, 1, 2]
    assert pulls[3:7] == [1] * 4  # exploitation until the bonus of the others wins again


def test_bandit_algorithms_beat_random_on_the_same_trials():
    dist = TrialTaskDistribution("metagym/Bandit-v0", 10, env_kwargs={"k": 5}, eval_episodes=10)
    tasks = dist.sample(30, "test", make_generator(0))
    random_score = np.mean([dist.score(random_policy(dist.action_space), t) for t in tasks])
    for name in ("ucb1", "thompson"):
        learner = BanditLearner(name, 5)
        score = np.mean([dist.score(learner.adapt(t), t) for t in tasks])
        assert score > random_score + 0.3, (name, score, random_score)
    assert isinstance(BanditLearner("thompson", 5).adapt(tasks[0]), Thompson)
    dist.close()
