"""MAML's compiled backend (backend="compiled": the whole meta-gradient as one torch.compile'd
torch.func function) against higher, in float64 to 1e-10, and what it refuses.

Each parity case compiles once (seconds on a CPU); set METAGYM_TEST_DEVICE=cuda to run them on a
GPU (benchmarks/gpu_check.sh does).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from metagym.learners import ANIL, MAML, MAMLPlusPlus, Reptile
from metagym.learners.maml_compiled import _own_code
from metagym.nets import mlp
from metagym.tasks import SinusoidTasks, make_generator
from metagym.tasks.base import Examples, SupervisedTask

DEVICE = torch.device(os.environ.get("METAGYM_TEST_DEVICE", "cpu"))


def _tasks(n=4, dtype=torch.float64):
    def cast(e: Examples) -> Examples:
        return Examples(e.x.to(DEVICE, dtype), e.y.to(DEVICE, dtype))

    tasks = SinusoidTasks(5, queries=7).sample(n, "train", make_generator(0))
    return [SupervisedTask(cast(t.support), cast(t.query)) for t in tasks]


def _net():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return mlp(1, [16, 16], 1).double().to(DEVICE)


def _meta_gradients(backend: str, **settings):
    learner = MAML(_net(), inner_lr=0.1, backend=backend, **settings)
    learner.zero_grad(set_to_none=True)
    metrics = learner.compute_meta_gradients(_tasks())
    grads = [p.grad for p in learner.parameters()]
    return grads, metrics


def _relative(grads, reference) -> float:
    scale = max(float(r.abs().max()) for r in reference)
    return max(float((g - r).abs().max()) for g, r in zip(grads, reference, strict=True)) / scale


@pytest.mark.parametrize(
    "settings",
    [
        {"train_steps": 1},
        {"train_steps": 2, "first_order": True},
        pytest.param({"train_steps": 3}, marks=pytest.mark.slow),
        pytest.param({"train_steps": 1, "meta_sgd": True}, marks=pytest.mark.slow),
    ],
    ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()),
)
def test_compiled_meta_gradients_equal_higher_float64(settings):
    reference, expected = _meta_gradients("higher", **settings)
    grads, metrics = _meta_gradients("compiled", **settings)
    assert all(g is not None for g in grads) and len(grads) == len(reference)
    assert _relative(grads, reference) < 1e-10
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-12)


def test_compiled_adaptation_at_test_time_is_the_vmap_backends():
    """Evaluation runs the vmap backend's adaptation (nothing compiled): the same predictions."""
    tasks = _tasks(3)
    compiled = MAML(_net(), inner_lr=0.1, backend="compiled")
    vmap = MAML(_net(), inner_lr=0.1, backend="vmap")
    for got, want in zip(compiled.adapt_many(tasks, [2]), vmap.adapt_many(tasks, [2]), strict=True):
        x = tasks[0].query.x
        assert torch.equal(got[2](x), want[2](x))
    assert compiled.config()["backend_used"] == "compiled"


@pytest.mark.parametrize(
    "build",
    [
        lambda: ANIL(mlp(1, [8], 8), nn.Linear(8, 1), backend="compiled"),
        lambda: MAMLPlusPlus(mlp(1, [8], 1), total_updates=10, backend="compiled"),
        lambda: Reptile(mlp(1, [8], 1), backend="compiled"),
        lambda: MAML(mlp(1, [8], 1), backend="compiled", chunk_size=2),
        lambda: MAML(nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4)), backend="compiled"),
    ],
    ids=["anil", "maml++", "reptile", "chunk_size", "running-stats"],
)
def test_compiled_backend_refuses_what_it_does_not_compute(build):
    with pytest.raises(ValueError):
        build()


def test_every_compiled_function_has_a_code_object_of_its_own():
    """torch.compile caches per code object (8 entries): a shared one would fall back to eager
    execution from the ninth learner of a process on."""

    def make(k):
        def f(x):
            return x + k

        return f

    first, second = _own_code(make(1)), _own_code(make(2))
    assert first.__code__ is not second.__code__
    assert (first(1), second(1)) == (2, 3)


def test_compiled_learner_copies_and_trains_like_vmap():
    """Deep copies (the runner's) work, and three Adam meta-updates reach vmap's weights."""
    tasks = _tasks()
    compiled = copy.deepcopy(MAML(_net(), inner_lr=0.1, backend="compiled"))
    vmap = MAML(_net(), inner_lr=0.1, backend="vmap")
    for _ in range(3):
        compiled.meta_train_step(tasks)
        vmap.meta_train_step(tasks)
    for a, b in zip(compiled.model.parameters(), vmap.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def _eager(monkeypatch, change=lambda g: g):
    """Make ``backend="compiled"`` run its function uncompiled, its gradients passed through
    ``change``: what a wrong kernel from the inductor cache would return."""

    def compile(function, **_):
        def run(params, rates, data):
            grads, rate_grads, query, support = function(params, rates, data)
            return {n: change(g) for n, g in grads.items()}, rate_grads, query, support

        return run

    monkeypatch.setattr(torch, "compile", compile)


@pytest.mark.parametrize(
    "change", [lambda g: g * (1 + 1e-6), lambda g: g * float("nan")], ids=["off", "nan"]
)
def test_a_compiled_meta_gradient_unlike_the_vmap_backends_is_refused(monkeypatch, change):
    _eager(monkeypatch, change)
    learner = MAML(_net(), inner_lr=0.1, backend="compiled")
    with pytest.raises(RuntimeError, match="TORCHINDUCTOR_CACHE_DIR"):
        learner.compute_meta_gradients(_tasks())


def test_the_check_runs_once_and_leaves_the_gradients_as_a_backward_pass_would(monkeypatch):
    _eager(monkeypatch)
    tasks = _tasks()
    learner = MAML(_net(), inner_lr=0.1, backend="compiled")
    reference = MAML(_net(), inner_lr=0.1, backend="vmap")
    reference.compute_meta_gradients(tasks)
    for p in learner.parameters():
        p.grad = torch.ones_like(p)
    calls = []
    batched = learner._meta_gradients_batched
    monkeypatch.setattr(learner, "_meta_gradients_batched", lambda t: calls.append(1) or batched(t))
    learner.compute_meta_gradients(tasks)
    for p, r in zip(learner.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, 1 + r.grad, rtol=1e-12, atol=1e-12)
    learner.compute_meta_gradients(tasks)
    assert calls == [1]
