"""Policies: shapes, the task-batched policy's row layout against the sampler, adaptation."""

import torch

from metagym.rl.maml_rl import MAMLRL
from metagym.rl.policies import GaussianMLPPolicy, make_policy, task_batched_policy
from metagym.tasks.base import make_generator
from metagym.tasks.gym import GymTaskDistribution


def test_gaussian_policy_shapes_and_std():
    policy = GaussianMLPPolicy(3, 2, hidden=(8,), init_std=0.5)
    dist = policy(torch.zeros(5, 3))
    assert dist.batch_shape == (5,) and dist.event_shape == (2,)
    assert torch.allclose(dist.base_dist.scale, torch.full((5, 2), 0.5))


def test_task_batched_policy_matches_per_task_forward_and_sampler_rows():
    dist = GymTaskDistribution("metagym/Navigation2D-v0", max_episode_steps=5)
    torch.manual_seed(0)
    policy = make_policy(dist.observation_space, dist.action_space, hidden=(8,))
    names = [n for n, _ in policy.named_parameters()]
    weights = []
    for sign in (1.0, -1.0):  # task 0 moves up-right, task 1 down-left, with tiny noise
        w = {n: p.detach().clone() for n, p in policy.named_parameters()}
        w["mean.2.bias"] = torch.full_like(w["mean.2.bias"], sign)
        w["mean.2.weight"] = torch.zeros_like(w["mean.2.weight"])
        w["log_std"] = torch.full_like(w["log_std"], -10.0)
        weights.append([w[n] for n in names])
    batched = task_batched_policy(policy, weights, 3)
    obs = torch.randn(6, 2)
    out = batched(obs)
    for b, w in enumerate(weights):
        single = torch.func.functional_call(
            policy, dict(zip(names, w, strict=True)), (obs[3 * b : 3 * b + 3],)
        )
        assert torch.allclose(out.base_dist.loc[3 * b : 3 * b + 3], single.base_dist.loc)
    tasks = dist.sample(2, "test", make_generator(0))
    episodes = dist.sampler.sample(batched, tasks, 3, seed=0)
    first = episodes.observations[:, :, 1]  # position after one step, (task, episode, 2)
    assert torch.allclose(first[0], torch.full((3, 2), 0.1), atol=1e-3)
    assert torch.allclose(first[1], torch.full((3, 2), -0.1), atol=1e-3)
    dist.close()


def test_adapt_steps_collects_fresh_data_per_step_and_is_reproducible():
    dist = GymTaskDistribution("metagym/Navigation2D-v0", max_episode_steps=10, eval_episodes=2)
    torch.manual_seed(0)
    policy = make_policy(dist.observation_space, dist.action_space, hidden=(8,))
    learner = MAMLRL(policy, dist.sampler, fast_batch=3)
    task = dist.sample(1, "test", make_generator(1))[0]
    first = learner.adapt_steps(task, [0, 1, 2])
    second = learner.adapt_steps(task, [2])
    obs = torch.randn(4, 2)
    assert torch.equal(first[2](obs).mean, second[2](obs).mean)
    assert not torch.equal(first[0](obs).mean, first[1](obs).mean)
    assert not torch.equal(first[1](obs).mean, first[2](obs).mean)
    # Adaptation leaves the initial weights alone.
    assert torch.equal(first[0](obs).mean, policy(obs).mean)
    dist.close()
