"""Few-shot heads against hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from metagym.learners.blackbox_classifier import BlackBoxClassifier
from metagym.learners.matching import FullContextEmbedding, MatchingNetwork, matching_log_probs
from metagym.learners.protonet import prototype_log_probs, prototypes
from metagym.learners.soft_nn import (
    cosine_similarities,
    soft_neighbour_log_probs,
    squared_distances,
)

# One task, 2 ways, 2 shots, 2-d features; support labels 0, 1, 0, 1.
SUPPORT = torch.tensor([[[0.0, 0.0], [4.0, 0.0], [2.0, 2.0], [4.0, 2.0]]])
LABELS = torch.tensor([[0, 1, 0, 1]])
QUERY = torch.tensor([[[1.0, 1.0], [4.0, 1.0]]])


def test_prototypes_are_class_means():
    assert prototypes(SUPPORT, LABELS, 2).tolist() == [[[1.0, 1.0], [4.0, 1.0]]]


def test_prototype_log_probs_by_hand():
    # query (1,1): distances to prototypes (1,1) and (4,1) are 0 and 9; query (4,1): 9 and 0.
    expected = torch.log_softmax(torch.tensor([[0.0, -9.0], [-9.0, 0.0]]), dim=-1)
    assert torch.allclose(prototype_log_probs(SUPPORT, LABELS, QUERY, 2)[0], expected)


def test_soft_neighbour_sums_probabilities_per_label():
    # query (1,1): squared distances 2, 10, 2, 10 -> weights e^-2, e^-10, e^-2, e^-10.
    a, b = math.exp(-2), math.exp(-10)
    p0 = 2 * a / (2 * a + 2 * b)
    out = soft_neighbour_log_probs(-squared_distances(QUERY, SUPPORT), LABELS, 2)
    assert out.shape == (1, 2, 2)
    assert out[0, 0].exp().tolist() == pytest.approx([p0, 1 - p0])
    # query (4,1): squared distances 17, 1, 5, 1.
    w = torch.tensor([math.exp(-17), math.exp(-1), math.exp(-5), math.exp(-1)])
    w = w / w.sum()
    assert out[0, 1].exp().tolist() == pytest.approx([float(w[0] + w[2]), float(w[1] + w[3])])


def test_cosine_attention_by_hand():
    support = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    query = torch.tensor([[[3.0, 3.0]]])
    assert cosine_similarities(query, support)[0, 0].tolist() == pytest.approx([2**-0.5] * 2)
    labels = torch.tensor([[1, 0]])
    query = torch.tensor([[[1.0, 0.0]]])  # cosines 1 (label 1) and 0 (label 0), scale 2
    p1 = math.exp(2) / (math.exp(2) + 1)
    out = matching_log_probs(support, labels, query, 2, scale=2.0)[0, 0].exp()
    assert out.tolist() == pytest.approx([1 - p1, p1])


def test_full_context_embedding_shapes_and_independent_queries():
    torch.manual_seed(0)
    fce = FullContextEmbedding(4, read_steps=3)
    support, query = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    g = fce.embed_support(support)
    f = fce.embed_query(query, g)
    assert g.shape == (2, 5, 4) and f.shape == (2, 3, 4)
    changed = query.clone()
    changed[:, 0] += 1.0
    assert torch.allclose(fce.embed_query(changed, g)[:, 1:], f[:, 1:])  # queries do not interact
    net = MatchingNetwork(torch.nn.Flatten(), 4, fce=True)
    log_probs = net.head(support, torch.tensor([[0, 1, 2, 0, 1]] * 2), query, 3)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 3))


def test_blackbox_queries_do_not_see_each_other():
    torch.manual_seed(0)
    net = BlackBoxClassifier(torch.nn.Flatten(), 4, 3, hidden=8)
    support_x, support_y = torch.randn(1, 3, 1, 2, 2), torch.tensor([[2, 0, 1]])
    query_x = torch.randn(1, 2, 1, 2, 2)
    out = net(support_x, support_y, query_x)
    changed = query_x.clone()
    changed[0, 1] += 1.0
    assert out.shape == (1, 2, 3)
    assert torch.allclose(net(support_x, support_y, changed)[0, 0], out[0, 0])
    with pytest.raises(ValueError, match="3-way"):
        net._check_labels(torch.tensor([3]))
