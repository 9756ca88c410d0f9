"""PEARL's probabilistic context encoder (Rakelly et al. 2019, section 4.1).

Every transition of a task's context is mapped independently to a Gaussian factor
``N(mu_i, sigma_i^2)`` over the latent task variable ``z``; the posterior is their normalized
product, ``sigma^2 = 1 / sum_i sigma_i^-2`` and ``mu = sigma^2 * sum_i mu_i / sigma_i^2`` (per
dimension). A sum over transitions does not depend on their order, so the posterior is invariant to
permutations of the context (tested). An empty context gives the prior ``N(0, I)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metagym.nets.mlp import mlp

__all__ = ["ContextEncoder", "kl_to_prior"]

#: Smallest variance of one transition's factor: keeps the product's precision finite.
MIN_VARIANCE = 1e-7


class ContextEncoder(nn.Module):
    """Transitions ``(..., C, input_dim)`` -> the posterior's mean and variance ``(..., latent)``.

    Args:
        input_dim: size of one transition's vector (PEARL: observation, action, reward).
        latent: size of ``z`` (PEARL: 5).
        hidden: hidden widths of the per-transition MLP (ReLU; PEARL: three of 200).
    """

    def __init__(self, input_dim: int, latent: int = 5, hidden: Sequence[int] = (200, 200, 200)):
        super().__init__()
        self.latent = latent
        self.net = mlp(input_dim, hidden, 2 * latent, nn.ReLU)

    def factors(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Each transition's factor: means and variances ``(..., C, latent)``."""
        out = self.net(context)
        mean, raw = out.split(self.latent, dim=-1)
        return mean, F.softplus(raw).clamp_min(MIN_VARIANCE)

    def forward(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """The product of the factors of ``context (..., C, input_dim)``: mean and variance
        ``(..., latent)``; ``C = 0`` gives the prior (mean 0, variance 1)."""
        if context.shape[-2] == 0:
            shape = (*context.shape[:-2], self.latent)
            zeros = context.new_zeros(shape)
            return zeros, torch.ones_like(zeros)
        mean, variance = self.factors(context)
        precision = variance.reciprocal().sum(dim=-2)
        posterior_variance = precision.reciprocal()
        posterior_mean = posterior_variance * (mean / variance).sum(dim=-2)
        return posterior_mean, posterior_variance


def kl_to_prior(mean: Tensor, variance: Tensor) -> Tensor:
    """``KL(N(mean, variance) || N(0, I))`` summed over the last dimension, ``(...)``."""
    return 0.5 * (variance + mean**2 - 1.0 - variance.log()).sum(dim=-1)
