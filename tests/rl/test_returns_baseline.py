"""Returns, the linear feature baseline and the policy-gradient loss against hand computations."""

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal

from metagym.rl.maml_rl import policy_gradient_loss
from metagym.rl.returns import discounted_returns, gae, normalize
from metagym.rl.sampler import Episodes
from metagym.rl.value_baseline import LinearFeatureBaseline, linear_features


def test_discounted_returns_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    g = 0.5
    expected = torch.tensor([[1 + g * 2 + g * g * 3, 2 + g * 3, 3.0], [4 + g * 5, 5.0, 0.0]])
    assert torch.allclose(discounted_returns(rewards, mask, g), expected)


def test_gae_with_lambda_one_is_returns_minus_values():
    rewards = torch.tensor([[1.0, -1.0, 2.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    values = torch.tensor([[0.3, 0.2, -0.1, 9.0]])
    returns = discounted_returns(rewards, mask, 0.9)
    assert torch.allclose(gae(rewards, values, mask, 0.9, 1.0), (returns - values) * mask)
    # lambda = 0: one-step TD errors, value 0 after the end.
    td = torch.tensor([[1 + 0.9 * 0.2 - 0.3, -1 + 0.9 * -0.1 - 0.2, 2 - (-0.1), 0.0]])
    assert torch.allclose(gae(rewards, values, mask, 0.9, 0.0), td)


def test_linear_baseline_matches_least_squares_by_hand():
    # 2 episodes, 3 steps, 1-d observations; the second episode lasts 2 steps.
    obs = torch.tensor([[[0.5], [1.0], [2.0]], [[-1.0], [0.0], [7.0]]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    returns = torch.tensor([[3.0, 2.0, 1.0], [-1.0, 0.5, 0.0]])
    rows, targets = [], []
    for e in range(2):
        for t in range(3):
            if mask[e, t]:
                o, a = float(obs[e, t, 0]), t / 100
                rows.append([o, o * o, a, a * a, a**3, 1.0])
                targets.append(float(returns[e, t]))
    x = torch.tensor(rows, dtype=torch.float64)
    y = torch.tensor(targets, dtype=torch.float64)
    reg = 1e-5
    w = torch.linalg.solve(x.T @ x + reg * torch.eye(6, dtype=torch.float64), x.T @ y)
    baseline = LinearFeatureBaseline(reg_coeff=reg).fit(obs, returns, mask)
    assert torch.allclose(baseline.weights, w, atol=1e-6)
    predicted = baseline.predict(obs, mask)
    assert predicted[1, 2] == 0  # padding
    assert torch.allclose(predicted[mask.bool()].double(), x @ w, atol=1e-5)
    assert linear_features(obs, mask).shape == (2, 3, 6)


def test_normalize_masked():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = normalize(x, mask)
    assert out[0, 3] == 0
    assert torch.allclose(out[0, :3], torch.tensor([-1.0, 0.0, 1.0]) / math.sqrt(2 / 3), atol=1e-5)


class _LinearGaussian(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[0.5]]))

    def forward(self, obs):
        return Independent(Normal(obs @ self.w, torch.ones(obs.shape[0], 1)), 1)


def _episodes(obs, actions, rewards, mask):
    b, e, t = mask.shape
    return Episodes(
        observations=torch.cat([obs, torch.zeros(b, e, 1, obs.shape[-1])], dim=2),
        actions=actions,
        rewards=rewards,
        dones=torch.zeros(b, e, t, dtype=torch.bool),
        terminated=torch.zeros(b, e, t, dtype=torch.bool),
        mask=mask,
        lengths=mask.sum(-1).long(),
        tasks=({},) * b,
        seeds=torch.zeros(b, e, dtype=torch.long),
    )


def test_policy_gradient_loss_and_gradient_by_hand():
    obs = torch.tensor([[[[1.0], [2.0]], [[-1.0], [0.0]]]])  # (1, 2, 2, 1)
    actions = torch.tensor([[[[0.0], [1.0]], [[1.0], [0.0]]]])
    mask = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    adv = torch.tensor([[[2.0, -1.0], [0.5, 7.0]]])
    episodes = _episodes(obs, actions, torch.zeros_like(mask), mask)
    policy = _LinearGaussian()
    loss = policy_gradient_loss(policy, episodes, adv)
    w = 0.5
    terms = []
    grads = []
    for o, a, A in ((1.0, 0.0, 2.0), (2.0, 1.0, -1.0), (-1.0, 1.0, 0.5)):
        logp = -0.5 * (a - w * o) ** 2 - 0.5 * math.log(2 * math.pi)
        terms.append(logp * A)
        grads.append((a - w * o) * o * A)  # d logp / dw * A
    assert math.isclose(float(loss.detach()), -sum(terms) / 3, rel_tol=1e-5)
    loss.backward()
    assert math.isclose(float(policy.w.grad), -sum(grads) / 3, rel_tol=1e-5)
