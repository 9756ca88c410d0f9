"""Soft nearest neighbour (the simplest non-parametric few-shot learner) and the episodic base
class shared with prototypical and matching networks.

A query is classified by a softmax over its similarities to every support example; the
probabilities are summed per label (Salakhutdinov & Hinton 2007's soft neighbours, as a few-shot
head). Adaptation is a forward pass: embed the support set once, then classify queries.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metagym.learners.base import Learner, Predictor, check_positive
from metagym.nets.layout import cpu_layout
from metagym.tasks.base import SupervisedTask, stack_tasks

#: Probabilities below this are clamped before the log (a class with no support mass).
_TINY = 1e-12


def task_ways(labels: Tensor) -> int:
    """Number of classes of a task whose labels are ``0..N-1``."""
    return int(labels.max()) + 1


def squared_distances(query: Tensor, support: Tensor) -> Tensor:
    """``||q - s||^2`` for queries ``(T, Q, D)`` and points ``(T, S, D)`` -> ``(T, Q, S)``."""
    diff = query.unsqueeze(2) - support.unsqueeze(1)
    return diff.pow(2).sum(-1)


def cosine_similarities(query: Tensor, support: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine similarity of queries ``(T, Q, D)`` and points ``(T, S, D)`` -> ``(T, Q, S)``."""
    q = query / query.norm(dim=-1, keepdim=True).clamp_min(eps)
    s = support / support.norm(dim=-1, keepdim=True).clamp_min(eps)
    return q @ s.transpose(1, 2)


def soft_neighbour_log_probs(similarity: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """Log class probabilities from similarities ``(T, Q, S)`` to support examples of labels
    ``(T, S)``: ``p(y=c|q) = sum_{i: y_i=c} softmax_i(similarity)`` -> ``(T, Q, ways)``."""
    attention = similarity.softmax(dim=-1)
    one_hot = F.one_hot(support_y, ways).to(attention.dtype)  # (T, S, N)
    return (attention @ one_hot).clamp_min(_TINY).log()


class EpisodicLearner(Learner):
    """An embedding network and a few-shot head, trained on episodes by cross-entropy.

    Subclasses implement :meth:`head`. ``forward(support_x, support_y, query_x, ways)`` works on
    stacked tasks: ``(T, S, *image)``, ``(T, S)``, ``(T, Q, *image)`` -> log-probabilities
    ``(T, Q, ways)``.

    Args:
        embedding: maps images ``(n, *image)`` to features ``(n, D)``.
        meta_lr: Adam step size.
        lr_halving: halve the step size every this many meta-updates (0: never), as
            Prototypical Networks do every 2,000 episodes.
    """

    uses_steps = False

    def __init__(self, embedding: nn.Module, *, meta_lr: float = 1e-3, lr_halving: int = 0):
        super().__init__()
        check_positive("meta_lr", meta_lr)
        if not isinstance(lr_halving, int) or lr_halving < 0:
            raise ValueError(f"lr_halving must be an int >= 0, got {lr_halving!r}")
        self.embedding = embedding
        self.meta_lr = meta_lr
        self.lr_halving = lr_halving
        self.updates = 0

    def _make_optimizer(self) -> None:
        """Call at the end of a subclass's ``__init__``, once every parameter exists."""
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.meta_lr)

    def config(self) -> dict:
        return {"name": self.name, "meta_lr": self.meta_lr, "lr_halving": self.lr_halving}

    def embed(self, x: Tensor) -> Tensor:
        """Images ``(T, n, *image)`` -> features ``(T, n, D)``, one batch through the net
        (channels-last on the CPU: :mod:`metagym.nets.layout`)."""
        return self.embedding(cpu_layout(x.flatten(0, 1))).view(x.shape[0], x.shape[1], -1)

    @abstractmethod
    def head(self, support: Tensor, support_y: Tensor, query: Tensor, ways: int) -> Tensor:
        """Features ``(T, S, D)``, labels ``(T, S)``, queries ``(T, Q, D)`` -> log-probs ``(T, Q, ways)``."""

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        features = self.embed(torch.cat([support_x, query_x], dim=1))
        n_support = support_x.shape[1]
        return self.head(features[:, :n_support], support_y, features[:, n_support:], ways)

    def meta_train_step(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        support, query = stack_tasks(tasks)
        ways = task_ways(support.y)
        log_probs = self(support.x, support.y, query.x, ways)
        loss = F.nll_loss(log_probs.flatten(0, 1), query.y.flatten())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        if self.lr_halving and self.updates % self.lr_halving == 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.5
        accuracy = (log_probs.argmax(-1) == query.y).float().mean()
        return {"losses/query": float(loss.detach()), "charts/query_accuracy": float(accuracy)}

    def adapt(self, task: SupervisedTask, steps: int | None = None) -> Predictor:
        ways = task_ways(task.support.y)
        with torch.no_grad():
            support = self.embed(task.support.x[None])
        support_y = task.support.y[None]

        def predict(x: Tensor) -> Tensor:
            with torch.no_grad():
                return self.head(support, support_y, self.embed(x[None]), ways)[0]

        return predict

    # ``updates`` drives the step-size schedule: keep it in checkpoints.
    def checkpoint_state(self) -> dict:
        return {**super().checkpoint_state(), "updates": self.updates}

    def load_checkpoint_state(self, state: dict) -> None:
        super().load_checkpoint_state(state)
        self.updates = int(state.get("updates", 0))


class SoftNearestNeighbour(EpisodicLearner):
    """Soft nearest neighbour over one embedding: ``similarity = -||f(q) - f(x_i)||^2``."""

    name = "soft-nn"

    def __init__(self, embedding: nn.Module, *, meta_lr: float = 1e-3, lr_halving: int = 0):
        super().__init__(embedding, meta_lr=meta_lr, lr_halving=lr_halving)
        self._make_optimizer()

    def head(self, support: Tensor, support_y: Tensor, query: Tensor, ways: int) -> Tensor:
        return soft_neighbour_log_probs(-squared_distances(query, support), support_y, ways)
