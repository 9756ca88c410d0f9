"""MAML's torch.func backends, the task-batched path (backend="vmap") and the per-task path with
fused kernels (backend="loop"), against higher.

Every net they accept gets the same meta-gradients as the higher path (1e-5 relative, float32; nets
with normalization 1e-10 in float64) in first and second order, with 1 and 5 inner steps, with and
without Meta-SGD; a finite-difference check confirms one small case independently of them.

Set METAGYM_TEST_DEVICE=cuda to run these on a GPU (benchmarks/gpu_check.sh does).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from metagym.learners import MAML, adapted_model
from metagym.learners.maml import choose_backend, first_order_backward
from metagym.learners.maml_batched import (
    FunctionalModel,
    adapt_batched,
    check_batchable,
    normalize,
    plain_chain,
)
from metagym.nets import mlp
from metagym.tasks import SinusoidTasks, make_generator
from metagym.tasks.base import Examples, SupervisedTask

DEVICE = torch.device(os.environ.get("METAGYM_TEST_DEVICE", "cpu"))
RTOL = 1e-5


@pytest.fixture(autouse=True)
def _exact_cuda_math():
    """TF32 matmuls and convolutions would break 1e-5 parity on GPUs."""
    if DEVICE.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _seeded(build, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _sinusoid_tasks(n=4, shots=5, seed=0):
    return SinusoidTasks(shots, queries=7).sample(n, "train", make_generator(seed))


def _classification_tasks(
    n=4, ways=3, shots=2, queries=3, features=6, seed=0, image=False, size=8, dtype=torch.float32
):
    generator = make_generator(seed)
    shape = (1, size, size) if image else (features,)
    tasks = []
    for _ in range(n):
        centers = torch.randn(ways, *shape, generator=generator, dtype=dtype)

        def draw(per_class, centers=centers):
            y = torch.arange(ways).repeat_interleave(per_class)
            noise = torch.randn(len(y), *shape, generator=generator, dtype=dtype)
            x = centers[y] + 0.5 * noise
            return Examples(x, y)

        tasks.append(SupervisedTask(draw(shots), draw(queries)))
    return tasks


def _conv_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


class _Residual(nn.Module):
    """Not a plain chain: runs through torch.func.functional_call."""

    def __init__(self):
        super().__init__()
        self.inp, self.hidden, self.out = nn.Linear(1, 16), nn.Linear(16, 16), nn.Linear(16, 1)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.out(h + torch.relu(self.hidden(h)))


# name -> (net builder, loss, tasks, inner lr)
CASES = {
    "sinusoid-mlp": (lambda: mlp(1, [40, 40], 1), nn.functional.mse_loss, _sinusoid_tasks, 0.01),
    "classifier-mlp": (
        lambda: mlp(6, [16], 3),
        nn.functional.cross_entropy,
        _classification_tasks,
        0.1,
    ),
    "residual-module": (_Residual, nn.functional.mse_loss, _sinusoid_tasks, 0.05),
    "conv": (
        _conv_net,
        nn.functional.cross_entropy,
        lambda: _classification_tasks(image=True),
        0.1,
    ),
}


#: The torch.func backends, each checked against higher.
FUNC_BACKENDS = ("vmap", "loop")


def _pair(case, backend="vmap", **kwargs):
    """Two learners with identical weights: backend higher and ``backend``, and the tasks."""
    build, loss, tasks, lr = CASES[case]
    reference = _seeded(lambda: MAML(build(), loss, inner_lr=lr, backend="higher", **kwargs))
    reference = reference.to(DEVICE)
    batched = copy.deepcopy(reference)
    batched.backend = backend
    return reference, batched, [t.to(DEVICE) for t in tasks()]


def _assert_close_relative(got, want, rtol=RTOL, label=""):
    error = float((got - want).norm() / want.norm().clamp_min(1e-30))
    assert error <= rtol, f"{label}: relative error {error:.2e} > {rtol:.0e}"


def _assert_same_grads(reference, batched):
    for (name, p), q in zip(reference.named_parameters(), batched.parameters(), strict=True):
        if p.grad is None:
            assert q.grad is None, f"{name}: vmap gives a gradient where higher gives none"
            continue
        assert q.grad is not None, f"{name}: vmap gives no gradient"
        _assert_close_relative(q.grad, p.grad, label=name)


@pytest.mark.parametrize("backend", FUNC_BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("meta_sgd", [False, True], ids=["maml", "meta-sgd"])
def test_meta_gradients_equal_higher(backend, case, steps, first_order, meta_sgd):
    reference, batched, tasks = _pair(
        case, backend, train_steps=steps, first_order=first_order, meta_sgd=meta_sgd
    )
    want = reference.compute_meta_gradients(tasks)
    got = batched.compute_meta_gradients(tasks)
    _assert_same_grads(reference, batched)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=RTOL)
    if not first_order:  # second order reaches Meta-SGD's step sizes
        assert all(p.grad is not None for p in batched.parameters())


def test_meta_training_steps_reach_the_same_weights():
    reference, batched, _ = _pair("sinusoid-mlp", train_steps=2, meta_sgd=True, meta_lr=1e-2)
    distribution, generator = SinusoidTasks(5), make_generator(3)
    for _ in range(3):
        tasks = [t.to(DEVICE) for t in distribution.sample(6, "train", generator)]
        want, got = reference.meta_train_step(tasks), batched.meta_train_step(tasks)
        assert got["losses/query_after_adaptation"] == pytest.approx(
            want["losses/query_after_adaptation"], rel=RTOL
        )
    for p, q in zip(reference.parameters(), batched.parameters(), strict=True):
        _assert_close_relative(q.detach(), p.detach(), rtol=1e-5)
    assert batched.config()["backend_used"] == "vmap"
    assert reference.config()["backend_used"] == "higher"


@pytest.mark.parametrize("backend", FUNC_BACKENDS)
@pytest.mark.parametrize("meta_sgd", [False, True], ids=["maml", "meta-sgd"])
def test_adaptation_at_test_time_equals_higher(backend, meta_sgd):
    reference, batched, tasks = _pair("sinusoid-mlp", backend, meta_sgd=meta_sgd)
    with torch.no_grad():  # make Meta-SGD's step sizes differ per weight
        for lr in reference.learning_rates or []:
            lr.mul_(torch.rand(lr.shape, generator=make_generator(1)).to(lr) + 0.5)
        batched.load_state_dict(reference.state_dict())
    x = tasks[0].query.x
    want = reference.adapt_steps(tasks[0], [0, 1, 5])
    got = batched.adapt_steps(tasks[0], [0, 1, 5])
    for s in (0, 1, 5):
        _assert_close_relative(got[s](x), want[s](x), label=f"step {s}")
    _assert_close_relative(batched.adapt(tasks[0], 3)(x), reference.adapt(tasks[0], 3)(x))
    assert all(p.grad is None for p in batched.parameters())


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
def test_adapted_model_backends_agree(first_order):
    """The public routine, as MAML-RL and custom losses call it (including first_order_backward)."""
    model = _seeded(lambda: mlp(1, [16], 1)).to(DEVICE)
    task = _sinusoid_tasks(1)[0].to(DEVICE)
    grads = {}
    for backend in ("higher", *FUNC_BACKENDS):
        model.zero_grad()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        with adapted_model(
            model,
            optimizer,
            lambda m: nn.functional.mse_loss(m(task.support.x), task.support.y),
            steps=3,
            first_order=first_order,
            snapshots=(0, 3),
            backend=backend,
        ) as adaptation:
            loss = nn.functional.mse_loss(adaptation.model(task.query.x), task.query.y)
            if first_order:
                first_order_backward(model, adaptation.model, loss)
            else:
                loss.backward()
        assert len(adaptation.support_losses) == 3 and sorted(adaptation.snapshots) == [0, 3]
        grads[backend] = [p.grad.clone() for p in model.parameters()]
    for backend in FUNC_BACKENDS:
        for got, want in zip(grads[backend], grads["higher"], strict=True):
            _assert_close_relative(got, want, label=backend)


def test_meta_gradient_matches_finite_differences():
    """Second-order Meta-SGD, 2 inner steps, float64: analytic vs central differences."""
    net = _seeded(lambda: nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1))).double()
    learner = MAML(net, inner_lr=0.1, train_steps=2, meta_sgd=True, backend="vmap")
    tasks = [
        SupervisedTask(
            Examples(t.support.x.double(), t.support.y.double()),
            Examples(t.query.x.double(), t.query.y.double()),
        )
        for t in _sinusoid_tasks(2, shots=5, seed=4)
    ]

    def meta_loss():
        with torch.no_grad():
            return adapt_batched(
                learner.model,
                lambda m, d: learner.support_loss(m, learner.unbatch_task(d)),
                learner.batch_tasks(tasks),
                steps=2,
                learning_rates=learner.inner_learning_rates(),
                meta_grad=False,
                query_loss=lambda m, d: learner.query_loss(m, learner.unbatch_task(d)),
            ).query_losses.mean()

    learner.compute_meta_gradients(tasks)
    eps = 1e-6
    for name, p in learner.named_parameters():
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                flat = p.view(-1)
                flat[i] += eps
                up = meta_loss()
                flat[i] -= 2 * eps
                down = meta_loss()
                flat[i] += eps
            numeric.view(-1)[i] = (up - down) / (2 * eps)
        torch.testing.assert_close(p.grad, numeric, rtol=1e-6, atol=1e-9, msg=name)


def _conv4_bn(hidden=8, ways=3, size=16):
    conv4 = pytest.importorskip("metagym.nets.conv4").conv4
    return conv4(1, hidden, out_features=ways, track_running_stats=False, image_size=(size, size))


def _group_norm_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.GroupNorm(2, 4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 3),
    )


# name -> (net builder, loss, float64 tasks, inner lr): nets with normalization layers.
NORM_CASES = {
    "conv4-batchnorm": (
        _conv4_bn,
        nn.functional.cross_entropy,
        lambda: _classification_tasks(image=True, size=16, dtype=torch.float64),
        0.4,
    ),
    # Omniglot's 28x28 images: max-pools of odd sizes (7 -> 3 -> 1) drop a row and a column.
    "conv4-batchnorm-28": (
        lambda: _conv4_bn(hidden=4, size=28),
        nn.functional.cross_entropy,
        lambda: _classification_tasks(n=2, image=True, size=28, dtype=torch.float64),
        0.4,
    ),
    "mlp-layernorm": (
        lambda: nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 3)),
        nn.functional.cross_entropy,
        lambda: _classification_tasks(dtype=torch.float64),
        0.1,
    ),
    "conv-groupnorm": (
        _group_norm_net,
        nn.functional.cross_entropy,
        lambda: _classification_tasks(image=True, size=16, dtype=torch.float64),
        0.1,
    ),
}


def max_relative_difference(got: list, want: list) -> float:
    """The one measure of meta-gradient parity: max |got - want| over all entries of all
    tensors, divided by the largest |want| entry (per-tensor ratios are meaningless where the
    true gradient is zero, e.g. a conv bias in front of BatchNorm)."""
    diff = max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))
    scale = max(float(w.abs().max()) for w in want)
    return diff / scale


@pytest.mark.parametrize("backend", FUNC_BACKENDS)
@pytest.mark.parametrize("case", sorted(NORM_CASES))
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("meta_sgd", [False, True], ids=["maml", "meta-sgd"])
def test_normalization_meta_gradients_equal_higher_float64(
    backend, case, steps, first_order, meta_sgd
):
    """BatchNorm (batch statistics), LayerNorm and GroupNorm on the vmap backend run through a
    functional normalization, on the loop backend through torch's kernels (images channels-last on the CPU): float64 meta-gradients equal higher's to 1e-10 (the one measure)."""
    build, loss, tasks, lr = NORM_CASES[case]
    kwargs = {"train_steps": steps, "first_order": first_order, "meta_sgd": meta_sgd}
    reference = _seeded(lambda: MAML(build(), loss, inner_lr=lr, **kwargs, backend="higher"))
    reference = reference.double().to(DEVICE)
    batched = MAML(copy.deepcopy(reference.model), loss, inner_lr=lr, **kwargs, backend=backend)
    batched.load_state_dict(reference.state_dict())
    tasks = [t.to(DEVICE) for t in tasks()]
    want = reference.compute_meta_gradients(tasks)
    got = batched.compute_meta_gradients(tasks)
    grads = [
        (p.grad, q.grad)
        for p, q in zip(reference.parameters(), batched.parameters(), strict=True)
        if p.grad is not None or q.grad is not None  # first order: no step-size gradients
    ]
    assert all(w is not None and g is not None for w, g in grads)
    assert len(grads) >= len(list(reference.model.parameters()))
    error = max_relative_difference([g for _, g in grads], [w for w, _ in grads])
    assert error <= 1e-10, f"meta-gradients differ by {error:.1e} (max diff / max entry)"
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12)


def test_functional_normalization_equals_torch_layers():
    """normalize() computes what torch's layers compute (forward, float64)."""
    generator = make_generator(2)
    for layer, shape in [
        (nn.BatchNorm2d(4, track_running_stats=False), (5, 4, 3, 3)),
        (nn.BatchNorm1d(4, affine=False, track_running_stats=False), (5, 4)),
        (nn.BatchNorm1d(4, track_running_stats=False), (5, 4, 7)),
        (nn.LayerNorm((3, 3)), (5, 4, 3, 3)),
        (nn.GroupNorm(2, 4), (5, 4, 3, 3)),
        (nn.GroupNorm(1, 4, affine=False), (5, 4, 6)),
    ]:
        layer = layer.double()
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
        x = torch.randn(shape, generator=generator, dtype=torch.float64)
        got = normalize(layer, x, getattr(layer, "weight", None), getattr(layer, "bias", None))
        torch.testing.assert_close(got, layer(x), rtol=1e-12, atol=1e-12, msg=repr(layer))


@pytest.mark.parametrize(
    "layer",
    [nn.InstanceNorm1d(8), nn.InstanceNorm1d(8, affine=True), nn.GRU(8, 8)],
    ids=["InstanceNorm1d", "InstanceNorm1d-affine", "GRU"],
)
def test_vmap_backend_refuses_layers_it_gets_wrong(layer):
    net = nn.Sequential(nn.Linear(1, 8), layer, nn.Linear(8, 1))
    with pytest.raises(ValueError, match=r"backend='vmap' refuses layer '1'.*backend='higher'"):
        MAML(net, backend="vmap")
    task = _sinusoid_tasks(1)[0]
    with (
        pytest.raises(ValueError, match="backend='vmap' refuses"),
        adapted_model(
            net,
            torch.optim.SGD(net.parameters(), lr=0.1),
            lambda m: m(task.support.x).sum(),
            steps=1,
            backend="vmap",
        ),
    ):
        pass
    if not isinstance(layer, nn.GRU):
        MAML(net, backend="higher")  # the higher backend takes it


def test_vmap_backend_refuses_running_statistics_and_norms_outside_chains():
    tracked = nn.Sequential(nn.Linear(1, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    with pytest.raises(ValueError, match="tracks running statistics.*track_running_stats=False"):
        check_batchable(tracked)
    with pytest.raises(ValueError, match="tracks running statistics.*track_running_stats=False"):
        MAML(tracked, backend="vmap")

    class Wrapped(nn.Module):  # not a plain chain: its forward could do anything
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(1, 8), nn.LayerNorm(8), nn.Linear(8, 1))

        def forward(self, x):
            return self.body(x)

    with pytest.raises(ValueError, match="refuses layer 'body.1'.*plain nn.Sequential chains"):
        MAML(Wrapped(), backend="vmap")
    check_batchable(Wrapped().body)  # the same layers in a chain are accepted


def test_vmap_backend_input_errors():
    with pytest.raises(
        ValueError, match="unknown MAML backend 'jax'; accepted: auto, higher, vmap, loop"
    ):
        MAML(mlp(1, [4], 1), backend="jax")
    learner = MAML(mlp(1, [4], 1), backend="vmap")
    uneven = _sinusoid_tasks(1, shots=5) + _sinusoid_tasks(1, shots=10)
    with pytest.raises(ValueError, match="equal support and query sizes"):
        learner.meta_train_step(uneven)
    with pytest.raises(ValueError, match="at least one task"):
        learner.meta_train_step([])
    net = mlp(1, [4], 1)
    with (
        pytest.raises(ValueError, match="plain SGD"),
        adapted_model(
            net,
            torch.optim.Adam(net.parameters()),
            lambda m: m(torch.zeros(2, 1)).sum(),
            steps=1,
            backend="vmap",
        ),
    ):
        pass
    with (
        pytest.raises(ValueError, match="momentum=0"),
        adapted_model(
            net,
            torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
            lambda m: m(torch.zeros(2, 1)).sum(),
            steps=1,
            backend="vmap",
        ),
    ):
        pass


def test_fast_path_of_plain_chains_equals_functional_call():
    nets = [
        mlp(3, [5], 2),
        nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1),
            nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2)),
            nn.Flatten(),
            nn.Dropout(0.0),
            nn.Linear(4 * 4 * 4, 3, bias=False),
        ),
    ]
    inputs = [
        torch.randn(4, 3, generator=make_generator(0)),
        torch.randn(2, 2, 8, 8, generator=make_generator(1)),
    ]
    for net, x in zip(nets, inputs, strict=True):
        assert plain_chain(net) is not None
        weights = {n: p.detach() * 1.5 for n, p in net.named_parameters()}
        want = torch.func.functional_call(net, weights, (x,))
        torch.testing.assert_close(FunctionalModel(net, weights, {})(x), want, rtol=0, atol=0)
    assert plain_chain(_Residual()) is None
    assert plain_chain(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))) is not None
    assert plain_chain(nn.Sequential(nn.Linear(2, 2), nn.RMSNorm(2))) is None
    # A forward hook must run, so the call falls back to functional_call.
    net, seen = mlp(1, [3], 1), []
    net[0].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    FunctionalModel(net, dict(net.named_parameters()), {})(torch.zeros(2, 1))
    assert seen == [torch.Size([2, 3])]


class _MemoryFormats(nn.Module):
    """A stateless layer that records whether its input is channels-last (and not NCHW)."""

    def __init__(self, seen: list[bool]):
        super().__init__()
        self.seen = seen

    def forward(self, x):
        nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        self.seen.append(nhwc)
        return x


@pytest.mark.parametrize("in_channels", [1, 3])
def test_loop_backend_runs_images_channels_last_on_the_cpu(in_channels):
    """The fused chain (the loop backend) converts CPU images to channels-last, single-channel
    ones included, where torch's convolution would otherwise return NCHW; its outputs and input
    gradients equal the NCHW chain's (float64)."""
    seen: list[bool] = []
    net = nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1),
        _MemoryFormats(seen),
        nn.BatchNorm2d(4, track_running_stats=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        _MemoryFormats(seen),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 2),
    ).double()
    x = torch.randn(3, in_channels, 8, 8, generator=make_generator(0), dtype=torch.float64)
    weights = dict(net.named_parameters())
    outputs, grads = [], []
    for fused in (True, False):
        x_ = x.clone().requires_grad_()
        out = FunctionalModel(net, weights, {}, fused=fused)(x_)
        outputs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), [x_, *weights.values()]))
    assert seen == [True, True, False, False]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)
    for got, want in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
def test_rl_policies_policy_gradient_meta_gradients_equal_higher(kind, first_order):
    """MAML-RL's MLP policies with a REINFORCE loss: task-batched vmap vs higher's task loop."""
    policies = pytest.importorskip("metagym.rl.policies")
    generator = make_generator(5)
    tasks, steps = 3, 20
    if kind == "gaussian":
        policy = _seeded(lambda: policies.GaussianMLPPolicy(3, 2, (16, 16)))
        actions = torch.randn(tasks, steps, 2, generator=generator)
    else:
        policy = _seeded(lambda: policies.CategoricalMLPPolicy(3, 4, (16, 16)))
        actions = torch.randint(0, 4, (tasks, steps), generator=generator)
    policy = policy.to(DEVICE)
    observations = torch.randn(tasks, steps, 3, generator=generator)
    advantage = torch.randn(tasks, steps, generator=generator)
    data = tuple(x.to(DEVICE) for x in (observations, actions, advantage))

    def reinforce(model, task_data):
        obs, act, adv = task_data
        return -(model(obs).log_prob(act) * adv).mean()

    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    policy.zero_grad()  # reference: higher, one task at a time
    for b in range(tasks):
        task = tuple(x[b] for x in data)
        with adapted_model(
            policy,
            optimizer,
            lambda m, task=task: reinforce(m, task),
            steps=2,
            first_order=first_order,
        ) as adaptation:
            loss = reinforce(adaptation.model, task) / tasks
            if first_order:
                first_order_backward(policy, adaptation.model, loss)
            else:
                loss.backward()
    want = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()
    result = adapt_batched(
        policy,
        reinforce,
        data,
        steps=2,
        learning_rates=dict.fromkeys(dict(policy.named_parameters()), 0.1),
        first_order=first_order,
        query_loss=reinforce,
    )
    result.query_losses.mean().backward()
    for (name, p), w in zip(policy.named_parameters(), want, strict=True):
        _assert_close_relative(p.grad, w, label=name)


def test_auto_backend_choice_is_recorded_and_checkpoints_load_across_backends(tmp_path):
    """ "auto" picks vmap for MLPs and the loop for conv nets on the CPU (vmap on CUDA), higher
    for nets the vmap backend refuses; config() says which ran; a saved run loads again."""
    mlp_learner = MAML(mlp(1, [8], 1))
    assert mlp_learner.config()["backend"] == "auto"
    assert mlp_learner.backend == mlp_learner.config()["backend_used"] == "vmap"
    conv = MAML(_conv_net(), nn.functional.cross_entropy)
    assert choose_backend(conv.model, "cpu") == "loop"
    assert choose_backend(conv.model, "cuda") == "vmap"
    assert conv.backend == ("vmap" if DEVICE.type == "cuda" else "loop")
    recurrent = nn.Sequential(nn.Linear(1, 4), nn.GRU(4, 4))
    assert choose_backend(recurrent, "cuda") == choose_backend(recurrent, "cpu") == "higher"
    tracked = nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    assert choose_backend(tracked, "cuda") == "higher"
    # A run saved with one backend loads into a learner built with another (same weights).
    trained = _seeded(lambda: MAML(mlp(1, [8], 1), backend="auto"))
    trained.meta_train_step(_sinusoid_tasks(3))
    trained.save(tmp_path / "maml.pt")
    for backend in ("auto", "higher", "vmap", "loop"):
        fresh = MAML(mlp(1, [8], 1), backend=backend)
        fresh.load(tmp_path / "maml.pt")
        for p, q in zip(trained.parameters(), fresh.parameters(), strict=True):
            assert torch.equal(p, q)
    with pytest.raises(ValueError, match="other settings.*inner_lr"):
        MAML(mlp(1, [8], 1), inner_lr=0.5).load(tmp_path / "maml.pt")


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
def test_chunked_meta_gradients_equal_the_whole_meta_batch(first_order):
    """chunk_size splits the meta-batch (7 tasks into 3 + 3 + 1); the accumulated meta-gradients
    and metrics equal the unchunked ones (float64, 1e-12 relative)."""
    build = lambda: MAML(  # noqa: E731
        _conv4_bn(),
        nn.functional.cross_entropy,
        inner_lr=0.4,
        train_steps=2,
        first_order=first_order,
        meta_sgd=True,
        backend="vmap",
    )
    whole = _seeded(build).double().to(DEVICE)
    chunked = _seeded(build).double().to(DEVICE)
    chunked.chunk_size = 3
    tasks = [
        t.to(DEVICE) for t in _classification_tasks(7, image=True, size=16, dtype=torch.float64)
    ]
    want, got = whole.compute_meta_gradients(tasks), chunked.compute_meta_gradients(tasks)
    pairs = [
        (p.grad, q.grad) for p, q in zip(whole.parameters(), chunked.parameters(), strict=True)
    ]
    pairs = [(w, g) for w, g in pairs if w is not None]
    assert len(pairs) >= len(list(whole.model.parameters()))
    assert max_relative_difference([g for _, g in pairs], [w for w, _ in pairs]) <= 1e-12
    assert got == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="chunk_size must be None or an int >= 1, got 0"):
        MAML(mlp(1, [4], 1), chunk_size=0)


@pytest.mark.parametrize("case", ["sinusoid-mlp", "conv4-batchnorm"])
def test_batched_evaluation_equals_task_by_task(case):
    """evaluate() through adapt_many (chunks of tasks through the vmap backend) gives the same
    rows as task-by-task adaptation, and the same predictions."""
    from metagym.evaluate import evaluate

    if case == "sinusoid-mlp":
        distribution = SinusoidTasks(5, queries=7)
        learner = _seeded(lambda: MAML(mlp(1, [16], 1), inner_lr=0.05, backend="vmap"))
    else:
        distribution = _ClassificationDistribution()
        learner = _seeded(
            lambda: MAML(_conv4_bn(), nn.functional.cross_entropy, inner_lr=0.4, backend="vmap")
        )
    learner.to(DEVICE)
    tasks = distribution.sample(7, "test", make_generator(3))
    learner.chunk_size = 3  # chunks of 3 + 3 + 1 tasks
    assert learner._batchable_evaluation([t.to(DEVICE) for t in tasks])
    batched = learner.adapt_many(tasks, [0, 1, 3])
    looped = [learner.adapt_steps(t.to(DEVICE), [0, 1, 3]) for t in tasks]
    for task, got, want in zip(tasks, batched, looped, strict=True):
        x = task.to(DEVICE).query.x
        for s in (0, 1, 3):
            torch.testing.assert_close(got[s](x), want[s](x), rtol=1e-4, atol=1e-5)
    rows_batched = evaluate(learner, distribution, "test", tasks, (0, 1, 3), progress=False)
    learner.eval_batch = 1  # one task per call: the task-by-task path
    rows_looped = evaluate(learner, distribution, "test", tasks, (0, 1, 3), progress=False)
    for got, want in zip(rows_batched, rows_looped, strict=True):
        assert got["n_tasks"] == want["n_tasks"] == 7
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-4, abs=1e-6)


class _ClassificationDistribution(SinusoidTasks):
    """3-way 1-shot tasks of random 16x16 images, scored by accuracy (for evaluate())."""

    domain, metric = "test-images", "accuracy"

    def __init__(self):
        super().__init__(5)

    def sample(self, n, split, generator):
        return _classification_tasks(n, shots=1, queries=2, image=True, size=16, seed=n)

    def score(self, predictor, task):
        return float((predictor(task.query.x).argmax(-1) == task.query.y).float().mean())
