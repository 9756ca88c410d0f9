"""The ``torch.func`` backend of MAML's adaptation routine, batched over tasks with ``vmap``.

:func:`inner_loop` is the inner loop: ``steps`` SGD steps on a support loss of fast weights run
through ``torch.func.functional_call``, differentiable with respect to the initial weights
(second order), with the inner gradients treated as constants (first order), or not at all
(evaluation). :func:`adapt_batched` runs it for a whole meta-batch at once: the weights get a
leading task dimension and the per-task losses are computed with ``torch.func.vmap`` over tasks,
which removes the Python loop over tasks that dominates MAML on small nets (docs/performance.md).

Both are reached through :class:`metagym.learners.maml.MAML` with ``backend="vmap"`` and through
:func:`metagym.learners.maml.adapted_model` with ``backend="vmap"``; ``backend="higher"`` stays the
default and the reference their meta-gradients are tested against (``tests/test_maml_backends.py``).

Normalization: torch's normalization kernels (``F.batch_norm`` ...) under ``vmap`` give wrong
second-order meta-gradients (DESIGN.md), so BatchNorm1d/2d/3d (``track_running_stats=False``),
LayerNorm and GroupNorm run through :func:`normalize`, the same normalization written from plain
tensor operations, per task (meta-gradients equal to the higher loop's to 1e-10 in float64,
``tests/test_maml_backends.py``).

Limits:
- Normalization layers are accepted only inside plain ``nn.Sequential`` chains
  (:func:`plain_chain`); BatchNorm with running statistics, InstanceNorm and RMSNorm are refused.
- Recurrent layers (nn.RNN, nn.GRU, nn.LSTM) are refused: vmap has no batching rule for them.
- Random layers (dropout) inside ``vmap`` raise torch's own "randomness" error.
- The inner optimizer is plain SGD (no momentum, no weight decay), as in MAML and Meta-SGD.
- All tasks of a meta-batch must have the same support and query sizes (they are stacked).
- Memory: the graphs of all the meta-batch's tasks exist at once (the loop frees each task's
  after its backward pass): for Omniglot-sized conv nets that is ~50x the loop's peak memory.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F
from torch.utils._pytree import tree_leaves

from metagym.nets.batch_norm import batch_norm
from metagym.nets.layout import channels_last

#: Normalization layers (all of torch's). ``F.batch_norm`` and friends under ``vmap`` give wrong
#: second-order meta-gradients, so the vmap backend never calls them: it runs the layers of
#: :data:`FUNCTIONAL_NORMS` through :func:`normalize` (plain tensor operations) and refuses the rest.
NORMALIZATION_LAYERS: tuple[type[nn.Module], ...] = tuple(
    cls
    for cls in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*, lazy variants
        nn.LayerNorm,
        nn.GroupNorm,
        getattr(nn, "RMSNorm", None),
    )
    if cls is not None
)

#: Normalization layers the vmap backend runs through :func:`normalize`, inside plain chains
#: (BatchNorm only with ``track_running_stats=False``: batch statistics, as in the MAML paper).
FUNCTIONAL_NORMS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
)

#: A step size per parameter name: a float, or a tensor of the parameter's shape (Meta-SGD).
LearningRates = Mapping[str, float | Tensor]


def _functional_norm(module: nn.Module) -> bool:
    """True for a layer :func:`normalize` computes (exact type: subclasses may change forward)."""
    if type(module) not in FUNCTIONAL_NORMS:
        return False
    return not isinstance(module, nn.modules.batchnorm._NormBase) or not module.track_running_stats


def check_batchable(model: nn.Module) -> None:
    """Raise a ValueError if ``model`` has a layer the vmap backend cannot adapt correctly.

    Accepted: any module without normalization or recurrent layers, and plain chains
    (:func:`plain_chain`: nested ``nn.Sequential``) whose normalization layers are BatchNorm1d/2d/3d
    with ``track_running_stats=False``, LayerNorm or GroupNorm (run through :func:`normalize`).
    """
    chain = None
    for name, module in model.named_modules():
        label = f"layer {name or '<root>'!r} ({type(module).__name__})"
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            raise ValueError(
                f"backend='vmap' refuses {label}: it tracks running statistics, which the "
                "adapted (functional) model never writes back to the model; build it with "
                "track_running_stats=False"
            )
        if isinstance(module, NORMALIZATION_LAYERS):
            if not _functional_norm(module):
                raise ValueError(
                    f"backend='vmap' refuses {label}: torch.func.vmap gives wrong meta-gradients "
                    "for torch's normalization kernels (see DESIGN.md), and only BatchNorm1d/2d/3d "
                    "(track_running_stats=False), LayerNorm and GroupNorm have a functional "
                    "replacement; use backend='higher' for this net, or remove the layer"
                )
            chain = plain_chain(model) if chain is None else chain
            if not chain:
                raise ValueError(
                    f"backend='vmap' refuses {label}: normalization layers run on the vmap "
                    "backend only inside plain nn.Sequential chains (where they are replaced by "
                    "a functional normalization; torch.func.vmap gives wrong meta-gradients for "
                    "torch's normalization kernels); use backend='higher' for this net"
                )
        if isinstance(module, nn.RNNBase):
            raise ValueError(
                f"backend='vmap' refuses {label}: "
                "torch.func.vmap has no batching rule for the fused recurrent kernels; use "
                "backend='higher' for this net"
            )


def normalize(layer: nn.Module, x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """``layer`` (one of :data:`FUNCTIONAL_NORMS`) applied to ``x`` with ``weight`` and ``bias``,
    written from plain tensor operations, so that its meta-gradients under ``vmap`` are right.

    - BatchNorm: ``x`` is ``(N, C, *spatial)``; mean and biased variance over ``N`` and the
      spatial dimensions (batch statistics), per channel.
    - LayerNorm: over the last ``len(normalized_shape)`` dimensions of ``x``.
    - GroupNorm: ``x`` is ``(N, C, *spatial)``; over each group of ``C / num_groups`` channels
      and the spatial dimensions, per example.

    Then ``(x - mean) / sqrt(var + eps) * weight + bias`` (weight and bias of the channels, or of
    ``normalized_shape``; None: no affine step). Returns a tensor of ``x``'s shape.
    """
    if isinstance(layer, nn.LayerNorm):
        dims = tuple(range(x.dim() - len(layer.normalized_shape), x.dim()))
        y = _standardize(x, dims, layer.eps)
        shape = layer.normalized_shape
    elif isinstance(layer, nn.GroupNorm):
        grouped = x.reshape(x.shape[0], layer.num_groups, -1)
        y = _standardize(grouped, (2,), layer.eps).reshape(x.shape)
        shape = (x.shape[1],) + (1,) * (x.dim() - 2)
    else:  # BatchNorm1d/2d/3d with batch statistics
        if x.dim() < 2:
            raise ValueError(
                f"{type(layer).__name__} needs (N, C, ...) inputs, got {tuple(x.shape)}"
            )
        y = _standardize(x, (0, *range(2, x.dim())), layer.eps)
        shape = (x.shape[1],) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def _standardize(x: Tensor, dims: tuple[int, ...], eps: float) -> Tensor:
    """``(x - mean) / sqrt(biased var + eps)`` over ``dims``."""
    centered = x - x.mean(dims, keepdim=True)
    variance = centered.square().mean(dims, keepdim=True)
    return centered * torch.rsqrt(variance + eps)


def check_plain_sgd(optimizer: torch.optim.Optimizer) -> None:
    """Raise unless ``optimizer`` is SGD without momentum, weight decay, dampening or nesterov."""
    if type(optimizer) is not torch.optim.SGD:
        raise ValueError(
            f"backend='vmap' takes plain SGD inner steps; got {type(optimizer).__name__} "
            "(use backend='higher' for other differentiable optimizers)"
        )
    for group in optimizer.param_groups:
        for key in ("momentum", "weight_decay", "dampening"):
            if group.get(key, 0):
                raise ValueError(f"backend='vmap' needs SGD with {key}=0, got {group[key]}")
        if group.get("maximize", False) or group.get("nesterov", False):
            raise ValueError("backend='vmap' needs SGD without maximize or nesterov")


_TIED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def has_tied_weights(module: nn.Module) -> bool:
    """True if a parameter or buffer is registered under two names (cached per module).

    ``functional_call`` then has to look for the tied names on every call, which costs about as
    much as a small MLP's forward pass; untied modules skip that search.
    """
    tied = _TIED.get(module)
    if tied is None:
        tensors = [t for _, t in module.named_parameters(remove_duplicate=False)]
        tensors += [t for _, t in module.named_buffers(remove_duplicate=False)]
        tied = len({id(t) for t in tensors}) != len(tensors)
        _TIED[module] = tied
    return tied


# A layer of a plain chain: ("linear" | "conv2d" | "norm" | "call", module, parameter-name prefix).
_Layer = tuple[str, nn.Module, str]
_CHAINS: weakref.WeakKeyDictionary[nn.Module, list[_Layer] | None] = weakref.WeakKeyDictionary()


def _stateless(module: nn.Module) -> bool:
    return not any(True for _ in module.parameters()) and not any(True for _ in module.buffers())


def plain_chain(module: nn.Module) -> list[_Layer] | None:
    """The layers of ``module`` if it is a plain chain the fast functional path runs by itself.

    A plain chain is an ``nn.Sequential`` (nested ones included) of ``nn.Linear``, ``nn.Conv2d``
    (zero padding), the normalization layers of :data:`FUNCTIONAL_NORMS` (run by
    :func:`normalize`) and layers without parameters or buffers (activations, pooling, flatten,
    dropout); anything else returns None and runs through ``torch.func.functional_call``.
    Running such a chain directly with ``F.linear`` / ``F.conv2d`` on the fast weights computes
    exactly what ``functional_call`` computes, without its per-call re-parametrization of the
    module, which under ``vmap`` costs about 15% of a sinusoid MAML step. Cached per module.
    """
    if module in _CHAINS:
        return _CHAINS[module]

    def walk(m: nn.Module, prefix: str) -> list[_Layer] | None:
        if type(m) is nn.Sequential:
            layers: list[_Layer] = []
            for name, child in m.named_children():
                inner = walk(child, f"{prefix}{name}.")
                if inner is None:
                    return None
                layers += inner
            return layers
        if type(m) is nn.Linear:
            return [("linear", m, prefix)]
        if type(m) is nn.Conv2d and m.padding_mode == "zeros":
            return [("conv2d", m, prefix)]
        if _functional_norm(m):
            return [("norm", m, prefix)]
        if _stateless(m):
            return [("call", m, prefix)]
        return None

    chain = walk(module, "") if not has_tied_weights(module) else None
    _CHAINS[module] = chain
    return chain


def _has_hooks(module: nn.Module) -> bool:
    """Forward hooks (global, or on any submodule) would be skipped by the fast path."""
    hooks = nn.modules.module
    if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def _run_chain(
    chain: list[_Layer], weights: Mapping[str, Tensor], x: Tensor, fused: bool = False
) -> Tensor:
    """Run a plain chain on ``x`` with ``weights``. Normalization layers go through
    :func:`normalize` (plain operations, right under ``vmap``) or, with ``fused`` (never under
    ``vmap``), through torch's own kernels.

    With ``fused``, image batches ``(N, C, H, W)`` of a chain with convolutions run on the CPU in
    the channels-last memory format: the same values (up to float rounding) and derivatives,
    faster (:mod:`metagym.nets.layout`). The convolution weights are laid out channels-last too:
    an NCHW weight gets a channels-last gradient, and the adapted weight then mixes the two
    layouts, on which element-wise kernels run about 20x slower."""
    nhwc = fused and x.dim() == 4 and x.device.type == "cpu" and _has_conv2d(chain)
    if nhwc:
        x = channels_last(x)
    for kind, layer, prefix in chain:
        if kind == "linear":
            x = F.linear(x, weights[prefix + "weight"], weights.get(prefix + "bias"))
        elif kind == "conv2d":
            weight = weights[prefix + "weight"]
            x = F.conv2d(
                x,
                channels_last(weight) if nhwc else weight,
                weights.get(prefix + "bias"),
                layer.stride,
                layer.padding,
                layer.dilation,
                layer.groups,
            )
        elif kind == "norm" and fused:
            x = _fused_normalize(
                layer, x, weights.get(prefix + "weight"), weights.get(prefix + "bias")
            )
        elif kind == "norm":
            x = normalize(layer, x, weights.get(prefix + "weight"), weights.get(prefix + "bias"))
        else:
            x = layer(x)
    return x


def _has_conv2d(chain: list[_Layer]) -> bool:
    return any(kind == "conv2d" for kind, _, _ in chain)


def _fused_normalize(layer: nn.Module, x: Tensor, weight: Tensor | None, bias: Tensor | None):
    """``layer`` with ``weight`` and ``bias`` through torch's kernels (batch statistics for
    BatchNorm, as :func:`normalize`, with a layout-keeping second derivative:
    :mod:`metagym.nets.batch_norm`); right outside ``vmap`` only."""
    if isinstance(layer, nn.LayerNorm):
        return F.layer_norm(x, layer.normalized_shape, weight, bias, layer.eps)
    if isinstance(layer, nn.GroupNorm):
        return F.group_norm(x, layer.num_groups, weight, bias, layer.eps)
    return batch_norm(x, weight, bias, layer.eps)


class FunctionalModel:
    """``module`` run with the weights in ``params`` (a name -> tensor dict); call it like the module.

    ``model(x, params=weights)`` runs other weights (a dict, or a list in ``parameters()`` order),
    as higher's functional models do, so :func:`metagym.learners.maml.functional_predictor` and
    :func:`metagym.learners.maml.first_order_backward` work with it. ``fused`` runs a plain
    chain's normalization through torch's fused kernels, and its images channels-last on the
    CPU (faster; torch's normalization kernels give wrong second derivatives under ``vmap``, so
    only for models run task by task: the ``"loop"`` backend).
    """

    def __init__(
        self,
        module: nn.Module,
        params: Mapping[str, Tensor],
        buffers: Mapping[str, Tensor],
        *,
        fused: bool = False,
    ):
        self.module = module
        self.params = dict(params)
        self.buffers = dict(buffers)
        self.fused = fused

    def __call__(
        self,
        *args: Any,
        params: Sequence[Tensor] | Mapping[str, Tensor] | None = None,
        **kwargs: Any,
    ):
        if params is None:
            weights = self.params
        elif isinstance(params, Mapping):
            weights = dict(params)
        else:
            weights = dict(zip(self.params, params, strict=True))
        chain = plain_chain(self.module)
        if chain is not None and len(args) == 1 and not kwargs and not _has_hooks(self.module):
            return _run_chain(chain, weights, args[0], self.fused)
        return functional_call(
            self.module,
            (weights, self.buffers),
            args,
            kwargs,
            tie_weights=has_tied_weights(self.module),
            strict=False,
        )

    def parameters(self) -> Iterator[Tensor]:
        return iter(self.params.values())

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        return iter(self.params.items())


@dataclass
class InnerLoopResult:
    """What :func:`inner_loop` returns.

    Attributes:
        weights: the adapted fast weights, name -> tensor.
        support_losses: the (per-task) support losses before each inner step, detached; shape
            ``(steps, *loss_shape)``.
        snapshots: detached fast weights after ``s`` steps, for each requested ``s``.
    """

    weights: dict[str, Tensor]
    support_losses: Tensor
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)


def inner_loop(
    loss_of_weights: Callable[[dict[str, Tensor]], Tensor],
    params: Mapping[str, Tensor],
    *,
    steps: int,
    learning_rates: LearningRates | Sequence[LearningRates],
    meta_grad: bool = True,
    first_order: bool = False,
    snapshots: Collection[int] = (),
    on_step: Callable[[int, dict[str, Tensor]], None] | None = None,
) -> InnerLoopResult:
    """``steps`` SGD steps ``w <- w - lr * d loss / d w`` from ``params``.

    The same loop serves one task (``loss_of_weights`` returns a scalar) and a batch of tasks
    (weights carry a leading task dimension ``T`` and ``loss_of_weights`` returns the ``(T,)``
    per-task losses, computed under ``vmap``): tasks are independent, so the gradient of the
    summed losses with respect to the task-batched weights is each task's own gradient.
    (Measured: this is 20-30% faster than ``torch.func.grad`` inside ``vmap``, with the same
    meta-gradients; see docs/performance.md.)

    Args:
        loss_of_weights: maps fast weights (name -> tensor) to the support loss(es).
        params: initial weights, name -> tensor; meta-gradients flow back to them.
        steps: number of inner steps (>= 0).
        learning_rates: step size per parameter name (float, or a tensor that broadcasts against
            the weights; Meta-SGD's tensors get meta-gradients in second order); or a sequence of
            such mappings, one per step (MAML++'s per-step rates; steps past its end take its
            last entry).
        meta_grad: keep what meta-gradients need; False detaches everything (evaluation).
        first_order: the inner gradients and step sizes are constants: ``d fast / d params`` is
            the identity, so the meta-gradient is the query gradient at the adapted weights.
        snapshots: step counts after which to keep a detached copy of the fast weights.
        on_step: called as ``on_step(step, fast_weights)`` after each step, with the weights that
            carry the graph (MAML++'s multi-step loss reads the query loss there).
    """
    per_step = step_rates(learning_rates)
    second_order = meta_grad and not first_order
    fast = dict(params) if meta_grad else {n: w.detach() for n, w in params.items()}
    losses: list[Tensor] = []
    kept: dict[int, dict[str, Tensor]] = {}
    if 0 in snapshots:
        kept[0] = {n: w.detach() for n, w in fast.items()}
    for step in range(1, steps + 1):
        if second_order:
            weights = fast
        else:  # no graph through the inner gradient: differentiate at detached weights
            weights = {n: w.detach().requires_grad_() for n, w in fast.items()}
        with torch.enable_grad():
            loss = loss_of_weights(weights)
            grads = torch.autograd.grad(
                loss.sum(), list(weights.values()), create_graph=second_order, allow_unused=True
            )
        losses.append(loss.detach())
        rates = per_step[min(step, len(per_step)) - 1]
        if not second_order:
            rates = {n: _detached(r) for n, r in rates.items()}
        fast = {
            n: w if g is None else _sgd_step(w, g, rates[n])
            for (n, w), g in zip(fast.items(), grads, strict=True)
        }
        if step in snapshots:
            kept[step] = {n: w.detach() for n, w in fast.items()}
        if on_step is not None:
            on_step(step, fast)
    support_losses = torch.stack(losses) if losses else torch.zeros(0)
    return InnerLoopResult(fast, support_losses, kept)


def step_rates(learning_rates: LearningRates | Sequence[LearningRates]) -> list[LearningRates]:
    """``learning_rates`` as a list with one name -> rate mapping per step (one for all steps)."""
    if isinstance(learning_rates, Mapping):
        return [learning_rates]
    rates = list(learning_rates)
    if not rates or not all(isinstance(r, Mapping) for r in rates):
        raise ValueError(
            "learning_rates must be a name -> rate mapping or a non-empty list of them"
        )
    return rates


def _sgd_step(weight: Tensor, gradient: Tensor, rate: float | Tensor) -> Tensor:
    """``weight + (-rate) * gradient``: the same operations as higher's SGD (same rounding)."""
    return weight + (-rate) * gradient


def _detached(value: float | Tensor) -> float | Tensor:
    return value.detach() if isinstance(value, Tensor) else value


@dataclass
class BatchedAdaptation:
    """What :func:`adapt_batched` returns; every tensor has a leading task dimension ``T``.

    Attributes:
        weights: adapted fast weights, name -> ``(T, *param_shape)``.
        support_losses: support loss before each inner step, ``(T, steps)``, detached.
        query_losses: the query loss at the adapted weights, ``(T,)``; None without ``query_loss``.
        snapshots: detached fast weights (``(T, *param_shape)``) after ``s`` steps.
    """

    weights: dict[str, Tensor]
    support_losses: Tensor
    query_losses: Tensor | None = None
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)


def task_count(data: Any) -> int:
    """The size of the leading (task) dimension shared by every tensor of the pytree ``data``."""
    leaves = [x for x in tree_leaves(data) if isinstance(x, Tensor)]
    sizes = {x.shape[0] if x.dim() else None for x in leaves}
    if not leaves or len(sizes) != 1 or None in sizes:
        raise ValueError(
            "task-batched data must be tensors that all share a leading task dimension; got shapes "
            f"{[tuple(x.shape) for x in leaves]}"
        )
    return sizes.pop()


def batched_loss(
    module: nn.Module,
    loss: Callable[[FunctionalModel, Any], Tensor],
    buffers: Mapping[str, Tensor],
) -> Callable[[dict[str, Tensor], Any], Tensor]:
    """``loss`` of one task, vectorized: ``f(weights (T, ...), data (T, ...)) -> (T,)``."""

    def one_task(weights: dict[str, Tensor], task_data: Any) -> Tensor:
        return loss(FunctionalModel(module, weights, buffers), task_data)

    return vmap(one_task, in_dims=(0, 0), randomness="error")


def adapt_batched(
    module: nn.Module,
    support_loss: Callable[[FunctionalModel, Any], Tensor],
    data: Any,
    *,
    steps: int,
    learning_rates: LearningRates,
    meta_grad: bool = True,
    first_order: bool = False,
    query_loss: Callable[[FunctionalModel, Any], Tensor] | None = None,
    snapshots: Collection[int] = (),
) -> BatchedAdaptation:
    """Adapt ``module`` to a batch of tasks at once: :func:`inner_loop` with ``vmap`` over tasks.

    Args:
        module: the network; its parameters are the initial weights and receive meta-gradients
            when the returned losses are backpropagated. Refused if it has normalization layers.
        support_loss: ``support_loss(model, task_data) -> scalar`` for ONE task, where
            ``task_data`` is ``data`` with the task dimension removed (it runs under ``vmap``).
        data: a pytree (tensor, tuple, list or dict of tensors) whose tensors all have the task
            dimension ``T`` first, e.g. support ``(T, K, ...)`` and query ``(T, Q, ...)``.
        steps, learning_rates, meta_grad, first_order, snapshots: as in :func:`inner_loop`.
        query_loss: ``query_loss(adapted_model, task_data) -> scalar`` for one task; the mean of
            the returned ``query_losses`` is the MAML meta-loss.
    """
    check_batchable(module)
    tasks = task_count(data)
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    support = batched_loss(module, support_loss, buffers)
    result = inner_loop(
        lambda weights: support(weights, data),
        {n: p.expand(tasks, *p.shape) for n, p in params.items()},
        steps=steps,
        learning_rates=learning_rates,
        meta_grad=meta_grad,
        first_order=first_order,
        snapshots=snapshots,
    )
    query = None
    if query_loss is not None:
        query = batched_loss(module, query_loss, buffers)(result.weights, data)
    support_losses = result.support_losses.T if steps else torch.zeros(tasks, 0)
    return BatchedAdaptation(result.weights, support_losses, query, result.snapshots)
