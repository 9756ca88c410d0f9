"""Returns and advantages of padded episode batches (:class:`metagym.rl.sampler.Episodes`).

Tensors are indexed ``[..., time]`` with a float ``mask`` (1 for real steps, 0 for padding); the
leading dimensions (tasks, episodes) are free. Nothing is bootstrapped past an episode's end
(truncated episodes are treated as ended, as in MAML-RL's reference implementations).
"""

from __future__ import annotations

import torch
from torch import Tensor


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Reward-to-go ``G_t = sum_{k >= t} gamma^(k-t) r_k`` within each episode, 0 on padding.

    Args:
        rewards: ``(..., T)``.
        mask: ``(..., T)``, 1 for steps of the episode, 0 for padding after its end.
        gamma: discount in [0, 1].
    """
    rewards = rewards * mask
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running * mask[..., t]
        returns[..., t] = running
    return returns * mask


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalized advantage estimation (Schulman et al. 2016), the value after the end being 0.

    With ``lam = 1`` this is ``discounted_returns - values``.

    Args:
        rewards, values, mask: ``(..., T)``; ``values[..., t]`` estimates ``G_t``.
    """
    values = values * mask
    next_values = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
    deltas = (rewards + gamma * next_values - values) * mask
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[..., 0])
    for t in range(deltas.shape[-1] - 1, -1, -1):
        running = deltas[..., t] + gamma * lam * running * mask[..., t]
        advantages[..., t] = running
    return advantages * mask


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (a scalar)."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def normalize(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """``x`` shifted and scaled to mean 0, standard deviation 1 over the masked entries."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) / (var.sqrt() + eps) * mask
