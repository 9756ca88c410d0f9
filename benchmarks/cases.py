"""The benchmark cases: MAML on sinusoids and on Omniglot-sized images, a prototypical-network
episode. Each builds its paths (per-task loop, batched, and the raw-compute floor) on a device.

Omniglot cases use random 28x28 images of the right shapes (the step's cost does not depend on the
pixels), so they run without the data set; they are skipped while ``metagym.nets.conv4`` (or the
learner) does not exist.
"""

from __future__ import annotations

import copy
import importlib
import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.harness import BenchPath, Case
from metagym.learners import MAML
from metagym.learners.maml_batched import check_batchable
from metagym.nets import mlp
from metagym.tasks import SinusoidTasks, make_generator
from metagym.tasks.base import Examples, SupervisedTask

SINUSOID_META_BATCH, SINUSOID_SHOTS, SINUSOID_QUERIES = 25, 10, 10
OMNIGLOT_META_BATCH, OMNIGLOT_WAYS = 32, 5


def _seeded(build: Callable, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _cycling(batches: Sequence) -> Callable[[], object]:
    it = itertools.cycle(batches)
    return lambda: next(it)


def _maml_paths(learners: dict[str, MAML], batches: list[list[SupervisedTask]]) -> list[BenchPath]:
    paths = []
    for name, learner in learners.items():
        draw = _cycling(batches)
        kind = "loop" if learner.backend == "higher" else "batched"
        paths.append(
            BenchPath(
                name, kind, lambda learner=learner, draw=draw: learner.meta_train_step(draw())
            )
        )
    return paths


def _floor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> BenchPath:
    """One plain forward and backward pass over all the meta-batch's examples."""

    def step():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    return BenchPath("floor fwd+bwd", "floor", step)


def meta_gradient_difference(learners: dict[str, MAML], tasks: list[SupervisedTask]) -> float:
    """Largest relative difference (per tensor, norm-wise) of the meta-gradients of the learners."""
    grads = []
    for learner in learners.values():
        clone = copy.deepcopy(learner)
        clone.zero_grad(set_to_none=True)
        clone.compute_meta_gradients(tasks)
        grads.append([p.grad for p in clone.parameters()])
    reference = grads[0]
    worst = 0.0
    for other in grads[1:]:
        for a, b in zip(reference, other, strict=True):
            if a is None or b is None:
                continue
            worst = max(worst, float((a - b).norm() / a.norm().clamp_min(1e-30)))
    return worst


def sinusoid_case(
    device: torch.device,
    *,
    steps: int,
    first_order: bool = False,
    meta_sgd: bool = False,
    rounds: int = 15,
    block: int = 5,
    parity: bool = True,
) -> Case:
    label = ("meta-sgd" if meta_sgd else "maml") + ("-fo" if first_order else "")
    distribution = SinusoidTasks(SINUSOID_SHOTS, queries=SINUSOID_QUERIES)
    batches = [
        [t.to(device) for t in distribution.sample(SINUSOID_META_BATCH, "train", make_generator(i))]
        for i in range(4)
    ]
    net = _seeded(lambda: mlp(1, [40, 40], 1))

    def learner(backend: str) -> MAML:
        return MAML(
            copy.deepcopy(net),
            inner_lr=0.01,
            train_steps=steps,
            first_order=first_order,
            meta_sgd=meta_sgd,
            backend=backend,
        ).to(device)

    learners = {"higher loop": learner("higher"), "vmap batched": learner("vmap")}
    tasks = batches[0]
    x = torch.cat([torch.cat([t.support.x, t.query.x]) for t in tasks])
    y = torch.cat([torch.cat([t.support.y, t.query.y]) for t in tasks])
    return Case(
        name=f"sinusoid {label} {steps}-step",
        description=(
            f"sinusoid {label}, MLP 1-40-40-1, meta-batch {SINUSOID_META_BATCH}, K={SINUSOID_SHOTS}, "
            f"{SINUSOID_QUERIES} queries, {steps} inner step(s)"
        ),
        paths=_maml_paths(learners, batches)
        + [_floor(copy.deepcopy(net).to(device), x, y, F.mse_loss)],
        rounds=rounds,
        block=block,
        extra={"meta_grad_max_rel_diff": meta_gradient_difference(learners, tasks)}
        if parity
        else {},
    )


def _image_tasks(
    device: torch.device, n: int, ways: int, shots: int, queries: int, seed: int
) -> list[SupervisedTask]:
    """``n`` tasks of random 28x28 images with Omniglot's shapes (labels ``0..ways-1``)."""
    generator = make_generator(seed)

    def examples(per_class: int) -> Examples:
        y = torch.arange(ways).repeat_interleave(per_class)
        return Examples(torch.rand(len(y), 1, 28, 28, generator=generator), y)

    return [SupervisedTask(examples(shots), examples(queries)).to(device) for _ in range(n)]


def _without_norm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every BatchNorm2d replaced by the identity."""
    net = copy.deepcopy(net)
    for _name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, child_name, nn.Identity())
    return net


def conv4_maml_case(
    device: torch.device,
    *,
    norm: bool = True,
    rounds: int = 5,
    queries: int = 1,
    parity: bool = True,
) -> Case:
    conv4 = importlib.import_module("metagym.nets.conv4").conv4
    net = _seeded(lambda: conv4(1, 64, out_features=OMNIGLOT_WAYS, track_running_stats=False))
    if not norm:
        net = _without_norm(net)
    batches = [
        _image_tasks(device, OMNIGLOT_META_BATCH, OMNIGLOT_WAYS, 1, queries, seed)
        for seed in range(2)
    ]

    def learner(backend: str) -> MAML:
        return MAML(
            copy.deepcopy(net), F.cross_entropy, inner_lr=0.4, train_steps=1, backend=backend
        ).to(device)

    learners = {"higher loop": learner("higher")}
    skipped = {}
    try:
        check_batchable(net)
        learners["vmap batched"] = learner("vmap")
    except ValueError as error:
        skipped["vmap batched"] = str(error).split(":")[0].replace("backend='vmap' ", "")
    tasks = batches[0]
    x = torch.cat([torch.cat([t.support.x, t.query.x]) for t in tasks])
    y = torch.cat([torch.cat([t.support.y, t.query.y]) for t in tasks])
    label = "conv4" if norm else "conv4-nonorm"
    extra = {}
    if parity and len(learners) > 1:
        extra["meta_grad_max_rel_diff"] = meta_gradient_difference(learners, tasks)
    return Case(
        name=f"omniglot {label} maml",
        description=(
            f"MAML 5-way 1-shot, {queries} query per class, meta-batch {OMNIGLOT_META_BATCH}, "
            f"{label} (64 channels{', BatchNorm' if norm else ', BatchNorm removed'}), 1 inner step, "
            "second order, random 28x28 images"
        ),
        paths=_maml_paths(learners, batches)
        + [_floor(copy.deepcopy(net).to(device), x, y, F.cross_entropy)],
        rounds=rounds,
        skipped=skipped,
        extra=extra,
    )


def protonet_case(
    device: torch.device,
    *,
    rounds: int = 5,
    episodes: int = 16,
    shots: int = 1,
    queries: int = 5,
    parity: bool = True,
) -> Case:
    """``episodes`` episodes per step: one forward over all of them, or a loop over episodes."""
    conv4 = importlib.import_module("metagym.nets.conv4").conv4
    protonet = importlib.import_module("metagym.learners.protonet")
    ways = OMNIGLOT_WAYS
    embedding = _seeded(lambda: conv4(1, 64))
    batches = [_image_tasks(device, episodes, ways, shots, queries, seed) for seed in range(2)]
    batched = protonet.PrototypicalNetwork(copy.deepcopy(embedding)).to(device)
    looped = protonet.PrototypicalNetwork(copy.deepcopy(embedding)).to(device)
    draw_batched, draw_loop = _cycling(batches), _cycling(batches)

    def loop_step():
        tasks = draw_loop()
        looped.optimizer.zero_grad()
        for t in tasks:
            log_probs = looped(t.support.x[None], t.support.y[None], t.query.x[None], ways)
            (F.nll_loss(log_probs[0], t.query.y) / len(tasks)).backward()
        looped.optimizer.step()

    tasks = batches[0]
    x = torch.cat([torch.cat([t.support.x, t.query.x]) for t in tasks])
    floor_net = copy.deepcopy(embedding).to(device)
    return Case(
        name="omniglot protonet",
        description=(
            f"prototypical network, {ways}-way {shots}-shot, {queries} queries per class, "
            f"{episodes} episodes per step, conv4 (BatchNorm), random 28x28 images"
        ),
        paths=[
            BenchPath("per-task loop", "loop", loop_step),
            BenchPath("batched", "batched", lambda: batched.meta_train_step(draw_batched())),
            _floor(floor_net, x, None, lambda out, _: out.pow(2).mean()),
        ],
        rounds=rounds,
    )


def registry(quick: bool = False) -> dict[str, tuple[Callable[..., Case], tuple[str, ...]]]:
    """Case name -> (builder(device, parity=...), modules it needs). ``quick``: few rounds."""

    def r(n: int) -> int:
        return max(3, n // 5) if quick else n

    return {
        "sinusoid maml 1-step": (
            lambda d, parity=True: sinusoid_case(d, steps=1, rounds=r(15), parity=parity),
            (),
        ),
        "sinusoid maml 5-step": (
            lambda d, parity=True: sinusoid_case(d, steps=5, rounds=r(10), parity=parity),
            (),
        ),
        "sinusoid maml-fo 1-step": (
            lambda d, parity=True: sinusoid_case(
                d, steps=1, first_order=True, rounds=r(15), parity=parity
            ),
            (),
        ),
        "sinusoid meta-sgd 1-step": (
            lambda d, parity=True: sinusoid_case(
                d, steps=1, meta_sgd=True, rounds=r(15), parity=parity
            ),
            (),
        ),
        "omniglot conv4 maml": (
            lambda d, parity=True: conv4_maml_case(d, rounds=r(5), parity=parity),
            ("metagym.nets.conv4",),
        ),
        "omniglot conv4-nonorm maml": (
            lambda d, parity=True: conv4_maml_case(d, norm=False, rounds=r(5), parity=parity),
            ("metagym.nets.conv4",),
        ),
        "omniglot protonet": (
            lambda d, parity=True: protonet_case(d, rounds=r(5), parity=parity),
            ("metagym.nets.conv4", "metagym.learners.protonet"),
        ),
    }


def missing_modules(modules: Sequence[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported (a domain that does not exist yet)."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing
