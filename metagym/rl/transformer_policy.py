"""An in-context transformer policy for RL^2: causal self-attention over the steps of a trial.

:class:`TransformerActorCritic` has the interface of :class:`metagym.rl.rl2.RecurrentActorCritic`
(``initial_state``, ``forward(inputs, state)``), so :class:`metagym.rl.rl2.RL2` trains it by the
same PPO over whole trials and :class:`metagym.rl.rl2.RecurrentPolicy` acts with it.

Its memory is the window of past inputs, ``(L, N, D + 1)``: each slot is one step's
:class:`~metagym.tasks.trials.RL2TrialWrapper` vector and a "valid" flag (1 for a real step).
``RecurrentPolicy.reset_memory`` multiplies a row's slots by 0, which marks them invalid: invalid
slots are masked out as keys and not counted in positions, so a reset row starts afresh while the
other rows keep their history. A forward over a whole trial from :meth:`initial_state` and the
same trial fed step by step give the same outputs.
"""

from __future__ import annotations

import torch
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
        """The memory at the start of a trial: an empty window, ``(0, n, D + 1)``."""
        return torch.zeros(0, n, self.input_dim + 1, device=self.center.device)

    def forward(self, inputs: Tensor, state: Tensor) -> tuple[Distribution, Tensor, Tensor]:
        """Run ``T`` steps of ``N`` trials after the window ``state``.

        The window is the state's slots then the ``T`` new steps (valid); leading slots invalid
        in every row are trimmed and the oldest slots are dropped beyond ``context``.

        Args:
            inputs: ``(T, N, D)``, ``T <= context``.
            state: ``(L, N, D + 1)``, the window before the first step (last channel: valid).

        Returns:
            the action distribution (batch shape ``(T, N)``), values ``(T, N)`` and the window
            after the last step ``(L', N, D + 1)``, ``L' <= context``.
        """
        t, n, _ = inputs.shape
        if t > self.context:
            raise ValueError(
                f"{t} steps at once exceed the transformer's context of {self.context} steps"
            )
        window = torch.cat([state, torch.cat([inputs, inputs.new_ones(t, n, 1)], -1)])
        live = (window[..., -1] > 0.5).any(1)  # (L + T,): slots valid in some row
        start = max(int(live.int().argmax()), len(window) - self.context)
        window = window[start:]
        valid = window[..., -1] > 0.5  # (L', N)
        positions = valid.long().cumsum(0) - valid.long()  # valid steps before each slot
        tokens = self.embed(window[..., :-1] * self.input_scale) + self.position(positions)
        features = self.body(tokens, mask=self.attention_mask(valid))
        distribution, values = self.heads(features[-t:])
        return distribution, values, window

    def attention_mask(self, valid: Tensor) -> Tensor:
        """``(N * heads, L, L)``, True where query slot ``i`` may not see key slot ``j``: a
        later slot, or an invalid one other than itself (an invalid slot sees only itself, so
        that no row of the softmax is empty)."""
        length = valid.shape[0]
        own = torch.eye(length, dtype=torch.bool, device=valid.device)
        causal = torch.ones_like(own).tril()
        allowed = causal & (valid.T[:, None, :] | own)  # (N, L, L)
        return (~allowed).repeat_interleave(self.n_heads, 0)
