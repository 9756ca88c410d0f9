"""Policies for MAML-RL: MLPs that map observations to an action distribution.

Both are plain ``nn.Module``s whose ``forward`` returns a torch distribution with batch shape
``(N,)``, so they run unchanged under ``higher``'s functional models (``fmodel(obs)`` or
``fmodel(obs, params=weights)``) and plug straight into :class:`metagym.rl.sampler.EpisodeSampler`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from metagym.nets.mlp import mlp


class GaussianMLPPolicy(nn.Module):
    """A diagonal Gaussian whose mean is an MLP of the observation (tanh hidden layers) and whose
    log standard deviation is a learned, state-independent vector (MAML-RL's policy).

    Args:
        obs_dim: observation size (observations are flattened).
        act_dim: action size.
        hidden: hidden layer widths (MAML: two layers of 100; pytorch-maml-rl: 64).
        init_std: initial standard deviation.
        min_std: lower bound on the standard deviation.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (64, 64),
        init_std: float = 1.0,
        min_std: float = 1e-6,
    ):
        super().__init__()
        self.mean = mlp(obs_dim, hidden, act_dim, nn.Tanh)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.min_log_std = math.log(min_std)

    def forward(self, observations: Tensor) -> Distribution:
        """``observations (N, *obs_shape)`` -> ``Independent(Normal)``, batch ``(N,)``, event ``(act_dim,)``."""
        mean = self.mean(observations.to(self.log_std.dtype).flatten(start_dim=1))
        std = self.log_std.clamp_min(self.min_log_std).exp().expand_as(mean)
        return Independent(Normal(mean, std), 1)


class CategoricalMLPPolicy(nn.Module):
    """A categorical distribution over ``n_actions`` with MLP logits."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        self.logits = mlp(obs_dim, hidden, n_actions, nn.Tanh)

    def forward(self, observations: Tensor) -> Distribution:
        return Categorical(logits=self.logits(observations.float().flatten(start_dim=1)))


def make_policy(
    observation_space: gym.Space, action_space: gym.Space, hidden: Sequence[int] = (64, 64)
) -> nn.Module:
    """A Gaussian MLP policy for a Box action space, a categorical one for a Discrete space."""
    obs_dim = int(np.prod(observation_space.shape)) if observation_space.shape else 1
    if isinstance(action_space, spaces.Box):
        return GaussianMLPPolicy(obs_dim, int(np.prod(action_space.shape)), hidden)
    if isinstance(action_space, spaces.Discrete):
        return CategoricalMLPPolicy(obs_dim, int(action_space.n), hidden)
    raise TypeError(f"no MLP policy for the action space {action_space}")


def detach_distribution(distribution: Distribution) -> Distribution:
    """The same distribution with its parameters detached (the "old" policy of TRPO)."""
    if isinstance(distribution, Independent):
        return Independent(
            detach_distribution(distribution.base_dist), distribution.reinterpreted_batch_ndims
        )
    if isinstance(distribution, Normal):
        return Normal(distribution.loc.detach(), distribution.scale.detach())
    if isinstance(distribution, Categorical):
        return Categorical(logits=distribution.logits.detach())
    raise TypeError(f"cannot detach {type(distribution).__name__}")


def cat_distributions(distributions: Sequence[Distribution]) -> Distribution:
    """Concatenate distributions of the same kind along the batch dimension."""
    first = distributions[0]
    if isinstance(first, Independent):
        base = cat_distributions([d.base_dist for d in distributions])
        return Independent(base, first.reinterpreted_batch_ndims)
    if isinstance(first, Normal):
        return Normal(
            torch.cat([d.loc for d in distributions]), torch.cat([d.scale for d in distributions])
        )
    if isinstance(first, Categorical):
        return Categorical(logits=torch.cat([d.logits for d in distributions]))
    raise TypeError(f"cannot concatenate {type(first).__name__}")


def task_batched_policy(model: nn.Module, weights: Sequence[Sequence[Tensor]], per_task: int):
    """One policy for ``len(weights)`` tasks whose rows come in blocks: rows
    ``[b * per_task, (b + 1) * per_task)`` act with fast weights ``weights[b]`` (a list in the
    order of ``model.parameters()``).

    :class:`GaussianMLPPolicy` and :class:`CategoricalMLPPolicy` run as batched matrix products
    (one forward for all tasks); other modules run :func:`torch.func.functional_call` per task.
    """
    names = [name for name, _ in model.named_parameters()]
    n_tasks = len(weights)
    stacked = {name: torch.stack([w[i] for w in weights]) for i, name in enumerate(names)}

    def check(observations: Tensor) -> None:
        if observations.shape[0] != per_task * n_tasks:
            raise RuntimeError(
                f"expected {per_task * n_tasks} rows ({n_tasks} tasks x {per_task}), got "
                f"{observations.shape[0]}"
            )

    if isinstance(model, (GaussianMLPPolicy, CategoricalMLPPolicy)):
        prefix = "mean" if isinstance(model, GaussianMLPPolicy) else "logits"
        net = getattr(model, prefix)

        def run(observations: Tensor) -> Tensor:
            x = observations.float().flatten(start_dim=1).view(n_tasks, per_task, -1)
            for index, layer in enumerate(net):
                if isinstance(layer, nn.Linear):
                    w = stacked[f"{prefix}.{index}.weight"]
                    b = stacked[f"{prefix}.{index}.bias"]
                    x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
                else:
                    x = layer(x)
            return x.reshape(n_tasks * per_task, -1)

        def policy(observations: Tensor) -> Distribution:
            check(observations)
            out = run(observations)
            if isinstance(model, CategoricalMLPPolicy):
                return Categorical(logits=out)
            log_std = stacked["log_std"].clamp_min(model.min_log_std)
            std = log_std.exp().repeat_interleave(per_task, dim=0)
            return Independent(Normal(out, std), 1)

        return policy

    def generic(observations: Tensor) -> Distribution:
        check(observations)
        parts = [
            torch.func.functional_call(
                model,
                dict(zip(names, w, strict=True)),
                (observations[b * per_task : (b + 1) * per_task],),
            )
            for b, w in enumerate(weights)
        ]
        return cat_distributions(parts)

    return generic
