"""Transformer in-context learners: the black-box family with attention in place of an LSTM.

The support pairs and the queries are tokens of one sequence read by
:class:`~metagym.nets.in_context.InContextTransformer`; queries attend to the support set, not to
each other. Token layout (a flag marks support tokens):

- regression: support ``[x, y, 1]``, query ``[x, 0, 0]``; a linear map of the query's output
  predicts ``y``;
- classification: support ``[e(x), onehot(y), 1]``, query ``[e(q), 0, 0]`` with ``e`` a conv4
  embedding; a linear map of the query's output gives the class scores.

Training, adaptation (a forward pass) and the interface are those of the LSTM learners they sit
beside (:class:`~metagym.learners.blackbox.BlackBoxRegressor`,
:class:`~metagym.learners.blackbox_classifier.BlackBoxClassifier`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metagym.learners.base import Learner, check_positive
from metagym.learners.blackbox import BlackBoxRegressor
from metagym.learners.blackbox_classifier import BlackBoxClassifier
from metagym.nets.in_context import InContextTransformer


def _flagged(features: Tensor, flag: float) -> Tensor:
    """``(T, n, F)`` -> ``(T, n, F + 1)`` with ``flag`` as the last feature."""
    return torch.cat([features, torch.full_like(features[..., :1], flag)], dim=-1)


class _TransformerSettings:
    """The transformer's size, shared by both learners' ``config``."""

    def _set_size(self, d_model: int, heads: int, layers: int, meta_lr: float) -> None:
        check_positive("meta_lr", meta_lr)
        for label, value in (("d_model", d_model), ("heads", heads), ("layers", layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be an int >= 1, got {value!r}")
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
        self.d_model, self.heads, self.layers = d_model, heads, layers

    def _size_config(self) -> dict:
        return {"d_model": self.d_model, "heads": self.heads, "layers": self.layers}


class TransformerRegressor(_TransformerSettings, BlackBoxRegressor):
    """In-context regression: ``(support x, support y, query x) -> query y``.

    Args:
        x_dim, y_dim: feature sizes of inputs and targets.
        d_model, heads, layers: the transformer's width, heads and encoder layers.
        loss_fn: ``loss_fn(prediction, target) -> scalar``.
        meta_lr: Adam step size.
    """

    name = "transformer"

    def __init__(
        self,
        x_dim: int = 1,
        y_dim: int = 1,
        *,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.mse_loss,
        meta_lr: float = 1e-3,
    ):
        Learner.__init__(self)
        self._set_size(d_model, heads, layers, meta_lr)
        self.reader = InContextTransformer(x_dim + y_dim + 1, d_model, heads=heads, layers=layers)
        self.head = nn.Linear(d_model, y_dim)
        self.loss_fn = loss_fn
        self.optimizer = torch.optim.Adam(self.parameters(), lr=meta_lr)

    def config(self) -> dict:
        lr = self.optimizer.param_groups[0]["lr"]
        return {"name": self.name, **self._size_config(), "meta_lr": lr}

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Support ``(T, K, x_dim)``, ``(T, K, y_dim)``; queries ``(T, Q, x_dim)`` -> ``(T, Q, y_dim)``."""
        support = _flagged(torch.cat([support_x, support_y], dim=-1), 1.0)
        blank = torch.zeros(*query_x.shape[:2], support_y.shape[-1], dtype=query_x.dtype)
        query = _flagged(torch.cat([query_x, blank.to(query_x.device)], dim=-1), 0.0)
        return self.head(self.reader(support, query))


class TransformerClassifier(_TransformerSettings, BlackBoxClassifier):
    """In-context N-way classification over an image ``embedding``.

    Args:
        embedding: images ``(n, *image)`` -> features ``(n, dim)``.
        dim: feature size of ``embedding``.
        ways: number of classes N.
        d_model, heads, layers: the transformer's width, heads and encoder layers.
        meta_lr: Adam step size.
    """

    name = "transformer"

    def __init__(
        self,
        embedding: nn.Module,
        dim: int = 64,
        ways: int = 5,
        *,
        d_model: int = 128,
        heads: int = 4,
        layers: int = 2,
        meta_lr: float = 1e-3,
    ):
        Learner.__init__(self)
        self._set_size(d_model, heads, layers, meta_lr)
        self.embedding = embedding
        self.ways = ways
        self.reader = InContextTransformer(
            dim + ways + 1, d_model, heads=heads, layers=layers, feedforward=2 * d_model
        )
        self.out = nn.Linear(d_model, ways)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=meta_lr)

    def config(self) -> dict:
        lr = self.optimizer.param_groups[0]["lr"]
        return {"name": self.name, "ways": self.ways, **self._size_config(), "meta_lr": lr}

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Support ``(T, S, *image)``, ``(T, S)``; queries ``(T, Q, *image)`` -> logits ``(T, Q, N)``."""
        t, s, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        features = self.embed_episode(support_x, query_x)
        labels = F.one_hot(support_y, self.ways).to(features.dtype)
        support = _flagged(torch.cat([features[:, :s], labels], dim=-1), 1.0)
        blank = torch.zeros(t, q, self.ways, dtype=features.dtype, device=features.device)
        query = _flagged(torch.cat([features[:, s:], blank], dim=-1), 0.0)
        return self.out(self.reader(support, query))
