"""A transformer that reads a support set and its queries as one sequence of tokens.

Support tokens attend to each other; each query token attends to the support tokens and to
itself, never to other queries, so a query's output does not depend on which other queries are
asked. There is no positional encoding: the output is invariant to the order of the support set.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def support_only_mask(n_support: int, n_query: int, device: torch.device) -> Tensor:
    """Boolean attention mask ``(S + Q, S + Q)``, True where attention is NOT allowed: every token
    may attend to the ``S`` support tokens and to itself."""
    n = n_support + n_query
    blocked = torch.ones(n, n, dtype=torch.bool, device=device)
    blocked[:, :n_support] = False
    blocked.fill_diagonal_(False)
    return blocked


class InContextTransformer(nn.Module):
    """Support tokens ``(T, S, F)`` and query tokens ``(T, Q, F)`` -> query outputs ``(T, Q, d)``.

    Args:
        token_features: ``F``, the features of one token.
        d_model: width of the transformer.
        heads: attention heads.
        layers: encoder layers (pre-norm, no dropout: runs are reproducible from their seed).
        feedforward: hidden size of each layer's MLP.
    """

    def __init__(
        self,
        token_features: int,
        d_model: int = 64,
        *,
        heads: int = 4,
        layers: int = 2,
        feedforward: int = 128,
    ):
        super().__init__()
        self.embed = nn.Linear(token_features, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, feedforward, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, support: Tensor, query: Tensor) -> Tensor:
        s, q = support.shape[1], query.shape[1]
        tokens = self.embed(torch.cat([support, query], dim=1))
        out = self.encoder(tokens, mask=support_only_mask(s, q, tokens.device))
        return self.norm(out[:, s:])
