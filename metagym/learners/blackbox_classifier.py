"""Black-box few-shot classifier: a recurrent net reads the support set as a sequence of
(image embedding, one-hot label) pairs and outputs class scores for each query (MANN / SNAIL in
spirit, Santoro et al. 2016; Mishra et al. 2018).

An LSTM/GRU reads the support steps ``[e(x_i), onehot(y_i)]`` in the task's (shuffled) order.
Each query is one more step ``[e(q), 0]`` from the state after the support set, so queries do
not see each other. With ``attention=True`` (the default, SNAIL's attention block over an LSTM
instead of temporal convolutions) the query's output also reads the support steps' outputs by
soft attention, with learned query/key/value projections of the steps' tokens ``[input,
recurrent output]``; the class scores are a linear map of ``[query output, attention read]``. Adaptation is a forward pass; nothing in the architecture
says how to compare images or where the labels are, everything is learned from training tasks.

Measured on Omniglot 5-way 1-shot: without attention (a plain MANN-style LSTM) training stays at
chance for hundreds of meta-batches; the attention read leaves that plateau within the quick
profile's budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metagym.learners.base import Learner, Predictor, check_positive
from metagym.nets.layout import cpu_layout
from metagym.nets.recurrent import CELLS
from metagym.tasks.base import SupervisedTask, stack_tasks


class BlackBoxClassifier(Learner):
    """Recurrent learner for N-way classification.

    Args:
        embedding: images ``(n, *image)`` -> features ``(n, dim)``.
        dim: feature size of ``embedding``.
        ways: number of classes N (fixed: the label input and the output have N entries).
        hidden: recurrent state size.
        cell: ``"lstm"`` or ``"gru"``.
        attention: add the soft-attention read over the support steps' outputs.
        key_dim: size of the attention's query/key projections.
        meta_lr: Adam step size.
    """

    name = "blackbox"
    uses_steps = False

    def __init__(
        self,
        embedding: nn.Module,
        dim: int = 64,
        ways: int = 5,
        *,
        hidden: int = 128,
        cell: str = "lstm",
        attention: bool = True,
        key_dim: int = 64,
        meta_lr: float = 1e-3,
    ):
        super().__init__()
        check_positive("meta_lr", meta_lr)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.embedding = embedding
        self.rnn = CELLS[cell](dim + ways, hidden, batch_first=True)
        self.attention = attention
        if attention:
            token = dim + ways + hidden  # [step input, recurrent output]
            self.query_proj = nn.Linear(token, key_dim)
            self.key_proj = nn.Linear(token, key_dim)
            self.value_proj = nn.Linear(token, hidden)
        self.out = nn.Linear(2 * hidden if attention else hidden, ways)
        self.ways, self.hidden, self.cell, self.key_dim = ways, hidden, cell, key_dim
        self.optimizer = torch.optim.Adam(self.parameters(), lr=meta_lr)

    def config(self) -> dict:
        return {
            "name": self.name,
            "ways": self.ways,
            "hidden": self.hidden,
            "cell": self.cell,
            "attention": self.attention,
            "key_dim": self.key_dim,
            "meta_lr": self.optimizer.param_groups[0]["lr"],
        }

    def _check_labels(self, labels: Tensor) -> None:
        if int(labels.max()) >= self.ways:
            raise ValueError(
                f"{self.name} was built for {self.ways}-way tasks, got label {int(labels.max())}"
            )

    def embed_episode(self, support_x: Tensor, query_x: Tensor) -> Tensor:
        """Support ``(T, S, *image)`` and queries ``(T, Q, *image)`` -> features ``(T, S + Q, D)``,
        one batch through the embedding (channels-last on the CPU: :mod:`metagym.nets.layout`)."""
        t, n = support_x.shape[0], support_x.shape[1] + query_x.shape[1]
        images = cpu_layout(torch.cat([support_x, query_x], 1).flatten(0, 1))
        return self.embedding(images).view(t, n, -1)

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Support ``(T, S, *image)``, ``(T, S)``; queries ``(T, Q, *image)`` -> logits ``(T, Q, N)``."""
        t, s, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        features = self.embed_episode(support_x, query_x)
        labels = F.one_hot(support_y, self.ways).to(features.dtype)
        support_out, state = self.rnn(torch.cat([features[:, :s], labels], dim=-1))  # (T, S, H)

        def repeat(h: Tensor) -> Tensor:  # (1, T, H) -> (1, T*Q, H): each task's state per query
            return h.repeat_interleave(q, dim=1)

        state = tuple(repeat(h) for h in state) if isinstance(state, tuple) else repeat(state)
        blank = torch.zeros(t, q, self.ways, dtype=features.dtype, device=features.device)
        query_in = torch.cat([features[:, s:], blank], dim=-1).reshape(t * q, 1, -1)
        query_out, _ = self.rnn(query_in, state)
        query_out = query_out[:, 0].view(t, q, self.hidden)  # (T, Q, H)
        if not self.attention:
            return self.out(query_out)
        support_tokens = torch.cat([features[:, :s], labels, support_out], dim=-1)
        query_tokens = torch.cat([query_in.view(t, q, -1), query_out], dim=-1)
        scores = self.query_proj(query_tokens) @ self.key_proj(support_tokens).transpose(1, 2)
        weights = (scores / math.sqrt(self.key_dim)).softmax(-1)  # (T, Q, S)
        read = weights @ self.value_proj(support_tokens)  # (T, Q, H)
        return self.out(torch.cat([query_out, read], dim=-1))

    def meta_train_step(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        support, query = stack_tasks(tasks)
        self._check_labels(support.y)
        logits = self(support.x, support.y, query.x)
        loss = F.cross_entropy(logits.flatten(0, 1), query.y.flatten())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        accuracy = (logits.argmax(-1) == query.y).float().mean()
        return {"losses/query": float(loss.detach()), "charts/query_accuracy": float(accuracy)}

    def adapt(self, task: SupervisedTask, steps: int | None = None) -> Predictor:
        self._check_labels(task.support.y)
        support = task.support

        def predict(x: Tensor) -> Tensor:
            with torch.no_grad():
                return self(support.x[None], support.y[None], x[None])[0]

        return predict
