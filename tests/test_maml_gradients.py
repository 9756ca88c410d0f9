"""MAML's meta-gradient through higher against a hand-written torch.func version."""

import torch
from torch import nn
from torch.func import functional_call

from metagym.learners import MAML
from metagym.nets import mlp
from metagym.tasks import SinusoidTasks, make_generator


def _setup(seed=0, **kwargs):
    torch.manual_seed(seed)
    learner = MAML(mlp(1, [8, 8], 1), inner_lr=0.05, **kwargs).double()
    tasks = [t for t in SinusoidTasks(5).sample(3, "train", make_generator(seed))]
    tasks = [
        type(t)(
            type(t.support)(t.support.x.double(), t.support.y.double()),
            type(t.query)(t.query.x.double(), t.query.y.double()),
            t.params,
        )
        for t in tasks
    ]
    return learner, tasks


def _meta_grads(learner):
    return [p.grad.clone() for p in learner.model.parameters()]


def _reference(model, tasks, lr, steps, create_graph):
    """Meta-gradient by hand: SGD steps with torch.autograd.grad, then the mean query loss."""
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    total = 0.0
    for task in tasks:
        fast = dict(params)
        for _ in range(steps):
            loss = nn.functional.mse_loss(
                functional_call(model, fast, (task.support.x,)), task.support.y
            )
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
            fast = {n: w - lr * g for (n, w), g in zip(fast.items(), grads, strict=True)}
        total = total + nn.functional.mse_loss(
            functional_call(model, fast, (task.query.x,)), task.query.y
        )
    total = total / len(tasks)
    return list(torch.autograd.grad(total, [params[n] for n in names]))


def _step_grads(learner, tasks):
    lr = learner.optimizer.param_groups[0]["lr"]
    learner.optimizer.param_groups[0]["lr"] = 0.0  # keep the weights; we only want .grad
    learner.meta_train_step(tasks)
    learner.optimizer.param_groups[0]["lr"] = lr
    return _meta_grads(learner)


def test_second_order_matches_hand_computation_and_differs_from_first_order():
    for steps in (1, 3):
        learner, tasks = _setup(train_steps=steps)
        got = _step_grads(learner, tasks)
        want = _reference(learner.model, tasks, 0.05, steps, create_graph=True)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
        first = _reference(learner.model, tasks, 0.05, steps, create_graph=False)
        assert max(float((g - f).abs().max()) for g, f in zip(got, first, strict=True)) > 1e-6


def test_first_order_option_matches_first_order_reference():
    learner, tasks = _setup(train_steps=2, first_order=True)
    got = _step_grads(learner, tasks)
    model = learner.model
    # First-order MAML: gradient of the query loss at the adapted weights, steps not differentiated.
    want = [torch.zeros_like(p) for p in model.parameters()]
    for task in tasks:
        fast = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
        for _ in range(2):
            loss = nn.functional.mse_loss(
                functional_call(model, fast, (task.support.x,)), task.support.y
            )
            grads = torch.autograd.grad(loss, list(fast.values()))
            fast = {
                n: (w - 0.05 * g).detach().requires_grad_()
                for (n, w), g in zip(fast.items(), grads, strict=True)
            }
        loss = (
            nn.functional.mse_loss(functional_call(model, fast, (task.query.x,)), task.query.y) / 3
        )
        for acc, g in zip(want, torch.autograd.grad(loss, list(fast.values())), strict=True):
            acc += g
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)


def test_meta_sgd_learns_its_learning_rates():
    learner, tasks = _setup(meta_sgd=True)
    before = [lr.detach().clone() for lr in learner.learning_rates]
    learner.meta_train_step(tasks)
    assert all(lr.grad is not None for lr in learner.learning_rates)
    changed = [
        not torch.equal(b, a.detach()) for b, a in zip(before, learner.learning_rates, strict=True)
    ]
    assert all(changed)


def test_maml_refuses_batchnorm_with_running_statistics():
    import pytest

    with pytest.raises(ValueError, match="track_running_stats=False"):
        MAML(nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)))
    MAML(
        nn.Sequential(
            nn.Linear(1, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 1)
        )
    )


def test_adaptation_does_not_change_the_initial_weights_and_snapshots_match_steps():
    learner, tasks = _setup()
    before = [p.detach().clone() for p in learner.model.parameters()]
    predictors = learner.adapt_steps(tasks[0], [0, 1, 4])
    x = tasks[0].query.x
    with torch.no_grad():
        torch.testing.assert_close(predictors[0](x), learner.model(x))
    assert not torch.allclose(predictors[1](x), predictors[4](x))
    for b, p in zip(before, learner.model.parameters(), strict=True):
        assert torch.equal(b, p.detach())
    # adapt(steps=4) and adapt_steps(...)[4] agree
    torch.testing.assert_close(learner.adapt(tasks[0], 4)(x), predictors[4](x))
