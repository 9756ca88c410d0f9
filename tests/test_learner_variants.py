"""The update rules of Reptile, ANIL, ProtoMAML, MAML++ and the transformer learners, against hand
computations on tiny nets (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from metagym.learners import (
    ANIL,
    MAML,
    MAMLPlusPlus,
    ProtoMAML,
    Reptile,
    TransformerClassifier,
    TransformerRegressor,
)
from metagym.learners.maml import adapted_model, sgd_per_parameter
from metagym.learners.maml_plus_plus import cosine_rate, msl_weights
from metagym.learners.protonet import prototype_log_probs
from metagym.nets.in_context import InContextTransformer
from metagym.tasks.base import Examples, SupervisedTask


def _task(seed: int, support: int = 4, query: int = 3, x_dim: int = 2) -> SupervisedTask:
    g = torch.Generator().manual_seed(seed)

    def examples(n):
        return Examples(
            torch.randn(n, x_dim, generator=g, dtype=torch.float64),
            torch.randn(n, 1, generator=g, dtype=torch.float64),
        )

    return SupervisedTask(examples(support), examples(query))


def _linear(seed: int = 0, x_dim: int = 2) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(x_dim, 1).double()


def _mse_grad(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """Gradients of mean((x w^T + b - y)^2) by hand: (2/n) x^T r and (2/n) sum r."""
    r = x @ w.T + b - y  # (n, 1)
    n = x.shape[0]
    return 2.0 / n * r.T @ x, 2.0 / n * r.sum(0)


@pytest.mark.parametrize("backend", ["higher", "vmap"])
def test_reptile_outer_step_moves_towards_the_mean_adapted_weights(backend):
    model = _linear()
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    tasks = [_task(1), _task(2)]
    lr, steps, outer = 0.1, 2, 0.5
    learner = Reptile(model, inner_lr=lr, train_steps=steps, outer_lr=outer, backend=backend)
    learner.meta_train_step(tasks)
    adapted = []
    for task in tasks:  # SGD on support and query together, by hand
        x = torch.cat([task.support.x, task.query.x])
        y = torch.cat([task.support.y, task.query.y])
        w, b = w0.clone(), b0.clone()
        for _ in range(steps):
            gw, gb = _mse_grad(w, b, x, y)
            w, b = w - lr * gw, b - lr * gb
        adapted.append((w, b))
    mean_w = sum(w for w, _ in adapted) / 2
    mean_b = sum(b for _, b in adapted) / 2
    torch.testing.assert_close(model.weight.detach(), w0 + outer * (mean_w - w0))
    torch.testing.assert_close(model.bias.detach(), b0 + outer * (mean_b - b0))


def _labelled_task(seed: int, ways: int = 3, shots: int = 1, queries: int = 3) -> SupervisedTask:
    g = torch.Generator().manual_seed(seed)

    def examples(per_class):
        y = torch.arange(ways).repeat(per_class)[torch.randperm(ways * per_class, generator=g)]
        return Examples(torch.randn(len(y), 2, generator=g, dtype=torch.float64), y)

    return SupervisedTask(examples(shots), examples(queries))


@pytest.mark.parametrize("backend", ["higher", "vmap"])
def test_reptile_inner_steps_take_class_balanced_minibatches_in_turn(backend):
    torch.manual_seed(0)
    model = nn.Linear(2, 3).double()
    theta = [p.detach().clone() for p in model.parameters()]
    tasks = [_labelled_task(1), _labelled_task(2)]
    lr, steps, batches = 0.5, 3, 2
    learner = Reptile(
        model,
        F.cross_entropy,
        inner_lr=lr,
        train_steps=steps,
        train_batches=batches,
        outer_lr=1.0,
        backend=backend,
    )
    learner.meta_train_step(tasks)
    adapted = []
    for task in tasks:
        x = torch.cat([task.support.x, task.query.x])
        y = torch.cat([task.support.y, task.query.y])
        order = torch.argsort(y, stable=True)
        x, y = x[order], y[order]
        seen = []
        w, b = (t.clone().requires_grad_() for t in theta)
        for step in range(steps):  # minibatches 0, 1, 0: every other example by label
            j = step % batches
            xb, yb = x[j::batches], y[j::batches]
            seen.append(torch.bincount(yb, minlength=3).tolist())
            gw, gb = torch.autograd.grad(F.cross_entropy(xb @ w.T + b, yb), [w, b])
            w, b = (w - lr * gw).detach().requires_grad_(), (b - lr * gb).detach().requires_grad_()
        assert seen == [[2, 2, 2], [2, 2, 2], [2, 2, 2]]
        adapted.append((w.detach(), b.detach()))
    torch.testing.assert_close(model.weight.detach(), sum(w for w, _ in adapted) / 2)
    torch.testing.assert_close(model.bias.detach(), sum(b for _, b in adapted) / 2)
    full = Reptile(nn.Linear(2, 3).double(), F.cross_entropy, inner_lr=lr, train_steps=steps)
    full.model.load_state_dict(dict(zip(["weight", "bias"], theta, strict=True)))
    full.meta_train_step(tasks)  # one minibatch of all examples: a different update
    assert not torch.allclose(full.model.weight, model.weight)


def test_reptile_outer_step_size_anneals_linearly_to_zero():
    learner = Reptile(_linear(), inner_lr=0.1, train_steps=1, outer_lr=1.0, total_updates=4)
    rates = []
    for _ in range(5):
        learner.meta_train_step([_task(3)])
        rates.append(learner.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    before = [p.detach().clone() for p in learner.model.parameters()]
    learner.meta_train_step([_task(4)])  # past the horizon: the step size stays 0
    for p, q in zip(learner.model.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), q)


def _anil(first_order: bool, backend: str = "higher") -> ANIL:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(2, 3), nn.Tanh()).double()
    head = nn.Linear(3, 1).double()
    return ANIL(body, head, inner_lr=0.3, train_steps=1, first_order=first_order, backend=backend)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("backend", ["higher", "vmap"])
def test_anil_meta_gradient_equals_the_hand_computation(first_order, backend):
    learner = _anil(first_order, backend)
    task = _task(5)
    body, head = learner.body, learner.model
    learner.compute_meta_gradients([task])
    got = [p.grad.clone() for p in (*body.parameters(), *head.parameters())]
    # Reference: the body's features, one SGD step of the head, the query loss at the fast head.
    params = [p.detach().clone().requires_grad_() for p in (*body.parameters(), *head.parameters())]
    w1, b1, w, b = params

    def features(x):
        return torch.tanh(x @ w1.T + b1)

    support = features(task.support.x)
    loss = F.mse_loss(support @ w.T + b, task.support.y)
    gw, gb = torch.autograd.grad(loss, (w, b), create_graph=not first_order)
    fast_w, fast_b = w - 0.3 * gw, b - 0.3 * gb
    query = F.mse_loss(features(task.query.x) @ fast_w.T + fast_b, task.query.y)
    if first_order:  # the fast head's gradient goes to the initial head; the body sees the query
        grads = list(torch.autograd.grad(query, (w1, b1, fast_w, fast_b)))
    else:
        grads = list(torch.autograd.grad(query, params))
    for g, r in zip(got, grads, strict=True):
        torch.testing.assert_close(g, r)


def test_anil_adapts_the_head_and_keeps_the_body():
    learner = _anil(first_order=False)
    body_before = [p.detach().clone() for p in learner.body.parameters()]
    task = _task(6)
    predict = learner.adapt(task, steps=3)
    zero = learner.adapt(task, steps=0)
    assert not torch.allclose(predict(task.query.x), zero(task.query.x))
    for p, q in zip(learner.body.parameters(), body_before, strict=True):
        assert torch.equal(p, q)
    # Adapting only the head: prediction = fast head on the original body's features.
    features = learner.body(task.query.x)
    with adapted_model(
        learner.model,
        learner.inner_optimizer,
        lambda m: F.mse_loss(m(learner.body(task.support.x)), task.support.y),
        steps=3,
        meta_grad=False,
        snapshots=[3],
    ) as run:
        expected = run.model(features, params=run.snapshots[3])
    torch.testing.assert_close(predict(task.query.x), expected)


def _images_task(ways: int = 3, shots: int = 2, seed: int = 0) -> SupervisedTask:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(ways).repeat_interleave(shots)
    x = torch.randn(ways * shots, 4, generator=g, dtype=torch.float64)
    return SupervisedTask(Examples(x, labels), Examples(x[:ways], torch.arange(ways)))


def _protomaml(first_order: bool = True) -> ProtoMAML:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    return ProtoMAML(net, inner_lr=0.1, train_steps=1, eval_steps=1, first_order=first_order)


def test_protomaml_head_starts_from_the_prototypes():
    learner = _protomaml()
    task = _images_task()
    body = learner.model[:-1]
    initial = learner.initial_weights(task, meta_grad=False)
    features = body(task.support.x)
    centres = torch.stack([features[task.support.y == k].mean(0) for k in range(3)])
    torch.testing.assert_close(initial[-2], 2 * centres)
    torch.testing.assert_close(initial[-1], -(centres**2).sum(-1))
    # Before any step its class probabilities are the prototypical network's.
    logits = learner.adapt(task, steps=0)(task.query.x)
    reference = prototype_log_probs(
        features[None], task.support.y[None], body(task.query.x)[None], 3
    )[0]
    torch.testing.assert_close(logits.log_softmax(-1), reference)


@pytest.mark.parametrize("first_order", [True, False])
def test_protomaml_meta_gradient_flows_through_the_prototypes(first_order):
    learner = _protomaml(first_order)
    task = _images_task(seed=1)
    learner.compute_meta_gradients([task])
    got = [p.grad.clone() for p in learner.model[:-1].parameters()]
    assert learner.model[-1].weight.grad is None  # the net's own head is never used
    # Reference with autograd: head from prototypes of the body's features, one SGD step.
    w1, b1 = (p.detach().clone().requires_grad_() for p in learner.model[0].parameters())

    def features(x, w, b):
        return torch.relu(x @ w.T + b)

    f = features(task.support.x, w1, b1)
    centres = torch.stack([f[task.support.y == k].mean(0) for k in range(3)])
    head_w, head_b = 2 * centres, -(centres**2).sum(-1)
    fast = [w1.clone(), b1.clone(), head_w, head_b]  # the fast weights: nodes of their own
    loss = F.cross_entropy(
        features(task.support.x, fast[0], fast[1]) @ head_w.T + head_b, task.support.y
    )
    grads = torch.autograd.grad(loss, fast, create_graph=not first_order)
    if first_order:
        grads = [g.detach() for g in grads]
    w1f, b1f, hwf, hbf = (p - 0.1 * g for p, g in zip(fast, grads, strict=True))
    query = F.cross_entropy(features(task.query.x, w1f, b1f) @ hwf.T + hbf, task.query.y)
    reference = torch.autograd.grad(query, (w1, b1))
    for g, r in zip(got, reference, strict=True):
        torch.testing.assert_close(g, r)


def test_per_step_learning_rates_take_each_step_with_its_own_rate():
    model = _linear()
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    task = _task(7)
    rates = [
        [torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)],
        [torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.05, dtype=torch.float64)],
    ]
    w, b = w0.clone(), b0.clone()
    for step in range(3):  # the third step takes the last step's rates
        gw, gb = _mse_grad(w, b, task.support.x, task.support.y)
        rw, rb = rates[min(step, 1)]
        w, b = w - rw * gw, b - rb * gb
    for backend in ("higher", "vmap"):
        with adapted_model(
            model,
            sgd_per_parameter(model, 0.01),
            lambda m: F.mse_loss(m(task.support.x), task.support.y),
            steps=3,
            step_learning_rates=rates,
            meta_grad=False,
            snapshots=[3],
            backend=backend,
        ) as run:
            fast_w, fast_b = run.snapshots[3]
        torch.testing.assert_close(fast_w, w)
        torch.testing.assert_close(fast_b, b)


def test_lslr_rates_get_meta_gradients_and_equal_the_hand_derivative():
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()
    learner = MAMLPlusPlus(
        model,
        total_updates=10,
        inner_lr=0.1,
        train_steps=1,
        multi_step_loss=0.0,
        first_order_fraction=0.0,
        cosine=False,
    )
    task = _task(8)
    learner.compute_meta_gradients([task])
    w, b = (p.detach() for p in model.parameters())
    gw, gb = _mse_grad(w, b, task.support.x, task.support.y)
    rw = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    rb = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    query = F.mse_loss(task.query.x @ (w - rw * gw).T + (b - rb * gb), task.query.y)
    expected = torch.autograd.grad(query, (rw, rb))
    got = [r.grad for r in learner.step_rates]
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])


def test_multi_step_loss_weights_sum_to_one_and_anneal_to_the_last_step():
    assert msl_weights(4, 0, 100) == pytest.approx([0.25] * 4)
    for updates in (0, 10, 50, 99):
        weights = msl_weights(4, updates, 100)
        assert sum(weights) == pytest.approx(1.0)
        assert weights[-1] >= weights[0] >= 0.03 / 4
    assert msl_weights(4, 99, 100)[0] == pytest.approx(0.03 / 4)
    assert msl_weights(4, 100, 100) is None


def test_maml_plus_plus_multi_step_loss_is_the_weighted_sum_of_step_losses():
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()
    learner = MAMLPlusPlus(
        model,
        total_updates=10,
        inner_lr=0.1,
        train_steps=2,
        lslr=False,
        multi_step_loss=1.0,
        first_order_fraction=0.0,
        cosine=False,
    )
    task = _task(9)
    weights = learner.query_step_weights()
    learner.compute_meta_gradients([task])
    got = [p.grad.clone() for p in model.parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    w, b = params
    total = 0.0
    for step in range(2):
        loss = F.mse_loss(task.support.x @ w.T + b, task.support.y)
        gw, gb = torch.autograd.grad(loss, (w, b), create_graph=True)
        w, b = w - 0.1 * gw, b - 0.1 * gb
        total = total + weights[step] * F.mse_loss(task.query.x @ w.T + b, task.query.y)
    for g, r in zip(got, torch.autograd.grad(total, params), strict=True):
        torch.testing.assert_close(g, r)


def test_maml_plus_plus_anneals_derivative_order_and_meta_step_size():
    learner = MAMLPlusPlus(_linear(), total_updates=10, inner_lr=0.1, train_steps=1, meta_lr=1e-3)
    orders, rates = [], []
    for _ in range(10):
        orders.append(learner.first_order_now())
        learner.meta_train_step([_task(10)])
        rates.append(learner.optimizer.param_groups[0]["lr"])
    assert orders == [True] * 3 + [False] * 7
    assert rates[0] == pytest.approx(1e-3)
    assert rates == sorted(rates, reverse=True)
    assert cosine_rate(1e-3, 1e-5, 10, 10) == pytest.approx(1e-5)
    assert cosine_rate(1.0, 0.0, 5, 10) == pytest.approx(0.5)


def test_maml_plus_plus_with_every_option_off_is_maml():
    torch.manual_seed(0)
    plain = MAML(nn.Linear(2, 1).double(), inner_lr=0.1, train_steps=2)
    torch.manual_seed(0)
    variant = MAMLPlusPlus(
        nn.Linear(2, 1).double(),
        total_updates=5,
        inner_lr=0.1,
        train_steps=2,
        lslr=False,
        multi_step_loss=0.0,
        first_order_fraction=0.0,
        cosine=False,
    )
    tasks = [_task(11), _task(12)]
    plain.compute_meta_gradients(tasks)
    variant.compute_meta_gradients(tasks)
    for p, q in zip(plain.model.parameters(), variant.model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)


def test_in_context_transformer_queries_see_the_support_set_not_each_other():
    torch.manual_seed(0)
    net = InContextTransformer(3, 16, heads=2, layers=2).double()
    g = torch.Generator().manual_seed(0)
    support = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    query = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    out = net(support, query)
    changed = query.clone()
    changed[:, 1:] += 1.0  # other queries change: query 0's output does not
    torch.testing.assert_close(net(support, changed)[:, 0], out[:, 0])
    alone = net(support, query[:, :1])
    torch.testing.assert_close(alone[:, 0], out[:, 0])
    shuffled = net(support[:, torch.randperm(5, generator=g)], query)  # a set: order-free
    torch.testing.assert_close(shuffled, out)
    other = support.clone()
    other[:, 0] += 1.0  # the support set does matter
    assert not torch.allclose(net(other, query), out)


def test_transformer_learners_output_shapes_and_configs():
    regressor = TransformerRegressor(1, 1, d_model=16, heads=2, layers=1)
    assert regressor(torch.zeros(3, 5, 1), torch.zeros(3, 5, 1), torch.zeros(3, 7, 1)).shape == (
        3,
        7,
        1,
    )
    assert regressor.config()["d_model"] == 16
    embedding = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
    classifier = TransformerClassifier(embedding, 8, 4, d_model=16, heads=2, layers=1)
    support_y = torch.arange(4).repeat(2)[None]
    logits = classifier(torch.zeros(1, 8, 1, 4, 4), support_y, torch.zeros(1, 3, 1, 4, 4))
    assert logits.shape == (1, 3, 4)
    with pytest.raises(ValueError, match="multiple of heads"):
        TransformerRegressor(d_model=10, heads=4)


def test_variants_refuse_what_they_cannot_do():
    with pytest.raises(ValueError, match="last layer is nn.Linear"):
        ProtoMAML(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    with pytest.raises(ValueError, match="backend='higher'"):
        ProtoMAML(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 3)), backend="vmap")
    with pytest.raises(ValueError, match="total_updates"):
        MAMLPlusPlus(_linear(), total_updates=0)
    with pytest.raises(ValueError, match="train_steps >= 1"):
        Reptile(_linear(), train_steps=0)
    with pytest.raises(ValueError, match="train_batches"):
        Reptile(_linear(), train_batches=0)
    with pytest.raises(ValueError, match="meta_sgd"):
        ANIL(nn.Linear(2, 2), nn.Linear(2, 1), meta_sgd=True)
    assert math.isfinite(cosine_rate(1.0, 0.5, 100, 10))
