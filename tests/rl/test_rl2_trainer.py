"""RL^2's trainer: the log-probabilities PPO recomputes over whole trials are those the policy
acted with, its gradient crosses episode boundaries inside a trial, and a short training makes
the second episode of a trial beat the first (slow)."""

import numpy as np
import pytest
import torch

from metagym.rl.rl2 import RL2, trial_batch
from metagym.tasks.base import make_generator
from metagym.tasks.trials import TrialTaskDistribution
from tests.rl.trial_gain import assert_second_episode_beats_the_first

NAV = "metagym/Navigation2D-v0"


def _learner(steps: int = 6, **kwargs) -> tuple[RL2, TrialTaskDistribution]:
    dist = TrialTaskDistribution(NAV, 2, max_episode_steps=steps, eval_episodes=2)
    return RL2(dist, hidden=16, **kwargs), dist


def test_recomputed_log_probs_equal_the_behaviour_policy():
    learner, dist = _learner(steps_per_iteration=72)  # 3 trials of 12 steps per task
    tasks = dist.sample(2, "train", make_generator(0))
    inputs, actions, _, mask, old = trial_batch(learner.collect(tasks, seed=3))
    assert inputs.shape[:2] == (12, 6) and mask.sum() == 72  # 2 episodes x 6 steps, 6 trials
    distribution, _, _ = learner.net(inputs, learner.net.initial_state(inputs.shape[1]))
    new = distribution.log_prob(actions)
    torch.testing.assert_close(new * mask, old * mask, atol=1e-5, rtol=1e-5)
    dist.close()


def test_gradient_of_the_second_episode_reaches_the_first():
    learner, dist = _learner()
    tasks = dist.sample(1, "train", make_generator(0))
    inputs, actions, _, _, _ = trial_batch(learner.collect(tasks, seed=1))
    inputs = inputs.clone().requires_grad_(True)
    distribution, _, _ = learner.net(inputs, learner.net.initial_state(inputs.shape[1]))
    distribution.log_prob(actions)[-1].sum().backward()  # last step of the second episode
    first_episode = inputs.grad[:6].abs().sum()
    assert first_episode > 0
    dist.close()


def test_update_is_seeded_and_changes_the_policy():
    runs = []
    for _ in range(2):
        learner, dist = _learner(steps_per_iteration=48)
        before = [p.detach().clone() for p in learner.net.parameters()]
        metrics = learner.meta_train_step(dist.sample(2, "train", make_generator(0)))
        assert np.isfinite(list(metrics.values())).all()
        runs.append([p.detach().clone() for p in learner.net.parameters()])
        assert any(not torch.equal(a, b) for a, b in zip(before, runs[-1], strict=True))
        dist.close()
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.slow
def test_second_episode_beats_the_first_after_short_training():
    """Navigation2D, 2 x 100-step episodes, 40 iterations of 16,000 steps: about 2 minutes on
    one core."""
    dist = TrialTaskDistribution(NAV, 2, eval_episodes=4)
    learner = RL2(dist, steps_per_iteration=16_000)  # 4 trials per task
    assert_second_episode_beats_the_first(learner, dist, iterations=40)
    dist.close()


def test_trials_per_task_from_the_step_limit_or_the_first_trials():
    learner, dist = _learner(steps_per_iteration=100)
    assert learner.trials_per_task(2) == 4  # 100 steps / (2 tasks x 12 steps), rounded
    dist.close()
    bandit = TrialTaskDistribution("metagym/Bandit-v0", 10, env_kwargs={"k": 3})
    learner = RL2(bandit, hidden=8, steps_per_iteration=200)
    assert learner.trials_per_task(2) == 1  # no step limit: one trial per task to measure
    learner.meta_train_step(bandit.sample(2, "train", make_generator(0)))
    assert float(learner.trial_length) == 10  # 10 one-pull episodes
    assert learner.trials_per_task(2) == 10
    assert learner.env_steps(3) == 3  # three earlier one-pull episodes
    bandit.close()
