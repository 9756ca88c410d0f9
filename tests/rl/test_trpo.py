"""TRPO's step stays within the KL bound; conjugate gradient solves; MAML-RL's Fisher product
equals the exact Hessian of the KL through the inner step."""

import torch
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence

from metagym.rl.trpo import conjugate_gradient, flat, trpo_step


def test_conjugate_gradient_solves_spd_system():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = a @ a.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iterations=20)
    assert torch.allclose(a @ x, b, atol=1e-8)


def _toy(max_kl):
    """A Gaussian policy whose mean is a linear function of 2-d states; the surrogate pushes the
    mean hard towards large actions, so an unconstrained step would leave the trust region."""
    gen = torch.Generator().manual_seed(1)
    states = torch.randn(64, 2, generator=gen)
    actions = torch.randn(64, 1, generator=gen) + 3.0
    advantages = torch.randn(64, generator=gen) + 1.0
    policy = nn.Linear(2, 1)
    log_std = nn.Parameter(torch.zeros(1))
    params = [*policy.parameters(), log_std]

    def dist():
        return Independent(Normal(policy(states), log_std.exp().expand(64, 1)), 1)

    with torch.no_grad():
        old = dist()
        old = Independent(Normal(old.base_dist.loc.clone(), old.base_dist.scale.clone()), 1)
        old_logp = old.log_prob(actions)

    def loss_and_kl(differentiable):
        with torch.set_grad_enabled(differentiable):
            new = dist()
            loss = -(torch.exp(new.log_prob(actions) - old_logp) * advantages).mean()
            kl = kl_divergence(old, new).mean()
        return loss, kl

    return params, loss_and_kl, dist, old


def test_trpo_step_respects_kl_bound_and_improves():
    for max_kl in (0.001, 0.01, 0.05):
        params, loss_and_kl, dist, old = _toy(max_kl)
        before, _ = loss_and_kl(False)
        stats = trpo_step(params, loss_and_kl, max_kl=max_kl)
        after, kl = loss_and_kl(False)
        assert stats.step_fraction > 0
        assert float(kl) <= max_kl + 1e-7
        assert float(after) < float(before)
        # The step uses a good part of the trust region (not a vanishing step).
        assert float(kl) > 0.2 * max_kl


def test_trpo_restores_weights_when_no_step_is_accepted():
    params, loss_and_kl, _, _ = _toy(0.01)
    start = [p.detach().clone() for p in params]

    def never_better(differentiable):
        loss, kl = loss_and_kl(differentiable)
        return (loss if differentiable else loss.detach() + 100.0), kl

    stats = trpo_step(params, never_better, max_kl=0.01, max_backtracks=3)
    assert stats.step_fraction == 0
    assert all(torch.equal(p, s) for p, s in zip(params, start, strict=True))


def test_maml_fisher_vector_equals_exact_kl_hessian():
    """The Gauss-Newton form J^T K J v equals differentiating the KL twice through the inner step
    (at the weights that collected the data, where the KL's gradient is 0)."""
    from metagym.rl.maml_rl import MAMLRL
    from metagym.rl.policies import GaussianMLPPolicy

    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden=(8,)).double()

    class _FakeSampler:
        max_envs = None

    learner = MAMLRL(policy, _FakeSampler(), fast_batch=3)
    gen = torch.Generator().manual_seed(3)
    support_obs = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    support_act = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    support_adv = torch.randn(30, generator=gen, dtype=torch.float64)
    query_obs = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    params = list(policy.parameters())

    def adapted():
        loss = -(policy(support_obs).log_prob(support_act) * support_adv).mean()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return [p - 0.1 * g for p, g in zip(params, grads, strict=True)]

    from metagym.learners.maml import _functional_model

    fmodel = _functional_model(policy)
    fast = adapted()
    with torch.no_grad():
        d = fmodel(query_obs, params=[w.detach() for w in fast])
        old = Independent(Normal(d.base_dist.loc.clone(), d.base_dist.scale.clone()), 1)
    mask = torch.ones(20, dtype=torch.float64)
    product = learner._fisher_vector(params, [fast], fmodel, [query_obs], [old], [mask])
    kl = kl_divergence(old, fmodel(query_obs, params=adapted())).mean()
    kl_grad = flat(torch.autograd.grad(kl, params, create_graph=True))
    v = torch.randn(kl_grad.shape, generator=gen, dtype=torch.float64)
    exact = flat(torch.autograd.grad(kl_grad @ v, params))
    assert torch.allclose(product(v), exact, rtol=1e-6, atol=1e-9)
