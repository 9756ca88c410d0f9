"""The task-by-task MAML variants (MAML++, ProtoMAML) and Reptile on the loop backend give
higher's meta-gradients (float64, conv4 with BatchNorm, the one relative measure), and "auto"
resolves to a backend they can run."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from metagym.learners import MAMLPlusPlus, ProtoMAML, Reptile
from metagym.nets.conv4 import conv4
from metagym.tasks.base import Examples, SupervisedTask


def _image_tasks(n: int = 3, ways: int = 3, shots: int = 2, queries: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    tasks = []
    for _ in range(n):
        centres = torch.randn(ways, 1, 16, 16, generator=generator, dtype=torch.float64)

        def draw(per_class, centres=centres):
            y = torch.arange(ways).repeat_interleave(per_class)
            noise = torch.randn(len(y), 1, 16, 16, generator=generator, dtype=torch.float64)
            return Examples(centres[y] + 0.5 * noise, y)

        tasks.append(SupervisedTask(draw(shots), draw(queries)))
    return tasks


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return conv4(1, 4, out_features=3, track_running_stats=False, image_size=(16, 16)).double()


def _relative_difference(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    diff = max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))
    return diff / max(float(w.abs().max()) for w in want)


def _maml_plus_plus(backend: str, first_order_fraction: float) -> MAMLPlusPlus:
    return MAMLPlusPlus(
        _net(),
        F.cross_entropy,
        total_updates=10,
        inner_lr=0.1,
        train_steps=3,
        first_order_fraction=first_order_fraction,
        backend=backend,
    )


def _builders():
    return {
        "maml++ second order": lambda backend: _maml_plus_plus(backend, 0.0),
        "maml++ first order": lambda backend: _maml_plus_plus(backend, 1.0),
        "protomaml first order": lambda backend: ProtoMAML(
            _net(), inner_lr=0.1, train_steps=2, backend=backend
        ),
        "protomaml second order": lambda backend: ProtoMAML(
            _net(), inner_lr=0.1, train_steps=2, first_order=False, backend=backend
        ),
        "reptile": lambda backend: Reptile(
            _net(), F.cross_entropy, inner_lr=0.1, train_steps=3, backend=backend
        ),
    }


@pytest.mark.parametrize("name", sorted(_builders()))
def test_loop_backend_gives_highers_meta_gradients(name):
    build = _builders()[name]
    reference, loop = build("higher"), build("loop")
    loop.load_state_dict(copy.deepcopy(reference.state_dict()))
    tasks = _image_tasks()
    want = reference.compute_meta_gradients(tasks)
    got = loop.compute_meta_gradients(tasks)
    pairs = [
        (p.grad, q.grad)
        for p, q in zip(reference.parameters(), loop.parameters(), strict=True)
        if p.grad is not None or q.grad is not None
    ]
    # Every weight of the body (ProtoMAML never uses the net's own head) gets a meta-gradient.
    assert len(pairs) >= len(list(reference.model[:-1].parameters()))
    assert all(w is not None and g is not None for w, g in pairs)
    assert _relative_difference([g for _, g in pairs], [w for w, _ in pairs]) <= 1e-10
    assert got == pytest.approx(want, rel=1e-10)


def test_task_by_task_learners_resolve_auto_to_a_backend_they_run():
    assert MAMLPlusPlus(_net(), F.cross_entropy, total_updates=5).backend == "loop"
    assert ProtoMAML(_net()).backend == "loop"
    mlp = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
    assert MAMLPlusPlus(mlp, total_updates=5).backend == "higher"  # never vmap
    with pytest.raises(ValueError, match="task by task, not on backend='vmap'"):
        MAMLPlusPlus(_net(), total_updates=5, backend="vmap")
    with pytest.raises(ValueError, match="backend='higher', 'loop' or 'auto'"):
        ProtoMAML(_net(), backend="vmap")
