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
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.floors import pass_floor
from benchmarks.harness import BenchPath, Case
from benchmarks.peers import Workload, max_relative_difference, peer_factories
from metagym.learners import MAML
from metagym.learners.maml import choose_backend
from metagym.learners.maml_batched import check_batchable
from metagym.nets import mlp
from metagym.nets.layout import cpu_layout
from metagym.tasks import SinusoidTasks, make_generator
from metagym.tasks.base import Examples, SupervisedTask

SINUSOID_META_BATCH, SINUSOID_SHOTS, SINUSOID_QUERIES = 25, 10, 10
OMNIGLOT_META_BATCH, OMNIGLOT_WAYS, OMNIGLOT_QUERIES = 32, 5, 5


def _seeded(build: Callable, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _cycling(batches: Sequence) -> Callable[[], object]:
    it = itertools.cycle(batches)
    return lambda: next(it)


#: A path whose float64 meta-gradient differs from higher's by more than this (the one relative
#: measure) is marked wrong and not timed. Right paths differ by 1e-16..1e-8 (parallel-metalearn
#: keeps its step size as a float32 tensor); torch's BatchNorm under ``torch.func.grad`` inside
#: ``vmap`` is off by about 2e-2.
GRADIENT_TOLERANCE = 1e-6
#: Tasks of the float64 meta-gradient check.
CHECK_TASKS = 3


def _metagym_learner(net: nn.Module, workload: Workload, backend: str, **kwargs) -> MAML:
    return MAML(
        copy.deepcopy(net),
        workload.loss_fn(),
        inner_lr=workload.inner_lr,
        train_steps=workload.steps,
        first_order=workload.first_order,
        meta_lr=workload.meta_lr,
        backend=backend,
        **kwargs,
    )


def _float64(task: SupervisedTask) -> SupervisedTask:
    def cast(e: Examples) -> Examples:
        return Examples(e.x.double(), e.y.double() if e.y.is_floating_point() else e.y)

    return SupervisedTask(cast(task.support), cast(task.query))


def _training_path(
    name: str, kind: str, runner, batches: list, compile_s: dict[str, float]
) -> BenchPath:
    """A path stepping ``runner`` (a metagym learner or a peer) through ``batches`` in turn; a
    compiled learner takes its first step, the compilation, here, timed into ``compile_s``."""
    step = runner.meta_train_step if isinstance(runner, MAML) else runner.step
    if isinstance(runner, MAML) and runner.backend == "compiled":
        start = time.perf_counter()
        step(batches[0])
        compile_s[name] = time.perf_counter() - start
    draw = _cycling(batches)
    return BenchPath(name, kind, lambda: step(draw()))


def _meta_gradient_paths(
    net: nn.Module,
    workload: Workload,
    batches: list[list[SupervisedTask]],
    device: torch.device,
    *,
    peers: bool,
    parity: bool,
    chunks: Sequence[int] = (),
    compiled: bool = False,
) -> tuple[list[BenchPath], dict[str, str], dict]:
    """metagym's three backends (and ``chunks`` variants of vmap; with ``compiled``, the
    compiled backend, whose first step, the compilation, is timed apart as ``compile_s``), then
    the peers; every path's
    float64 meta-gradient is first compared with metagym's higher loop on ``CHECK_TASKS`` tasks
    (when ``parity``) and a wrong one is listed in the skipped paths instead of timed.

    Returns the paths, the skipped ones (name -> reason) and extra fields: ``auto_path`` (the
    metagym path ``backend="auto"`` runs here) and ``meta_grad_rel_diff`` (path -> difference).
    """
    builders: dict[str, tuple[str, Callable[[nn.Module], object]]] = {
        "metagym higher": ("loop", lambda n: _metagym_learner(n, workload, "higher")),
        "metagym loop": ("loop", lambda n: _metagym_learner(n, workload, "loop")),
    }
    skipped: dict[str, str] = {}
    try:
        check_batchable(net)
        builders["metagym vmap"] = ("batched", lambda n: _metagym_learner(n, workload, "vmap"))
        if compiled:
            builders["metagym compiled"] = (
                "batched",
                lambda n: _metagym_learner(n, workload, "compiled"),
            )
        for size in chunks:
            builders[f"metagym vmap chunk {size}"] = (
                "batched",
                lambda n, size=size: _metagym_learner(n, workload, "vmap", chunk_size=size),
            )
    except ValueError as error:
        skipped["metagym vmap"] = str(error).split(":")[0].replace("backend='vmap' ", "")
    if peers:
        factories, peer_skips = peer_factories(net, workload)
        for name, factory in factories.items():
            builders[name] = ("peer", lambda n, factory=factory: factory(n, workload))
        skipped |= peer_skips
    differences: dict[str, float] = {}
    if parity:
        net64 = copy.deepcopy(net).double().to(device)
        tasks64 = [_float64(t) for t in batches[0][:CHECK_TASKS]]
        reference = None
        for name, (_, build) in builders.items():
            runner = build(net64)
            model = runner.model if isinstance(runner, MAML) else runner.net
            model.zero_grad(set_to_none=True)
            if isinstance(runner, MAML):
                runner.compute_meta_gradients(tasks64)
            else:
                runner.meta_gradients(tasks64)
            grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]
            if reference is None:
                reference = grads
            differences[name] = max_relative_difference(grads, reference)
        for name, difference in differences.items():
            if difference > GRADIENT_TOLERANCE:
                del builders[name]
                skipped[name] = (
                    f"wrong meta-gradients ({difference:.1e} relative to higher, float64)"
                )
    paths = []
    compile_s: dict[str, float] = {}
    for name, (kind, build) in builders.items():
        paths.append(_training_path(name, kind, build(net), batches, compile_s))
    auto = choose_backend(net, device)
    extra = {"auto_path": f"metagym {auto}", "meta_grad_rel_diff": differences}
    if compile_s:
        extra["compile_s"] = compile_s
    return paths, skipped, extra


def _episode_floor(model: nn.Module, tasks: Sequence[SupervisedTask]) -> BenchPath:
    """One plain forward and backward pass of the embedding over each episode's images, episode
    by episode and in the layout the learners embed them in (channels-last on the CPU), as the
    fastest path runs them; a prototypical network's step is that pass plus the prototypes and
    distances. (The earlier floor, one NCHW pass over all episodes at once, measured 2.2x slower
    than the per-episode loop.)"""
    images = [cpu_layout(torch.cat([t.support.x, t.query.x])) for t in tasks]

    def step():
        model.zero_grad(set_to_none=True)
        for x in images:
            model(x).pow(2).mean().backward()

    return BenchPath("floor (1 pass per episode)", "floor", step)


def sinusoid_case(
    device: torch.device,
    *,
    steps: int,
    first_order: bool = False,
    meta_sgd: bool = False,
    rounds: int = 15,
    block: int = 5,
    parity: bool = True,
    peers: bool = True,
) -> Case:
    label = ("meta-sgd" if meta_sgd else "maml") + ("-fo" if first_order else "")
    distribution = SinusoidTasks(SINUSOID_SHOTS, queries=SINUSOID_QUERIES)
    batches = [
        [t.to(device) for t in distribution.sample(SINUSOID_META_BATCH, "train", make_generator(i))]
        for i in range(4)
    ]
    net = _seeded(lambda: mlp(1, [40, 40], 1)).to(device)
    workload = Workload("mse", steps, first_order, 0.01)
    if meta_sgd:  # no peer runs Meta-SGD the same way: metagym's backends only
        learners = {
            f"metagym {backend}": _metagym_learner(net, workload, backend, meta_sgd=True)
            for backend in ("higher", "loop", "vmap", "compiled")
        }
        paths = []
        compile_s = {}
        for name, learner in learners.items():
            kind = "loop" if learner.backend in ("higher", "loop") else "batched"
            paths.append(_training_path(name, kind, learner, batches, compile_s))
        skipped: dict[str, str] = {}
        extra = {"auto_path": f"metagym {choose_backend(net, device)}", "compile_s": compile_s}
    else:
        paths, skipped, extra = _meta_gradient_paths(
            net, workload, batches, device, peers=peers, parity=parity, compiled=True
        )
    floor = pass_floor(
        net, workload.loss_fn(), batches[0], device, steps=steps, first_order=first_order
    )
    return Case(
        name=f"sinusoid {label} {steps}-step",
        description=(
            f"sinusoid {label}, MLP 1-40-40-1, meta-batch {SINUSOID_META_BATCH}, K={SINUSOID_SHOTS}, "
            f"{SINUSOID_QUERIES} queries, {steps} inner step(s)"
        ),
        paths=[*paths, floor],
        rounds=rounds,
        block=block,
        skipped=skipped,
        extra=extra,
    )


def _image_tasks(
    device: torch.device,
    n: int,
    ways: int,
    shots: int,
    queries: int,
    seed: int,
    *,
    channels_last: bool = False,
) -> list[SupervisedTask]:
    """``n`` tasks of random 28x28 images with Omniglot's shapes (labels ``0..ways-1``), NCHW
    as the peers' data loaders give them, or with ``channels_last`` laid out as metagym's
    ``Examples.to`` lays them out on the CPU (which speeds up every path, the peers' included:
    docs/performance.md)."""
    generator = make_generator(seed)

    def examples(per_class: int) -> Examples:
        y = torch.arange(ways).repeat_interleave(per_class)
        x = torch.rand(len(y), 1, 28, 28, generator=generator).to(device)
        return Examples(cpu_layout(x) if channels_last else x, y.to(device))

    return [SupervisedTask(examples(shots), examples(queries)) for _ in range(n)]


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
    queries: int = OMNIGLOT_QUERIES,
    parity: bool = True,
    peers: bool = True,
    chunks: Sequence[int] = (),
    name: str | None = None,
    hidden: int = 64,
    channels_last: bool = False,
) -> Case:
    conv4 = importlib.import_module("metagym.nets.conv4").conv4
    net = _seeded(lambda: conv4(1, hidden, out_features=OMNIGLOT_WAYS, track_running_stats=False))
    if not norm:
        net = _without_norm(net)
    net = net.to(device)
    batches = [
        _image_tasks(
            device,
            OMNIGLOT_META_BATCH,
            OMNIGLOT_WAYS,
            1,
            queries,
            seed,
            channels_last=channels_last,
        )
        for seed in range(2)
    ]
    workload = Workload("ce", 1, False, 0.4)
    # compiled on CUDA only: on the CPU the vmap backend's batched convolutions are 5x slower
    # than the loop's (above), and compiling conv4's second-order step takes minutes there
    paths, skipped, extra = _meta_gradient_paths(
        net,
        workload,
        batches,
        device,
        peers=peers,
        parity=parity,
        chunks=chunks,
        compiled=device.type == "cuda",
    )
    floor = pass_floor(net, workload.loss_fn(), batches[0], device, steps=1, first_order=False)
    label = "conv4" if norm else "conv4-nonorm"
    return Case(
        name=name or f"omniglot {label} maml",
        description=(
            f"MAML 5-way 1-shot, {queries} queries per class, meta-batch {OMNIGLOT_META_BATCH}, "
            f"{label} ({hidden} channels{', BatchNorm' if norm else ', BatchNorm removed'}), 1 inner step, "
            f"second order, random 28x28 images{' laid out channels-last' if channels_last else ''}"
        ),
        paths=[*paths, floor],
        rounds=rounds,
        warmup=1,
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
            _episode_floor(floor_net, batches[0]),
        ],
        rounds=rounds,
    )


#: Chunk sizes of the memory-against-chunk-size case (the meta-batch is 32 tasks).
CHUNK_SIZES = (8, 2)


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
        "omniglot conv4 maml channels-last": (
            lambda d, parity=True: conv4_maml_case(
                d,
                rounds=r(5),
                parity=parity,
                channels_last=True,
                name="omniglot conv4 maml channels-last",
            ),
            ("metagym.nets.conv4",),
        ),
        "omniglot conv4 maml chunks": (
            lambda d, parity=True: conv4_maml_case(
                d,
                rounds=r(3),
                parity=parity,
                peers=False,
                chunks=CHUNK_SIZES,
                name="omniglot conv4 maml chunks",
            ),
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
