"""RL^2's transformer policy: causal, the same outputs over a whole trial as acting step by step,
rows reset apart, a capped window, the ``transformer`` recipe of the rl domain trains, saves and
loads, and a trial without a step limit needs a context."""

import pytest
import torch
from gymnasium import spaces
from torch import nn

from metagym import domains
from metagym.domains.base import Context
from metagym.rl.rl2 import RL2, RecurrentPolicy, trial_batch
from metagym.rl.transformer_policy import TransformerActorCritic
from metagym.tasks.base import make_generator
from metagym.tasks.trials import TrialTaskDistribution
from tests.rl.trial_gain import assert_second_episode_beats_the_first

NAV = "metagym/Navigation2D-v0"
D = 7  # 3 observation entries, 2 previous-action entries, previous reward, done flag
BOX = spaces.Box(-2.0, 2.0, (2,))


def _net(context: int = 12, space: spaces.Space = BOX) -> TransformerActorCritic:
    """A small net whose outputs move visibly with its inputs and positions (the policy head
    starts near zero and the position embedding small)."""
    torch.manual_seed(0)
    net = TransformerActorCritic(D, space, hidden=16, layers=2, heads=2, context=context)
    nn.init.normal_(net.policy_head.weight)
    nn.init.normal_(net.position.weight)
    return net


def _params(distribution) -> torch.Tensor:
    """The distribution's parameters, ``(..., K)``."""
    if isinstance(distribution, torch.distributions.Categorical):
        return distribution.logits
    return torch.cat([distribution.mean, distribution.stddev], -1)


def _whole(net, inputs: torch.Tensor) -> torch.Tensor:
    """Parameters ``(T, N, K)`` of a forward over ``inputs (T, N, D)`` from the initial state."""
    with torch.no_grad():
        distribution, _, _ = net(inputs, net.initial_state(inputs.shape[1]))
    return _params(distribution)


def _acting(policy: RecurrentPolicy, inputs: torch.Tensor) -> torch.Tensor:
    """Parameters ``(T, N, K)`` of ``policy`` called step by step on ``inputs (T, N, D)``."""
    return torch.stack([_params(policy(x)) for x in inputs])


def _fresh(net, n: int) -> RecurrentPolicy:
    policy = RecurrentPolicy(net)
    policy.reset_memory(torch.ones(n, dtype=torch.bool))
    return policy


def test_outputs_at_a_step_do_not_depend_on_later_steps():
    net = _net()
    inputs = torch.randn(10, 3, D)
    with torch.no_grad():
        first, values, _ = net(inputs, net.initial_state(3))
        later = inputs.clone()
        later[5:] = torch.randn(5, 3, D)
        second, later_values, _ = net(later, net.initial_state(3))
        earlier = inputs.clone()
        earlier[3] += 1.0
        third, _, _ = net(earlier, net.initial_state(3))
    torch.testing.assert_close(_params(second)[:5], _params(first)[:5], rtol=0, atol=1e-6)
    torch.testing.assert_close(later_values[:5], values[:5], rtol=0, atol=1e-6)
    assert not torch.allclose(_params(second)[5:], _params(first)[5:], atol=1e-3)
    # Step 4 sees step 3: the outputs do depend on earlier steps.
    assert not torch.allclose(_params(third)[4], _params(first)[4], atol=1e-3)


@pytest.mark.parametrize("space", [BOX, spaces.Discrete(2)], ids=["box", "discrete"])
def test_whole_trial_forward_equals_acting_step_by_step(space):
    net = _net(space=space)
    inputs = torch.randn(12, 4, D)
    torch.testing.assert_close(
        _acting(_fresh(net, 4), inputs), _whole(net, inputs), rtol=1e-5, atol=1e-5
    )


def test_log_probs_of_sampled_trials_equal_the_acting_policy():
    """Trials collected by the sampler with rows reused (max_envs=2: rows reset between
    trials), recomputed over whole trials by PPO's forward."""
    dist = TrialTaskDistribution(NAV, 2, max_episode_steps=6, max_envs=2)
    learner = RL2(dist, policy="transformer", hidden=16, heads=2, steps_per_iteration=72)
    nn.init.normal_(learner.net.policy_head.weight, std=0.3)
    tasks = dist.sample(2, "train", make_generator(0))
    inputs, actions, _, mask, old = trial_batch(learner.collect(tasks, seed=3))
    assert inputs.shape[:2] == (12, 6) and mask.sum() == 72  # 6 trials of 2 x 6 steps
    with torch.no_grad():
        distribution, _, _ = learner.net(inputs, learner.net.initial_state(inputs.shape[1]))
    new = distribution.log_prob(actions)
    torch.testing.assert_close(new * mask, old * mask, atol=1e-5, rtol=1e-5)
    dist.close()


def test_reset_memory_isolates_a_row():
    net = _net()
    before, after = torch.randn(5, 3, D), torch.randn(4, 3, D)
    policy = _fresh(net, 3)
    _acting(policy, before)
    policy.reset_memory(torch.tensor([False, True, False]))
    out = _acting(policy, after)
    # The reset row acts as a fresh policy on its new steps only ...
    alone = _acting(_fresh(net, 1), after[:, 1:2])
    torch.testing.assert_close(out[:, 1:2], alone, rtol=1e-5, atol=1e-5)
    # ... while the other rows keep their history.
    kept = _whole(net, torch.cat([before, after]))[5:]
    torch.testing.assert_close(out[:, [0, 2]], kept[:, [0, 2]], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[:, 0], _whole(net, after)[:, 0], atol=1e-3)
    # Resetting every row empties the window: the next step's window is that step alone.
    policy.reset_memory(torch.ones(3, dtype=torch.bool))
    torch.testing.assert_close(
        _acting(policy, after[:1]), _whole(net, after[:1]), rtol=1e-5, atol=1e-5
    )
    assert policy.state.shape == (1, 3, CACHE)


#: Channels of a cache slot: the valid flag, then each of the 2 layers' key and value (width 16).
CACHE = 1 + 2 * 2 * 16


def test_the_cached_layers_compute_torchs_causal_encoder():
    net = _net()
    inputs = torch.randn(12, 3, D)
    positions = torch.arange(12)[:, None].expand(12, 3)
    tokens = net.embed(inputs * net.input_scale) + net.position(positions)
    causal = nn.Transformer.generate_square_subsequent_mask(12)
    with torch.no_grad():
        reference = net.body(tokens, mask=causal, is_causal=True)
        distribution, values, _ = net(inputs, net.initial_state(3))
        expected, expected_values = net.heads(reference)
    torch.testing.assert_close(_params(distribution), _params(expected), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, expected_values, rtol=1e-5, atol=1e-5)


def test_the_window_is_capped_at_the_context():
    net = _net(context=4)
    inputs = torch.randn(9, 2, D)
    policy = _fresh(net, 2)
    out = _acting(policy, inputs)
    assert policy.state.shape == (4, 2, CACHE)  # a sliding window of cached keys and values
    torch.testing.assert_close(out[:4], _whole(net, inputs[:4]), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="exceed the transformer's context of 4"):
        net(inputs[:5], net.initial_state(2))


def _context(**changes) -> Context:
    """The rl domain's tiny profile with ``changes``, running the transformer."""
    domain = domains.get("rl")
    return Context(domain, domain.profile("tiny").replace(**changes), {}, ("transformer",))


def test_recipe_builds_at_the_tiny_profile_and_a_step_changes_the_weights():
    context = _context()
    try:
        recipe, rl2 = context.recipe("transformer"), context.recipe("rl2")
        assert recipe.family == "black-box" and recipe.summary
        for field in ("iterations", "meta_batch", "eval_steps", "distribution"):
            assert recipe.get(field, context) == rl2.get(field, context), field
        distribution = context.distribution(recipe.distribution_key(context))
        learner = recipe.build(context)
        assert isinstance(learner.net, TransformerActorCritic)
        limit = distribution.sampler.time_limit
        network = learner.config()["network"]
        assert learner.config()["name"] == "transformer"
        assert network == {"policy": "transformer", "layers": 2, "heads": 4, "context": 2 * limit}
        before = [p.detach().clone() for p in learner.net.parameters()]
        metrics = learner.meta_train_step(distribution.sample(2, "train", make_generator(0)))
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
        after = list(learner.net.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    finally:
        context.close()


def test_save_and_load_round_trip(tmp_path):
    dist = TrialTaskDistribution(NAV, 2, max_episode_steps=6, eval_episodes=2)
    learner = RL2(dist, policy="transformer", hidden=16, heads=2, steps_per_iteration=48)
    learner.meta_train_step(dist.sample(2, "train", make_generator(0)))
    learner.save(tmp_path / "learner.pt")
    fresh = RL2(dist, policy="transformer", hidden=16, heads=2, steps_per_iteration=48, seed=1)
    fresh.load(tmp_path / "learner.pt")
    assert fresh.iteration == 1
    mine, theirs = learner.state_dict(), fresh.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0)
    inputs = torch.randn(12, 2, learner.net.input_dim)
    torch.testing.assert_close(_whole(fresh.net, inputs), _whole(learner.net, inputs))
    # The GRU's config (and so its checkpoints) has no network entry, and refuses this file.
    gru = RL2(dist, hidden=16, steps_per_iteration=48)
    assert "network" not in gru.config()
    with pytest.raises(ValueError, match="network"):
        gru.load(tmp_path / "learner.pt")
    dist.close()


def test_a_trial_without_a_step_limit_needs_a_context():
    bandit = TrialTaskDistribution("metagym/Bandit-v0", 10, env_kwargs={"k": 3})
    with pytest.raises(ValueError, match="no step limit, so pass context="):
        RL2(bandit, policy="transformer", hidden=8, heads=2)
    learner = RL2(bandit, policy="transformer", hidden=8, heads=2, context=10)
    assert learner.net.context == 10 and learner.config()["network"]["context"] == 10
    bandit.close()
    context = _context(env="metagym/Bandit-v0")
    try:
        with pytest.raises(ValueError, match="--max-episode-steps"):
            context.recipe("transformer").check(context)
    finally:
        context.close()


@pytest.mark.slow
def test_the_transformer_policys_second_episode_beats_its_first():
    """Navigation2D, trials of 2 x 100-step episodes, the recipe's network, 60 iterations of
    16,384 steps (the quick report's budget): about 2-5 minutes on one core."""
    dist = TrialTaskDistribution(NAV, 2, eval_episodes=4)
    learner = RL2(dist, policy="transformer", hidden=64, layers=2, heads=4,
                  steps_per_iteration=16_384)  # fmt: skip
    assert_second_episode_beats_the_first(learner, dist, iterations=60)
    dist.close()
