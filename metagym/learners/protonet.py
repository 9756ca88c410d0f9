"""Prototypical networks (Snell et al. 2017).

Each class is represented by its prototype, the mean embedding of its support examples; a query
gets ``softmax_c(-||f(q) - p_c||^2)``. Training may use more ways than testing (the paper trains
5-way tasks with 60-way episodes): give the learner a ``train-<W>way`` split.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from metagym.learners.soft_nn import EpisodicLearner, squared_distances


def prototypes(support: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """Class means of features ``(T, S, D)`` with labels ``(T, S)`` -> ``(T, ways, D)``."""
    one_hot = F.one_hot(support_y, ways).to(support.dtype)  # (T, S, N)
    counts = one_hot.sum(1).clamp_min(1.0).unsqueeze(-1)  # (T, N, 1)
    return one_hot.transpose(1, 2) @ support / counts


def prototype_log_probs(support: Tensor, support_y: Tensor, query: Tensor, ways: int) -> Tensor:
    """``log softmax_c(-||q - p_c||^2)`` for queries ``(T, Q, D)`` -> ``(T, Q, ways)``."""
    return (-squared_distances(query, prototypes(support, support_y, ways))).log_softmax(-1)


class PrototypicalNetwork(EpisodicLearner):
    """Prototypical network over ``embedding`` (conv4 in the paper).

    Args:
        embedding: images ``(n, *image)`` -> features ``(n, D)``.
        meta_lr: Adam step size (1e-3 in the paper).
        lr_halving: halve the step size every this many episodes (2,000 in the paper; 0: never).
    """

    name = "protonet"

    def __init__(self, embedding: nn.Module, *, meta_lr: float = 1e-3, lr_halving: int = 0):
        super().__init__(embedding, meta_lr=meta_lr, lr_halving=lr_halving)
        self._make_optimizer()

    def head(self, support: Tensor, support_y: Tensor, query: Tensor, ways: int) -> Tensor:
        return prototype_log_probs(support, support_y, query, ways)
