"""PEARL: the context encoder's product of Gaussians, its permutation invariance, the posterior
update at adaptation, the per-task replay pool, SAC's tanh log-density, checkpoints, and (slow)
learning on Navigation2D."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TransformedDistribution, kl_divergence
from torch.distributions.transforms import TanhTransform

from metagym.rl.context_encoder import ContextEncoder, kl_to_prior
from metagym.rl.pearl import PEARL, TanhGaussianActor, transitions
from metagym.rl.task_replay import TaskReplay
from metagym.tasks.gym import GymTaskDistribution

NAV = "metagym/Navigation2D-v0"


def _encoder(seed=0):
    torch.manual_seed(seed)
    return ContextEncoder(5, latent=3, hidden=(16, 16))


def test_posterior_is_the_normalized_product_of_the_factors():
    encoder = _encoder()
    context = torch.randn(2, 7, 5)
    mean, variance = encoder(context)
    m, v = encoder.factors(context)
    # Two factors at a time, by the closed form of a product of two Gaussians.
    pm, pv = m[:, 0], v[:, 0]
    for i in range(1, 7):
        pm, pv = (pm * v[:, i] + m[:, i] * pv) / (pv + v[:, i]), pv * v[:, i] / (pv + v[:, i])
    torch.testing.assert_close(mean, pm)
    torch.testing.assert_close(variance, pv)


def test_posterior_is_invariant_to_the_order_of_the_context():
    encoder = _encoder(1)
    context = torch.randn(4, 20, 5)
    mean, variance = encoder(context)
    for seed in range(5):
        order = torch.randperm(20, generator=torch.Generator().manual_seed(seed))
        m, v = encoder(context[:, order])
        torch.testing.assert_close(m, mean)
        torch.testing.assert_close(v, variance)
    # ...but not to its content: another transition moves it.
    m, _ = encoder(torch.cat([context, torch.randn(4, 1, 5)], dim=1))
    assert not torch.allclose(m, mean)


def test_empty_context_is_the_prior_and_more_context_is_more_certain():
    encoder = _encoder(2)
    mean, variance = encoder(torch.zeros(3, 0, 5))
    assert torch.equal(mean, torch.zeros(3, 3)) and torch.equal(variance, torch.ones(3, 3))
    context = torch.randn(1, 30, 5)
    variances = [encoder(context[:, :c])[1] for c in (1, 5, 30)]
    assert bool((variances[1] < variances[0]).all()) and bool((variances[2] < variances[1]).all())


def test_kl_to_the_prior_matches_torch():
    mean, variance = torch.randn(4, 3), torch.rand(4, 3) + 0.1
    expected = kl_divergence(Normal(mean, variance.sqrt()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_to_prior(mean, variance), expected)


def test_tanh_gaussian_log_density_matches_torch():
    torch.manual_seed(0)
    actor = TanhGaussianActor(4, 2, (8,))
    inputs = torch.randn(6, 4)
    actions, log_prob = actor(inputs, torch.Generator().manual_seed(3))
    mean, log_std = actor.net(inputs).split(2, dim=-1)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), TanhTransform())
    expected = reference.log_prob(actions.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    torch.testing.assert_close(log_prob, expected, atol=1e-3, rtol=1e-4)
    assert bool((actions.abs() < 1).all())
    deterministic, _ = actor(inputs, None, deterministic=True)
    torch.testing.assert_close(deterministic, torch.tanh(mean))


def test_task_replay_is_a_ring_per_slot_and_a_fifo_over_tasks():
    replay = TaskReplay(slots=2, capacity=3, width=1)
    first = replay.new_task()
    replay.add(first, torch.tensor([[1.0], [2.0]]))
    replay.add(first, torch.tensor([[3.0], [4.0]]))  # overwrites the oldest row, 1
    assert sorted(replay.rows(first).flatten().tolist()) == [2.0, 3.0, 4.0]
    second = replay.new_task()
    replay.add(second, torch.tensor([[9.0]]))
    draws = replay.sample(torch.tensor([first, second]), 200, torch.Generator().manual_seed(0))
    assert set(draws[0].flatten().tolist()) == {2.0, 3.0, 4.0}
    assert set(draws[1].flatten().tolist()) == {9.0}
    assert replay.new_task() == first  # the oldest task's slot, emptied
    assert replay.size(first) == 0 and replay.filled().tolist() == [second]
    with pytest.raises(ValueError, match="empty"):
        replay.sample(torch.tensor([first]), 1, torch.Generator())


@pytest.fixture(scope="module")
def navigation():
    distribution = GymTaskDistribution(NAV, eval_episodes=2)
    yield distribution
    distribution.close()


def _pearl(distribution, **kwargs):
    settings = {
        "hidden": (16, 16),
        "encoder_hidden": (16,),
        "task_slots": 4,
        "replay_capacity": 300,
        "updates_per_iteration": 3,
        "task_batch": 2,
        "batch_size": 8,
        "context_size": 5,
        **kwargs,
    }
    return PEARL(distribution, **settings)


def test_transitions_are_the_episodes_steps_with_next_observations(navigation):
    learner = _pearl(navigation)
    task = navigation.sample(1, "train", torch.Generator().manual_seed(0))[0]
    episodes = learner.collect(task, 2, torch.zeros(0, learner.context_width), seed=5)
    rows = transitions(episodes, learner.action_low, learner.action_high)
    assert rows.shape == (episodes.num_steps, 2 + 2 + 1 + 2 + 1)
    first = rows[: int(episodes.lengths[0, 0])]
    torch.testing.assert_close(first[1:, :2], first[:-1, 5:7])  # next observation of step t
    torch.testing.assert_close(first[:, 4], episodes.rewards[0, 0, : len(first)])
    # Actions in [-1, 1] map back to the env's: Navigation2D's bounds are +-0.1.
    torch.testing.assert_close(
        learner.to_env_action(first[:, 2:4]), episodes.actions[0, 0, : len(first)]
    )


def test_adaptation_starts_from_the_prior_and_the_posterior_narrows(navigation):
    learner = _pearl(navigation)
    task = navigation.sample(1, "test", torch.Generator().manual_seed(1))[0]
    policies = learner.adapt_steps(task, [0, 1, 2])
    assert torch.equal(policies[0].mean, torch.zeros(5))
    assert torch.allclose(policies[0].std, torch.ones(5))
    assert bool((policies[2].std < policies[1].std).all())
    assert bool((policies[1].std < policies[0].std).all())
    # The shared episodes: adapting to 1 alone infers the same posterior.
    torch.testing.assert_close(learner.adapt(task, 1).mean, policies[1].mean)
    again = learner.adapt_steps(task, [2])[2]
    torch.testing.assert_close(again.mean, policies[2].mean)  # seeded by the task


def test_meta_training_fills_the_pool_and_resumes_exactly(navigation, tmp_path):
    generator = torch.Generator().manual_seed(0)
    batches = [navigation.sample(2, "train", generator) for _ in range(3)]
    learner = _pearl(navigation)
    for tasks in batches[:2]:
        metrics = learner.meta_train_step(tasks)
    assert all(math.isfinite(v) for v in metrics.values())
    assert learner.replay.filled().tolist() == [0, 1, 2, 3]
    assert metrics["charts/env_steps"] == float(learner.env_steps_seen) > 0
    learner.save(tmp_path / "checkpoint.pt")
    continued = learner.meta_train_step(batches[2])
    resumed = _pearl(navigation)
    resumed.load(tmp_path / "checkpoint.pt")
    assert resumed.meta_train_step(batches[2]) == continued
    for a, b in zip(learner.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_pearl_refuses_discrete_actions():
    bandit = GymTaskDistribution("metagym/Bandit-v0", env_kwargs={"k": 3})
    with pytest.raises(ValueError, match="Box"):
        PEARL(bandit)


@pytest.mark.slow
def test_pearl_learns_to_infer_navigation_goals():
    """After meta-training, one episode of context beats the prior by more than both intervals
    (the quick profile's budget: about 22 minutes on one core)."""
    torch.set_num_threads(1)
    distribution = GymTaskDistribution(NAV, eval_episodes=5)
    learner = PEARL(distribution, seed=0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(500):
        learner.meta_train_step(distribution.sample(2, "train", generator))
    tasks = distribution.sample(40, "test", torch.Generator().manual_seed(1))
    scores = np.array(
        [[distribution.score(p, t) for p in learner.adapt_steps(t, [0, 1]).values()] for t in tasks]
    )
    mean = scores.mean(0)
    half = 1.96 * scores.std(0, ddof=1) / math.sqrt(len(tasks))
    assert mean[1] - half[1] > mean[0] + half[0], (mean, half)
