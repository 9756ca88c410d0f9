"""Matching networks (Vinyals et al. 2016).

A query ``q`` gets ``p(y=c|q) = sum_{i: y_i=c} softmax_i(scale * cos(f(q), g(x_i)))``, the soft
nearest-neighbour head with cosine attention. With full-context embeddings (``fce=True``):

- ``g``: a bidirectional LSTM reads the support embeddings ``g'(x_i)`` (in the task's support
  order) and ``g(x_i) = g'(x_i) + h_fwd_i + h_bwd_i``;
- ``f``: an attention LSTM reads the query embedding ``f'(q)`` for ``read_steps`` steps,
  attending over ``g(x_i)``: ``h_k, c_k = LSTM(f'(q), (h_{k-1} + r_{k-1}, c_{k-1}))``,
  ``h_k <- h_k + f'(q)``, ``r_k = sum_i softmax_i(h_k . g(x_i)) g(x_i)``; ``f(q) = h_K``.
  (The paper concatenates ``[h, r]`` as the LSTM state; we add them, keeping the state size D.)

``scale`` multiplies the cosines before the softmax (learned, starting at ``scale``); with the
paper's plain cosines (``learn_scale=False, scale=1``) a 5-way softmax over values in [-1, 1]
cannot get confident, which slows training.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from metagym.learners.soft_nn import EpisodicLearner, cosine_similarities, soft_neighbour_log_probs


def matching_log_probs(
    support: Tensor, support_y: Tensor, query: Tensor, ways: int, scale: Tensor | float = 1.0
) -> Tensor:
    """Cosine attention over support features ``(T, S, D)`` -> log-probs ``(T, Q, ways)``."""
    return soft_neighbour_log_probs(scale * cosine_similarities(query, support), support_y, ways)


class FullContextEmbedding(nn.Module):
    """The FCE of matching networks over features of dimension ``dim`` (see the module doc)."""

    def __init__(self, dim: int, read_steps: int = 5):
        super().__init__()
        if not isinstance(read_steps, int) or read_steps < 1:
            raise ValueError(f"read_steps must be a positive int, got {read_steps!r}")
        self.support_lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.query_cell = nn.LSTMCell(dim, dim)
        self.read_steps = read_steps

    def embed_support(self, support: Tensor) -> Tensor:
        """``(T, S, D) -> (T, S, D)``: ``g'(x_i) + h_fwd_i + h_bwd_i``."""
        out, _ = self.support_lstm(support)
        forward, backward = out.chunk(2, dim=-1)
        return support + forward + backward

    def embed_query(self, query: Tensor, support: Tensor) -> Tensor:
        """Queries ``(T, Q, D)`` attending over context-embedded support ``(T, S, D)``."""
        t, q, d = query.shape
        flat = query.reshape(t * q, d)
        memory = support.unsqueeze(1).expand(t, q, *support.shape[1:]).reshape(t * q, -1, d)
        h = torch.zeros_like(flat)
        c = torch.zeros_like(flat)
        r = torch.zeros_like(flat)
        for _ in range(self.read_steps):
            h, c = self.query_cell(flat, (h + r, c))
            h = h + flat
            attention = (memory @ h.unsqueeze(-1)).squeeze(-1).softmax(-1)  # (TQ, S)
            r = (attention.unsqueeze(-1) * memory).sum(1)
        return h.view(t, q, d)


class MatchingNetwork(EpisodicLearner):
    """Matching network over ``embedding`` (conv4 in the paper).

    Args:
        embedding: images ``(n, *image)`` -> features ``(n, dim)``.
        dim: feature size of ``embedding`` (needed by the FCE LSTMs).
        fce: use full-context embeddings.
        read_steps: attention-LSTM steps of the query embedding (FCE only).
        scale: cosine scale (initial value when learned).
        learn_scale: learn the scale.
        meta_lr, lr_halving: see :class:`~metagym.learners.soft_nn.EpisodicLearner`.
    """

    name = "matching"
    tuned = ("scale",)  # learned: it comes back with the weights

    def __init__(
        self,
        embedding: nn.Module,
        dim: int = 64,
        *,
        fce: bool = False,
        read_steps: int = 5,
        scale: float = 10.0,
        learn_scale: bool = True,
        meta_lr: float = 1e-3,
        lr_halving: int = 0,
    ):
        super().__init__(embedding, meta_lr=meta_lr, lr_halving=lr_halving)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.fce = FullContextEmbedding(dim, read_steps) if fce else None
        self.name = "matching-fce" if fce else "matching"
        self.read_steps = read_steps
        self.learn_scale = learn_scale
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self._make_optimizer()

    def config(self) -> dict:
        return {
            **super().config(),
            "fce": self.fce is not None,
            "read_steps": self.read_steps,
            "scale": float(self.log_scale.detach().exp()),
            "learn_scale": self.learn_scale,
        }

    def head(self, support: Tensor, support_y: Tensor, query: Tensor, ways: int) -> Tensor:
        if self.fce is not None:
            support = self.fce.embed_support(support)
            query = self.fce.embed_query(query, support)
        return matching_log_probs(support, support_y, query, ways, self.log_scale.exp())
