"""The linear feature baseline of MAML-RL (Duan et al. 2016's rllab ``LinearFeatureBaseline``).

A ridge regression of the discounted return on per-step features
``[obs, obs**2, t/100, (t/100)**2, (t/100)**3, 1]`` (observations clipped to [-10, 10]), refit on
every task's own episodes before its policy-gradient step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_features(observations: Tensor, mask: Tensor) -> Tensor:
    """Features ``(..., T, 2 * obs_dim + 4)`` of observations ``(..., T, obs_dim)``."""
    obs = observations.float().flatten(start_dim=mask.dim()).clamp(-10, 10)
    steps = mask.shape[-1]
    time = torch.arange(steps, dtype=obs.dtype).expand(mask.shape) / 100.0
    time = time.unsqueeze(-1)
    ones = torch.ones_like(time)
    features = torch.cat([obs, obs**2, time, time**2, time**3, ones], dim=-1)
    return features * mask.unsqueeze(-1)


class LinearFeatureBaseline:
    """Least squares on :func:`linear_features`, with a ridge term that grows if the fit fails.

    Args:
        reg_coeff: initial ridge coefficient (multiplied by 10, at most 5 times, until the
            solution is finite).
    """

    def __init__(self, reg_coeff: float = 1e-5):
        self.reg_coeff = reg_coeff
        self.weights: Tensor | None = None

    def fit(self, observations: Tensor, returns: Tensor, mask: Tensor) -> LinearFeatureBaseline:
        """Fit on ``observations (..., T, obs_dim)`` and ``returns (..., T)`` where ``mask`` is 1."""
        features = linear_features(observations, mask)
        features = features.reshape(-1, features.shape[-1])
        targets = (returns * mask).reshape(-1, 1).double()
        x = features.double()
        gram = x.T @ x
        rhs = x.T @ targets
        eye = torch.eye(gram.shape[0], dtype=gram.dtype)
        reg = self.reg_coeff
        for _ in range(5):
            weights = torch.linalg.lstsq(gram + reg * eye, rhs).solution
            if torch.isfinite(weights).all():
                break
            reg *= 10
        self.weights = weights[:, 0]
        return self

    def predict(self, observations: Tensor, mask: Tensor) -> Tensor:
        """Predicted returns ``(..., T)``, 0 on padding."""
        if self.weights is None:
            raise RuntimeError("LinearFeatureBaseline.predict() before fit()")
        features = linear_features(observations, mask).double()
        return (features @ self.weights).float() * mask
