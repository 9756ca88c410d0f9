"""An in-context transformer policy for RL^2: causal self-attention over the steps of a trial.

:class:`TransformerActorCritic` has the interface of :class:`metagym.rl.rl2.RecurrentActorCritic`
(``initial_state``, ``forward(inputs, state)``), so :class:`metagym.rl.rl2.RL2` trains it by the
same PPO over whole trials and :class:`metagym.rl.rl2.RecurrentPolicy` acts with it.

Its memory is a key-value cache of the window of past steps, ``(L, N, 1 + 2 * layers * H)``:
each slot is one step's "valid" flag (1 for a real step) and, per layer, the key and the value it
had there. Acting then costs one token per step (attention over the cached keys), not the whole
window again. ``RecurrentPolicy.reset_memory`` multiplies a row's slots by 0, which marks them
invalid: invalid slots are masked out as keys and not counted in positions, so a reset row starts
afresh while the other rows keep their history. A forward over a whole trial from
:meth:`initial_state` and the same trial fed step by step give the same outputs; over a whole
trial the layers compute what ``torch.nn.TransformerEncoder`` computes with a causal mask
(tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Distribution

from metagym.rl.rl2 import ActorCriticHeads

__all__ = ["TransformerActorCritic"]


class TransformerActorCritic(ActorCriticHeads):
    """A causal transformer over a trial's steps with a policy head and a value head.

    One token per step: the step's input ``D`` (scaled as in :class:`ActorCriticHeads`), embedded
    linearly, plus a learned embedding of its position, the number of valid steps before it in
    its row (its index within the trial). Pre-norm encoder layers without dropout.

    Args:
        input_dim: ``D``.
        action_space: the inner environment's action space (Box or Discrete).
        hidden: model width ``H`` (a multiple of ``heads``).
        layers: encoder layers.
        heads: attention heads.
        context: the most steps a token sees, itself included (at least one whole trial: the
            episodes per trial times the step limit); older steps are dropped from the memory.
        init_std: initial standard deviation of Box actions, in units of the half range.
    """

    def __init__(
        self,
        input_dim: int,
        action_space: spaces.Space,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 4,
        context: int = 200,
        init_std: float = 0.5,
    ):
        super().__init__(input_dim, action_space)
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        self.input_dim, self.context, self.n_heads = input_dim, context, heads
        self.embed = nn.Linear(input_dim, hidden)
        self.position = nn.Embedding(context, hidden)
        nn.init.normal_(self.position.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, 4 * hidden, dropout=0.0, activation="gelu", norm_first=True
        )
        self.body = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False
        )
        self.add_heads(hidden, init_std)

    def initial_state(self, n: int) -> Tensor:
        """The memory at the start of a trial: an empty cache, ``(0, n, 1 + 2 * layers * H)``."""
        return torch.zeros(0, n, 1 + 2 * len(self.body.layers) * self.hidden_size,
                           device=self.center.device)  # fmt: skip

    @property
    def hidden_size(self) -> int:
        return self.embed.out_features

    def forward(self, inputs: Tensor, state: Tensor) -> tuple[Distribution, Tensor, Tensor]:
        """Run ``T`` steps of ``N`` trials after the cached window ``state``.

        The window is the cache's slots then the ``T`` new steps (valid); leading slots invalid
        in every row are trimmed and the oldest slots are dropped beyond ``context``. A new
        step's position is the number of valid slots before it in its row.

        Args:
            inputs: ``(T, N, D)``, ``T <= context``.
            state: ``(L, N, 1 + 2 * layers * H)``, the cache before the first step (first
                channel: valid; then each layer's key and value).

        Returns:
            the action distribution (batch shape ``(T, N)``), values ``(T, N)`` and the cache
            after the last step ``(L', N, 1 + 2 * layers * H)``, ``L' <= context``.
        """
        t, n, _ = inputs.shape
        if t > self.context:
            raise ValueError(
                f"{t} steps at once exceed the transformer's context of {self.context} steps"
            )
        live = (state[..., 0] > 0.5).any(1)  # (L,): slots valid in some row
        first = int(live.int().argmax()) if bool(live.any()) else len(state)
        cache = state[max(first, len(state) + t - self.context) :]
        valid = torch.cat([cache[..., 0] > 0.5, inputs.new_ones(t, n, dtype=torch.bool)])
        before = valid[: len(cache)].long().sum(0)  # (N,)
        positions = before + torch.arange(t, device=inputs.device)[:, None]
        x = self.embed(inputs * self.input_scale) + self.position(positions)
        mask = self.attention_mask(valid, t)
        new_cache = [valid[-t:, :, None].to(cache.dtype)]
        h = self.hidden_size
        for i, layer in enumerate(self.body.layers):
            keys = cache[..., 1 + 2 * i * h : 1 + (2 * i + 1) * h]
            values = cache[..., 1 + (2 * i + 1) * h : 1 + (2 * i + 2) * h]
            x, k, v = self._layer(layer, x, keys, values, mask)
            new_cache += [k, v]
        features = self.body.norm(x)
        distribution, values = self.heads(features)
        window = torch.cat([cache, torch.cat(new_cache, -1)])
        return distribution, values, window

    def _layer(self, layer: nn.TransformerEncoderLayer, x: Tensor, keys: Tensor, values: Tensor,
               mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        """One pre-norm encoder layer on the new tokens ``x`` ``(T, N, H)`` with the cached
        ``keys`` / ``values`` ``(L, N, H)``; returns its output and the new tokens' key and
        value ``(T, N, H)``."""
        attention = layer.self_attn
        q, k, v = F.linear(layer.norm1(x), attention.in_proj_weight, attention.in_proj_bias).chunk(
            3, -1
        )
        t, n, h = x.shape
        heads, width = self.n_heads, h // self.n_heads

        def split(z: Tensor) -> Tensor:  # (S, N, H) -> (N, heads, S, width)
            return z.reshape(z.shape[0], n, heads, width).permute(1, 2, 0, 3)

        all_k, all_v = torch.cat([keys, k]), torch.cat([values, v])
        scores = split(q) @ split(all_k).transpose(-1, -2) / math.sqrt(width)
        scores = scores.masked_fill(~mask[:, None], float("-inf"))
        mixed = (scores.softmax(-1) @ split(all_v)).permute(2, 0, 1, 3).reshape(t, n, h)
        x = x + attention.out_proj(mixed)
        x = x + layer.linear2(F.gelu(layer.linear1(layer.norm2(x))))
        return x, k, v

    @staticmethod
    def attention_mask(valid: Tensor, t: int) -> Tensor:
        """``(N, T, L + T)``, True where new step ``i`` may see slot ``j``: a valid slot at or
        before it (each new step sees itself, so no row of the softmax is empty)."""
        length = valid.shape[0]
        slot = torch.arange(length, device=valid.device)
        query = torch.arange(length - t, length, device=valid.device)
        causal = slot[None, :] <= query[:, None]  # (T, L + T)
        return causal[None] & valid.T[:, None, :]
