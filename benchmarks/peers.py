"""Other libraries' MAML on the benchmark's workloads, written as their examples and APIs do it.

- ``higher example loop``: higher's ``innerloop_ctx`` per task (higher's MAML example); first
  order takes the query gradient at the fast weights (``track_higher_grads=False``).
- ``TorchOpt MetaSGD loop``: ``torchopt.MetaSGD`` on the module, ``extract_state_dict`` /
  ``recover_state_dict`` around each task, one backward for the meta-batch (TorchOpt's
  ``examples/few-shot/maml_omniglot.py``); second order only, as there.
- ``TorchOpt functional loop`` and ``TorchOpt vmap recipe``: ``torch.func.grad`` of a
  ``functional_call`` loss and ``torchopt.sgd``'s functional update per task, in a Python loop or
  under ``vmap`` (TorchOpt's ``examples/FuncTorch/maml_omniglot_vmap.py``).
- ``parallel-metalearn vmap``: ``metalearn.algorithms.MAML`` (its own vmap path) on a
  ``MAML_Model`` with the same layers; for BatchNorm nets once with its own ``BatchNorm`` layer and
  once with torch's (``(torch BatchNorm)``).

Every peer is built from a copy of metagym's net, so weights and parameter order are the same, and
exposes ``meta_gradients(tasks)`` (the meta-gradient of the mean query loss, left in the
parameters' ``.grad``) and ``step(tasks)`` (one meta-update with Adam). The TorchOpt and
parallel-metalearn peers need the ``bench`` extra (``pip install -e ".[bench]"``); without it
they are skipped with the reason (:func:`missing_peers`).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import higher
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metagym.tasks.base import SupervisedTask, stack_tasks

#: Peer name -> the modules it needs (from the ``bench`` extra).
NEEDS = {
    "TorchOpt": ("torchopt",),
    "parallel-metalearn": ("metalearn",),
}


def missing_peers() -> dict[str, str]:
    """Peer library -> why it cannot run here (empty when the ``bench`` extra is installed)."""
    missing = {}
    for peer, modules in NEEDS.items():
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as error:  # ImportError, or a broken install of the extra
                missing[peer] = (
                    f"{name} not importable ({type(error).__name__}: {error}); "
                    'install the bench extra: pip install -e ".[bench]"'
                )
    return missing


@dataclass(frozen=True)
class Workload:
    """A MAML meta-update: the loss (``"mse"`` or ``"ce"``), inner steps, order, step size."""

    loss: str
    steps: int
    first_order: bool
    inner_lr: float
    meta_lr: float = 1e-3

    def loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        return F.mse_loss if self.loss == "mse" else F.cross_entropy


class _Peer:
    name = ""

    def __init__(self, net: nn.Module, workload: Workload):
        self.net = copy.deepcopy(net)
        self.w = workload
        self.loss = workload.loss_fn()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=workload.meta_lr)

    def meta_gradients(self, tasks: Sequence[SupervisedTask]) -> None:
        raise NotImplementedError

    def step(self, tasks: Sequence[SupervisedTask]) -> None:
        self.optimizer.zero_grad()
        self.meta_gradients(tasks)
        self.optimizer.step()

    def gradients(self) -> list[Tensor]:
        """The meta-gradient, one tensor per parameter of the net (zeros where none)."""
        return [torch.zeros_like(p) if p.grad is None else p.grad for p in self.net.parameters()]


class HigherLoop(_Peer):
    name = "higher example loop"

    def meta_gradients(self, tasks):
        inner = torch.optim.SGD(self.net.parameters(), lr=self.w.inner_lr)
        for task in tasks:
            with higher.innerloop_ctx(
                self.net,
                inner,
                copy_initial_weights=False,
                track_higher_grads=not self.w.first_order,
            ) as (fnet, diffopt):
                for _ in range(self.w.steps):
                    diffopt.step(self.loss(fnet(task.support.x), task.support.y))
                query = self.loss(fnet(task.query.x), task.query.y) / len(tasks)
                if self.w.first_order:
                    fast = list(fnet.parameters())
                    grads = torch.autograd.grad(query, fast, allow_unused=True)
                    for p, g in zip(self.net.parameters(), grads, strict=True):
                        if g is not None:
                            p.grad = g if p.grad is None else p.grad + g
                else:
                    query.backward()


class TorchOptMetaSGD(_Peer):
    name = "TorchOpt MetaSGD loop"

    def __init__(self, net, workload):
        super().__init__(net, workload)
        if workload.first_order:
            raise NotImplementedError("TorchOpt's MetaSGD example is second order only")
        self.torchopt = importlib.import_module("torchopt")
        self.inner = self.torchopt.MetaSGD(self.net, lr=workload.inner_lr)

    def meta_gradients(self, tasks):
        torchopt = self.torchopt
        net_state = torchopt.extract_state_dict(self.net, by="reference", detach_buffers=True)
        inner_state = torchopt.extract_state_dict(self.inner, by="reference")
        losses = []
        for task in tasks:
            for _ in range(self.w.steps):
                self.inner.step(self.loss(self.net(task.support.x), task.support.y))
            losses.append(self.loss(self.net(task.query.x), task.query.y))
            torchopt.recover_state_dict(self.net, net_state)
            torchopt.recover_state_dict(self.inner, inner_state)
        torch.stack(losses).mean().backward()


class TorchOptFunctional(_Peer):
    """TorchOpt's functorch recipe: ``loss_for_task`` per task, looped or under ``vmap``."""

    def __init__(self, net, workload, *, vectorized: bool):
        super().__init__(net, workload)
        self.torchopt = importlib.import_module("torchopt")
        self.vectorized = vectorized
        self.name = "TorchOpt vmap recipe" if vectorized else "TorchOpt functional loop"
        self.buffers = dict(self.net.named_buffers())

    def _loss_for_task(self, params, x_spt, y_spt, x_qry, y_qry):
        torchopt = self.torchopt

        def compute_loss(weights, x, y):
            return self.loss(torch.func.functional_call(self.net, (weights, self.buffers), (x,)), y)

        opt = torchopt.sgd(lr=self.w.inner_lr)
        state = opt.init(params)
        new = params
        for _ in range(self.w.steps):
            grads = torch.func.grad(compute_loss)(new, x_spt, y_spt)
            if self.w.first_order:
                grads = {n: g.detach() for n, g in grads.items()}
            updates, state = opt.update(grads, state, inplace=False)
            new = torchopt.apply_updates(new, updates, inplace=False)
        return compute_loss(new, x_qry, y_qry)

    def meta_gradients(self, tasks):
        params = dict(self.net.named_parameters())
        if self.vectorized:
            support, query = stack_tasks(tasks)
            losses = torch.func.vmap(lambda *d: self._loss_for_task(params, *d))(
                support.x, support.y, query.x, query.y
            )
        else:
            losses = torch.stack(
                [
                    self._loss_for_task(params, t.support.x, t.support.y, t.query.x, t.query.y)
                    for t in tasks
                ]
            )
        losses.mean().backward()


class _KwargsSequential(nn.Sequential):
    """An ``nn.Sequential`` that passes parallel-metalearn's forward flags to the layers that
    take them (its BatchNorm, nested chains): ``takes[i]`` says whether layer ``i`` does."""

    takes: tuple[bool, ...] = ()

    def forward(self, x, **kwargs):
        for layer, takes in zip(self, self.takes, strict=True):
            x = layer(x, **kwargs) if takes else layer(x)
        return x


def _PMLBatchNorm():  # noqa: N802 - a class, imported late
    return importlib.import_module("metalearn.nn_models.basic_layers.BatchNormalization").BatchNorm


class _KwargsLinear(nn.Linear):
    def forward(self, x, **kwargs):
        return super().forward(x)


def _to_metalearn(net: nn.Module, own_batchnorm: bool) -> nn.Module:
    """``net`` (an ``nn.Sequential`` ending in a Linear head) as a ``MAML_Model``; BatchNorm2d
    layers become metalearn's ``BatchNorm`` when ``own_batchnorm`` (same weights)."""
    wrapper = importlib.import_module("metalearn.model_wrappers.MAMLWrapper").MAML_Model
    BatchNorm = _PMLBatchNorm()  # noqa: N806

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, nn.Sequential):
            layers = [convert(m) for m in module]
            chain = _KwargsSequential(*layers)
            chain.takes = tuple(isinstance(m, (_KwargsSequential, BatchNorm)) for m in layers)
            return chain
        if own_batchnorm and isinstance(module, nn.BatchNorm2d):
            layer = BatchNorm(
                module.num_features, eps=module.eps, affine=module.affine, track_running_stats=False
            )
            layer.load_state_dict(module.state_dict())
            return layer.to(next(module.parameters()).dtype)
        return module

    head = net[-1]
    linear = _KwargsLinear(
        head.in_features, head.out_features, dtype=head.weight.dtype, device=head.weight.device
    )
    linear.load_state_dict(head.state_dict())
    return wrapper(convert(net[:-1]), linear)


class ParallelMetalearn(_Peer):
    def __init__(self, net, workload, *, own_batchnorm: bool = True):
        super().__init__(net, workload)
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        self.name = "parallel-metalearn vmap" + (
            "" if own_batchnorm or not has_bn else " (torch BatchNorm)"
        )
        algorithms = importlib.import_module("metalearn.algorithms")
        inner_optimizers = importlib.import_module("metalearn.inner_optimizers.optimizers")
        base_loss = importlib.import_module("metalearn.loss.base").BaseLoss
        ce = importlib.import_module("metalearn.loss.CEloss").CrossEntropy
        accuracy = importlib.import_module(
            "metalearn.loss.categorical_accuracy"
        ).CategoricalAccuracy

        class MSE(base_loss):
            def forward(self, out_dict, targets, model_states=None, **kwargs):
                loss = F.mse_loss(out_dict["logits"], targets)
                return loss, loss.detach()

        self.net = _to_metalearn(self.net, own_batchnorm)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=workload.meta_lr)
        inner = inner_optimizers.InnerSGD(
            self.net.get_fast_weights(),
            first_order=workload.first_order,
            inner_lr=workload.inner_lr,
            max_inner_steps=max(1, workload.steps),
            learn_lr=False,
        )
        self.maml = algorithms.MAML(
            model=self.net,
            optimizer=self.optimizer,
            inner_optimizer=inner,
            # Its CrossEntropy's default metric is the accuracy class, not an instance (a bug).
            support_loss_fn=MSE() if workload.loss == "mse" else ce(metric_fn=accuracy()),
            inner_steps=workload.steps,
            chunk_size=10**6,
            device=next(net.parameters()).device,
        )

    def _batch(self, tasks):
        support, query = stack_tasks(tasks)
        if self.w.loss == "mse":
            return support.x, support.y, query.x, query.y
        return support.x, {"labels": support.y}, query.x, {"labels": query.y}

    def step(self, tasks):
        self.maml.step(iter([self._batch(tasks)]), training=True)

    def meta_gradients(self, tasks):
        """Its ``step`` zeroes the gradients, computes them and steps the optimizer: step an
        optimizer with learning rate 0 so the weights stay and the gradients are left."""
        saved = self.maml.optimizer
        self.maml.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.0)
        try:
            self.maml.step(iter([self._batch(tasks)]), training=True)
        finally:
            self.maml.optimizer = saved


PeerFactory = Callable[[nn.Module, Workload], _Peer]


def peer_factories(
    net: nn.Module, workload: Workload
) -> tuple[dict[str, PeerFactory], dict[str, str]]:
    """Name -> ``factory(net, workload)`` of the peers that run this workload, and name -> reason
    for those that cannot (missing extra, or no such variant in the peer)."""
    missing = missing_peers()
    factories: dict[str, PeerFactory] = {"higher example loop": HigherLoop}
    skipped: dict[str, str] = {}
    if "TorchOpt" in missing:
        for name in ("TorchOpt MetaSGD loop", "TorchOpt functional loop", "TorchOpt vmap recipe"):
            skipped[name] = missing["TorchOpt"]
    else:
        if workload.first_order:
            skipped["TorchOpt MetaSGD loop"] = "n/a: TorchOpt's MetaSGD example is second order"
        else:
            factories["TorchOpt MetaSGD loop"] = TorchOptMetaSGD
        factories["TorchOpt functional loop"] = lambda n, w: TorchOptFunctional(
            n, w, vectorized=False
        )
        factories["TorchOpt vmap recipe"] = lambda n, w: TorchOptFunctional(n, w, vectorized=True)
    if "parallel-metalearn" in missing:
        skipped["parallel-metalearn vmap"] = missing["parallel-metalearn"]
    else:
        factories["parallel-metalearn vmap"] = lambda n, w: ParallelMetalearn(
            n, w, own_batchnorm=True
        )
        if any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
            factories["parallel-metalearn vmap (torch BatchNorm)"] = lambda n, w: ParallelMetalearn(
                n, w, own_batchnorm=False
            )
    return factories, skipped


def max_relative_difference(got: Sequence[Tensor], want: Sequence[Tensor]) -> float:
    """The one parity measure: max |got - want| over all entries / max |want| entry."""
    diff = max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))
    return diff / max(float(w.abs().max()) for w in want)
