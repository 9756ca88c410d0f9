"""MAML (Finn et al. 2017), first-order MAML and Meta-SGD (Li et al. 2017), through ``higher``
or, task-batched, through ``torch.func``.

This is the only module that imports ``higher``. :func:`adapted_model` is the one adaptation
routine of the library: supervised MAML, the fine-tuning baseline and MAML-RL all call it and
differ only in the support loss they pass. It has three backends: ``"higher"`` (the reference),
``"vmap"`` (:mod:`metagym.learners.maml_batched`: the same SGD steps written with
``torch.func``; :class:`MAML` with ``backend="vmap"`` adapts a whole meta-batch in one
vectorized call, about 10x faster for small nets) and ``"loop"`` (the same ``torch.func`` steps
task by task with torch's fused normalization kernels, images channels-last on the CPU and a
BatchNorm whose second derivatives keep that layout: there, conv4 meta-training steps 1.2-1.4x
higher's). :class:`MAML`'s default, ``"auto"``, picks one of them (:func:`choose_backend`).

Notes measured with torch 2.13 + higher 0.2.1 (see DESIGN.md):
- BatchNorm running statistics never reach the original model, so nets must use BatchNorm with
  ``track_running_stats=False`` (batch statistics in training and evaluation, as in the paper).
- ``track_higher_grads=False`` leaves no gradient on the initial weights, so first-order MAML
  is wired explicitly: the query-loss gradient at the adapted weights is applied to the initial ones.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import higher
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from metagym.learners.base import Learner, Predictor, check_positive
from metagym.learners.maml_batched import (
    FunctionalModel,
    LearningRates,
    adapt_batched,
    check_batchable,
    check_plain_sgd,
    inner_loop,
    task_count,
)
from metagym.tasks.base import Examples, SupervisedTask, stack_tasks

LossOfModel = Callable[[nn.Module], Tensor]

#: Backends of :func:`adapted_model` (one task at a time).
BACKENDS = ("higher", "vmap", "loop")
#: Backends of :class:`MAML`: those, ``"compiled"`` (the vmap backend's meta-gradient as one
#: ``torch.compile``d function: :mod:`metagym.learners.maml_compiled`) and ``"auto"``
#: (:func:`choose_backend`, the default).
MAML_BACKENDS = ("auto", *BACKENDS, "compiled")


def check_backend(backend: str, accepted: Sequence[str] = BACKENDS) -> str:
    if backend not in accepted:
        raise ValueError(f"unknown MAML backend {backend!r}; accepted: {', '.join(accepted)}")
    return backend


#: Tasks per vectorized call when :class:`MAML` evaluates on the vmap backend without a chunk_size.
EVAL_CHUNK = 100


def _task_chunks(data: Any, tasks: int, size: int | None) -> Iterator[Any]:
    """Slices of ``size`` tasks (all when None) of the task-batched pytree ``data``."""
    size = size or tasks
    for start in range(0, tasks, size):
        yield tree_map(lambda x, start=start: x[start : start + size], data)


#: How far (relative to the largest entry) the compiled backend's first meta-gradient may be from
#: the vmap backend's, per dtype: rounding differs by reassociation, a wrong kernel by far more.
COMPILED_TOLERANCE = {
    torch.float64: 1e-8,
    torch.float32: 1e-3,
    torch.float16: 5e-2,
    torch.bfloat16: 5e-2,
}
#: MAML learner -> {(train_steps, first_order): its compiled meta-gradient} (kept outside the
#: learner, which is deep-copied and pickled).
_COMPILED: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Callable]] = weakref.WeakKeyDictionary()

_CHOSEN: weakref.WeakKeyDictionary[nn.Module, dict[str, str]] = weakref.WeakKeyDictionary()


def choose_backend(model: nn.Module, device: torch.device | str = "cpu") -> str:
    """What ``backend="auto"`` runs for ``model`` on ``device``: the backend that computes right
    meta-gradients and was measured faster there (``make bench`` checks it, docs/performance.md):

    1. ``"higher"`` when the vmap backend refuses the net (:func:`check_batchable`: recurrent
       layers, BatchNorm with running statistics, normalization layers outside plain chains...);
    2. ``"vmap"`` on a GPU (measured 10-17x the per-task loop: sinusoid MLP, conv4);
    3. on the CPU, ``"loop"`` for nets with convolutions (conv4 on 2 cores: a per-task loop is
       about 2x vmap, whose batched convolutions lose to per-task kernels; the loop's
       meta-training steps are 1.2-1.4x higher's, its evaluation within noise to 1.15x) and
       ``"vmap"`` for the rest (MLPs: about 9x the loop).

    Cached per model and device type.
    """
    kind = torch.device(device).type
    cache = _CHOSEN.setdefault(model, {})
    if kind not in cache:
        try:
            check_batchable(model)
        except ValueError:
            cache[kind] = "higher"
        else:
            has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
            cache[kind] = "loop" if kind == "cpu" and has_conv else "vmap"
    return cache[kind]


@dataclass
class Adaptation:
    """What :func:`adapted_model` yields.

    Attributes:
        model: the functional (fast-weight) model after the inner steps; call it as a module.
        support_losses: the support loss before each inner step (float), ``steps`` values.
        snapshots: detached fast weights after ``s`` steps, for each requested ``s``.
    """

    model: nn.Module
    support_losses: list[float] = field(default_factory=list)
    snapshots: dict[int, list[Tensor]] = field(default_factory=dict)


def refuse_running_stats(model: nn.Module) -> None:
    """Raise if ``model`` has normalization layers that track running statistics (see module doc)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            raise ValueError(
                f"layer {name!r} ({type(module).__name__}) tracks running statistics, which higher "
                "never writes back to the model; build it with track_running_stats=False"
            )


def sgd_per_parameter(model: nn.Module, lr: float) -> torch.optim.SGD:
    """Plain SGD with one parameter group per parameter (needed for Meta-SGD's per-tensor lrs)."""
    return torch.optim.SGD([{"params": [p]} for p in model.parameters()], lr=lr)


@contextmanager
def adapted_model(
    model: nn.Module,
    inner_optimizer: torch.optim.Optimizer,
    support_loss: LossOfModel,
    *,
    steps: int,
    learning_rates: Sequence[Tensor] | None = None,
    meta_grad: bool = True,
    first_order: bool = False,
    snapshots: Collection[int] = (),
    backend: str = "higher",
    step_learning_rates: Sequence[Sequence[Tensor]] | None = None,
    initial_weights: Sequence[Tensor] | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> Iterator[Adaptation]:
    """Take ``steps`` differentiable SGD steps on ``support_loss`` from ``model``'s weights.

    Args:
        model: the initial network; its parameters receive meta-gradients.
        inner_optimizer: SGD over ``model``'s parameters (see :func:`sgd_per_parameter`).
        support_loss: maps a (functional) model to a scalar loss on the task's support data.
        steps: number of inner gradient steps (>= 0).
        learning_rates: Meta-SGD's learned rates, one tensor per parameter (shape of the parameter);
            None uses the optimizer's fixed learning rate.
        meta_grad: keep the graph needed for meta-gradients (False for evaluation).
        first_order: drop second-order terms (then call :func:`first_order_backward`).
        snapshots: step counts after which to keep a detached copy of the fast weights.
        backend: ``"higher"`` (default, the reference), ``"vmap"`` (the same steps through
            ``torch.func``, :func:`metagym.learners.maml_batched.inner_loop`, normalization
            written from plain operations so that it is right under ``vmap``; refuses the nets
            :func:`~metagym.learners.maml_batched.check_batchable` refuses) or ``"loop"`` (the
            same ``torch.func`` steps with torch's fused normalization kernels and channels-last
            images on the CPU; never under ``vmap``; any net). Both take plain SGD only; their
            ``model`` is a :class:`~metagym.learners.maml_batched.FunctionalModel`.
        step_learning_rates: one list like ``learning_rates`` per inner step (MAML++'s per-layer
            per-step rates); steps past its end take its last entry. Overrides ``learning_rates``.
        initial_weights: the fast weights to start from, one tensor per parameter of ``model``
            (ProtoMAML's head from the prototypes); None starts from ``model``'s parameters.
            Meta-gradients flow into whatever computed them.
        on_step: called as ``on_step(step, fast_model)`` after each inner step with the model
            that carries the graph (MAML++'s multi-step loss reads its query loss there).

    Yields:
        an :class:`Adaptation` whose ``model`` holds the adapted fast weights.
    """
    if initial_weights is not None:
        initial_weights = list(initial_weights)
        shapes = [tuple(p.shape) for p in model.parameters()]
        if [tuple(w.shape) for w in initial_weights] != shapes:
            raise ValueError(
                f"initial_weights must match the model's parameter shapes {shapes}, got "
                f"{[tuple(w.shape) for w in initial_weights]}"
            )
    if check_backend(backend) in ("vmap", "loop"):
        yield _adapted_model_func(
            model,
            inner_optimizer,
            support_loss,
            steps=steps,
            learning_rates=learning_rates,
            meta_grad=meta_grad,
            first_order=first_order,
            snapshots=snapshots,
            step_learning_rates=step_learning_rates,
            initial_weights=initial_weights,
            on_step=on_step,
            fused=backend == "loop",
        )
        return
    override = {"lr": list(learning_rates)} if learning_rates is not None else None
    step_overrides = (
        [{"lr": list(rates)} for rates in step_learning_rates] if step_learning_rates else None
    )
    track = meta_grad and not first_order
    # Equivalent to higher.innerloop_ctx(model, opt, copy_initial_weights=False, ...), but the
    # functional copy of the module is built once per model: building it costs more than a
    # sinusoid MAML step.
    fmodel = _functional_model(model)
    higher.patch.buffer_sync(model, fmodel)
    # Reset the fast-weight history (with track_higher_grads, higher appends to it), so the
    # cached copy holds no graph from an earlier task.
    fmodel._fast_params = []
    fmodel.track_higher_grads = True
    start = model.parameters() if initial_weights is None else initial_weights
    if not meta_grad:
        start = [w.detach().requires_grad_() for w in start]
    fmodel.update_params([w.clone() for w in start])
    fmodel.track_higher_grads = track
    diffopt = higher.optim.get_diff_optim(
        inner_optimizer,
        model.parameters(),
        fmodel=fmodel,
        override=override,
        track_higher_grads=track,
    )
    result = Adaptation(fmodel)
    if 0 in snapshots:
        result.snapshots[0] = [p.detach() for p in fmodel.parameters()]
    for step in range(1, steps + 1):
        loss = support_loss(fmodel)
        result.support_losses.append(float(loss.detach()))
        if step_overrides:
            diffopt.step(loss, override=step_overrides[min(step, len(step_overrides)) - 1])
        else:
            diffopt.step(loss)
        if step in snapshots:
            result.snapshots[step] = [p.detach() for p in fmodel.parameters()]
        if on_step is not None:
            on_step(step, fmodel)
    yield result


def learning_rates_by_name(
    model: nn.Module,
    inner_optimizer: torch.optim.Optimizer,
    learning_rates: Sequence[Tensor] | None = None,
) -> dict[str, float | Tensor]:
    """Each parameter's inner step size: Meta-SGD's tensor, else its optimizer group's ``lr``."""
    named = list(model.named_parameters())
    if learning_rates is not None:
        rates = list(learning_rates)
        if len(rates) != len(named):
            raise ValueError(f"{len(rates)} learning rates for {len(named)} parameters")
        return {n: r for (n, _), r in zip(named, rates, strict=True)}
    group_lr = {
        id(p): group["lr"] for group in inner_optimizer.param_groups for p in group["params"]
    }
    missing = [n for n, p in named if id(p) not in group_lr]
    if missing:
        raise ValueError(f"parameters {missing} are not in the inner optimizer")
    return {n: group_lr[id(p)] for n, p in named}


def _adapted_model_func(
    model: nn.Module,
    inner_optimizer: torch.optim.Optimizer,
    support_loss: LossOfModel,
    *,
    steps: int,
    learning_rates: Sequence[Tensor] | None,
    meta_grad: bool,
    first_order: bool,
    snapshots: Collection[int],
    step_learning_rates: Sequence[Sequence[Tensor]] | None = None,
    initial_weights: Sequence[Tensor] | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
    fused: bool = False,
) -> Adaptation:
    """:func:`adapted_model`'s ``"vmap"`` backend for one task (no task dimension to map over),
    or with ``fused`` its ``"loop"`` backend (torch's fused kernels, any module)."""
    if not fused:
        check_batchable(model)
    check_plain_sgd(inner_optimizer)
    buffers = dict(model.named_buffers())
    params = dict(model.named_parameters())
    if initial_weights is not None:
        # Clones, as higher takes them: the inner gradient is then the partial derivative with
        # respect to each fast weight, also where a computed initial weight depends on a
        # parameter that is itself a fast weight (ProtoMAML's head and body).
        params = dict(zip(params, (w.clone() for w in initial_weights), strict=True))
    rates = (
        [learning_rates_by_name(model, inner_optimizer, r) for r in step_learning_rates]
        if step_learning_rates
        else learning_rates_by_name(model, inner_optimizer, learning_rates)
    )
    result = inner_loop(
        lambda weights: support_loss(FunctionalModel(model, weights, buffers, fused=fused)),
        params,
        steps=steps,
        learning_rates=rates,
        meta_grad=meta_grad,
        first_order=first_order,
        snapshots=snapshots,
        on_step=(
            None
            if on_step is None
            else lambda step, weights: on_step(
                step, FunctionalModel(model, weights, buffers, fused=fused)
            )
        ),
    )
    return Adaptation(
        FunctionalModel(model, result.weights, buffers, fused=fused),
        [float(loss) for loss in result.support_losses],
        {s: list(weights.values()) for s, weights in result.snapshots.items()},
    )


_FUNCTIONAL_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _functional_model(model: nn.Module) -> nn.Module:
    """higher's stateless copy of ``model``, cached (its fast weights are reset on every use)."""
    fmodel = _FUNCTIONAL_MODELS.get(model)
    if fmodel is None:
        fmodel = higher.patch.make_functional(model)
        _FUNCTIONAL_MODELS[model] = fmodel
    return fmodel


def first_order_gradients(adapted: nn.Module, query_loss: Tensor) -> list[Tensor | None]:
    """d(query_loss)/d(adapted fast weights), detached: first-order MAML's meta-gradient."""
    grads = torch.autograd.grad(query_loss, list(adapted.parameters()), allow_unused=True)
    return [None if g is None else g.detach() for g in grads]


def apply_first_order(
    model: nn.Module,
    gradients: Sequence[Tensor | None],
    initial_weights: Sequence[Tensor] | None = None,
) -> None:
    """Treat ``gradients`` as the gradient of the initial fast weights: add them to ``model``'s
    ``.grad``, or, for computed ``initial_weights``, backpropagate them into what computed those."""
    if initial_weights is None:
        for p, g in zip(model.parameters(), gradients, strict=True):
            if g is not None:
                p.grad = g.clone() if p.grad is None else p.grad + g
        return
    pairs = [(w, g) for w, g in zip(initial_weights, gradients, strict=True) if g is not None]
    pairs = [(w, g) for w, g in pairs if w.requires_grad]
    if pairs:
        torch.autograd.backward([w for w, _ in pairs], [g for _, g in pairs])


def _add_grads(
    total: Sequence[Tensor | None], more: Sequence[Tensor | None]
) -> list[Tensor | None]:
    return [a if b is None else b if a is None else a + b for a, b in zip(total, more, strict=True)]


def first_order_backward(model: nn.Module, adapted: nn.Module, query_loss: Tensor) -> None:
    """First-order MAML: add d(query_loss)/d(adapted weights) to the initial weights' ``.grad``."""
    apply_first_order(model, first_order_gradients(adapted, query_loss))


def functional_predictor(fmodel: nn.Module, weights: list[Tensor]) -> Predictor:
    """A predictor that runs ``fmodel`` with fixed fast ``weights``, without gradients."""

    def predict(x: Tensor) -> Tensor:
        with torch.no_grad():
            return fmodel(x, params=weights)

    return predict


class MAML(Learner):
    """MAML for supervised tasks: meta-learn an initialization adapted by SGD on the support set.

    Args:
        model: the network; inputs ``(n, *input_shape)`` -> outputs ``(n, *output_shape)``.
        loss_fn: ``loss_fn(prediction, target) -> scalar`` (MSE for regression, cross-entropy).
        inner_lr: inner-loop SGD step size (initial value for Meta-SGD).
        train_steps: inner steps during meta-training.
        eval_steps: default inner steps when adapting at test time.
        first_order: first-order MAML (no second derivatives).
        meta_sgd: learn one step size per weight (Meta-SGD).
        meta_lr: Adam step size of the meta-optimizer.
        backend: ``"auto"`` (default: :func:`choose_backend` picks, for the net and the device
            it is on when it runs, the fastest right one), ``"higher"`` (the reference: a loop
            over tasks), ``"loop"`` (a loop over tasks through ``torch.func`` with fused
            kernels and channels-last images: on the CPU, conv4 meta-training 1.2-1.4x
            higher's speed) or ``"vmap"`` (the
            whole meta-batch in one ``torch.func.vmap`` call;
            about 10x faster for small nets such as the sinusoid MLP, same meta-gradients;
            BatchNorm with batch statistics, LayerNorm and GroupNorm run through a functional
            normalization; refuses running statistics, InstanceNorm and recurrent layers; tasks
            of a meta-batch must have equal sizes). All give the same meta-gradients and the
            same checkpoints; ``config()`` records the one that ran as ``backend_used``.
        chunk_size: with the vmap backend, tasks per ``vmap`` call: a meta-batch is split into
            chunks whose meta-gradients are accumulated (the same meta-gradients, memory bounded
            by the chunk's graph); evaluation adapts chunks of this many tasks (None: the whole
            meta-batch in training, :data:`EVAL_CHUNK` tasks in evaluation).
    """

    #: ``backend_used`` depends on the device, and ``backend`` does not change the weights: a
    #: checkpoint loads whatever backend saved it (not a tuned value; nothing to restore).
    tuned = ("backend", "backend_used")

    uses_steps = True
    #: Whether ``backend="compiled"`` computes this learner's meta-gradient (plain MAML and
    #: Meta-SGD; the variants change the adaptation or the meta-loss).
    compilable = True
    #: Whether tasks can be adapted together (the vmap backend). Learners that adapt every task
    #: from weights of its own or with per-step losses (ProtoMAML, MAML++) run task by task:
    #: ``"auto"`` resolves to the loop or higher for them.
    batched_adaptation = True

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.mse_loss,
        *,
        inner_lr: float = 0.01,
        train_steps: int = 1,
        eval_steps: int = 10,
        first_order: bool = False,
        meta_sgd: bool = False,
        meta_lr: float = 1e-3,
        backend: str = "auto",
        chunk_size: int | None = None,
    ):
        super().__init__()
        check_backend(backend, MAML_BACKENDS)
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
        self.chunk_size = chunk_size
        check_positive("inner_lr", inner_lr)
        check_positive("meta_lr", meta_lr)
        for label, value in (("train_steps", train_steps), ("eval_steps", eval_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{label} must be an int >= 0, got {value!r}")
        refuse_running_stats(model)
        if backend == "vmap" and not self.batched_adaptation:
            raise ValueError(
                f"{type(self).__name__} adapts task by task, not on backend='vmap'; use "
                "backend='higher', 'loop' or 'auto'"
            )
        if backend in ("vmap", "compiled"):
            check_batchable(model)
        if backend == "compiled" and not self.compilable:
            raise ValueError(
                f"{type(self).__name__} has no compiled meta-gradient; use backend='auto' "
                "(or another backend it accepts)"
            )
        if backend == "compiled" and chunk_size is not None:
            raise ValueError("backend='compiled' adapts the whole meta-batch: no chunk_size")
        self.backend = backend
        self.model = model
        self.loss_fn = loss_fn
        self.inner_lr = inner_lr
        self.train_steps = train_steps
        self.eval_steps = eval_steps
        self.first_order = first_order
        self.meta_sgd = meta_sgd
        self.name = ("meta-sgd" if meta_sgd else "maml") + ("-fo" if first_order else "")
        self.learning_rates = (
            nn.ParameterList(nn.Parameter(torch.full_like(p, inner_lr)) for p in model.parameters())
            if meta_sgd
            else None
        )
        self.inner_optimizer = (
            sgd_per_parameter(model, inner_lr)
            if meta_sgd
            else torch.optim.SGD(model.parameters(), inner_lr)
        )
        self.optimizer = torch.optim.Adam(self.parameters(), lr=meta_lr)
        self.meta_lr = meta_lr
        #: Meta-updates taken so far.
        self.updates = 0

    def config(self) -> dict:
        return {
            "name": self.name,
            "inner_lr": self.inner_lr,
            "train_steps": self.train_steps,
            "eval_steps": self.eval_steps,
            "first_order": self.first_order,
            "meta_sgd": self.meta_sgd,
            "meta_lr": self.meta_lr,
            "backend": self.backend_setting,
            "backend_used": self.backend,
        }

    @property
    def backend(self) -> str:
        """The backend that runs: ``backend_setting`` with ``"auto"`` resolved for the net and
        the device its weights are on now (:func:`choose_backend`)."""
        if self.backend_setting != "auto":
            return self.backend_setting
        chosen = choose_backend(self.model, self.device)
        return "higher" if chosen == "vmap" and not self.batched_adaptation else chosen

    @backend.setter
    def backend(self, value: str) -> None:
        self.backend_setting = check_backend(value, MAML_BACKENDS)

    # -- losses (MAML-RL overrides these two) ----------------------------------------------------
    def support_loss(self, model: nn.Module, task: SupervisedTask) -> Tensor:
        return self.loss_fn(model(task.support.x), task.support.y)

    def query_loss(self, model: nn.Module, task: SupervisedTask) -> Tensor:
        return self.loss_fn(model(task.query.x), task.query.y)

    # -- task batches for the vmap backend (other task types override these two) ---------------
    def batch_tasks(self, tasks: Sequence[SupervisedTask]) -> Any:
        """Stack ``tasks`` into a pytree of tensors with a leading task dimension."""
        try:
            support, query = stack_tasks(tasks)
        except RuntimeError as error:
            sizes = sorted({(len(t.support), len(t.query)) for t in tasks})
            raise ValueError(
                f"backend='vmap' stacks a meta-batch, so its tasks need equal support and query "
                f"sizes; got (support, query) sizes {sizes}"
            ) from error
        return (support.x, support.y, query.x, query.y)

    def unbatch_task(self, data: Any) -> SupervisedTask:
        """One task from one slice of :meth:`batch_tasks`' output (called under ``vmap``)."""
        support_x, support_y, query_x, query_y = data
        return SupervisedTask(Examples(support_x, support_y), Examples(query_x, query_y))

    # -- adaptation ------------------------------------------------------------------------------
    def inner_learning_rates(self) -> LearningRates:
        """Each parameter's inner step size (Meta-SGD's tensors, else the inner SGD's lr)."""
        return learning_rates_by_name(self.model, self.inner_optimizer, self.learning_rates)

    # -- hooks of the MAML variants (ANIL, ProtoMAML, MAML++) --------------------------------
    def featurize(self, task: SupervisedTask) -> SupervisedTask:
        """The task as the adapted net sees it (ANIL: the body's features); MAML: unchanged."""
        return task

    def predictor(self, fmodel: nn.Module, weights: list[Tensor]) -> Predictor:
        """A predictor for raw inputs from the adapted net's fast ``weights``."""
        return functional_predictor(fmodel, weights)

    def initial_weights(self, task: SupervisedTask, meta_grad: bool) -> list[Tensor] | None:
        """The fast weights adaptation starts from (ProtoMAML: a head made of prototypes);
        None: the meta-learned initialization."""
        return None

    def step_learning_rates(self) -> list[list[Tensor]] | None:
        """Per-step inner step sizes (MAML++'s LSLR); None: one rate for every step."""
        return None

    def query_step_weights(self) -> list[float] | None:
        """Weight of the query loss after each training inner step in the meta-loss (MAML++'s
        multi-step loss); None: the query loss after the last step only."""
        return None

    def first_order_now(self) -> bool:
        """Whether this meta-update drops second-order terms (MAML++ anneals it)."""
        return self.first_order

    def meta_only_parameters(self) -> list[Tensor]:
        """Meta-learned weights outside the adapted net (ANIL's body)."""
        return []

    def _adapted(
        self,
        task,
        *,
        steps: int,
        meta_grad: bool,
        snapshots: Collection[int] = (),
        on_step: Callable[[int, nn.Module], None] | None = None,
        initial: list[Tensor] | None = None,
    ):
        """:func:`adapted_model` on ``task``'s support loss with this learner's settings, from
        ``initial`` fast weights (None: :meth:`initial_weights`)."""
        return adapted_model(
            self.model,
            self.inner_optimizer,
            lambda m: self.support_loss(m, task),
            steps=steps,
            learning_rates=self.learning_rates,
            step_learning_rates=self.step_learning_rates(),
            initial_weights=self.initial_weights(task, meta_grad) if initial is None else initial,
            meta_grad=meta_grad,
            first_order=self.first_order_now(),
            snapshots=snapshots,
            backend="vmap" if self.backend == "compiled" else self.backend,
            on_step=on_step,
        )

    def meta_train_step(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        self.before_update()
        self.optimizer.zero_grad()
        metrics = self.compute_meta_gradients(tasks)
        self.optimizer.step()
        self.updates += 1
        return metrics

    def before_update(self) -> None:
        """Set the schedules (step sizes, ...) of the meta-update number ``self.updates``."""

    # ``updates`` drives the variants' schedules: keep it in checkpoints.
    def checkpoint_state(self) -> dict:
        return {**super().checkpoint_state(), "updates": self.updates}

    def load_checkpoint_state(self, state: dict) -> None:
        super().load_checkpoint_state(state)
        self.updates = int(state.get("updates", 0))

    def compute_meta_gradients(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        """Add the meta-gradient of the mean query loss over ``tasks`` to the weights' ``.grad``
        (and Meta-SGD's step sizes'), without an optimizer step; return the step's metrics."""
        if not tasks:
            raise ValueError("a meta-batch needs at least one task")
        if self.backend == "compiled":
            return self._meta_gradients_compiled(tasks)
        if self.backend == "vmap":
            return self._meta_gradients_batched(tasks)
        query_total, support_total = 0.0, 0.0
        for task in tasks:
            query_loss, support_loss = self._task_meta_gradient(self.featurize(task), len(tasks))
            query_total += query_loss
            support_total += support_loss
        metrics = {"losses/query_after_adaptation": query_total}
        if self.train_steps > 0:
            metrics["losses/support_before_adaptation"] = support_total
        return metrics

    def _task_meta_gradient(self, task: SupervisedTask, n_tasks: int) -> tuple[float, float]:
        """Backpropagate one task's share of the meta-loss (the loop backend); return its query
        loss after the last step and its support loss before the first, both over ``n_tasks``.

        The meta-loss is the query loss after the last inner step or, with
        :meth:`query_step_weights`, the weighted sum of the query losses after every step. In
        first order each step's query gradient is taken at that step's fast weights and applied
        to the initial ones (or backpropagated into what computed them, ProtoMAML's head).
        """
        weights = self.query_step_weights()
        first_order = self.first_order_now()
        extra = self.meta_only_parameters()
        initial = self.initial_weights(task, meta_grad=True)
        second_order_loss: list[Tensor] = []
        fast_grads: list[Tensor | None] | None = None
        extra_grads: list[Tensor | None] = [None] * len(extra)

        def add(loss: Tensor, fmodel: nn.Module) -> None:
            nonlocal fast_grads
            if not first_order:
                second_order_loss.append(loss)
                return
            fast = list(fmodel.parameters())
            grads = torch.autograd.grad(loss, fast + extra, allow_unused=True, retain_graph=True)
            grads = [None if g is None else g.detach() for g in grads]
            step, rest = grads[: len(fast)], grads[len(fast) :]
            fast_grads = step if fast_grads is None else _add_grads(fast_grads, step)
            extra_grads[:] = _add_grads(extra_grads, rest)

        def on_step(step: int, fmodel: nn.Module) -> None:
            if step < self.train_steps and weights[step - 1]:
                add(weights[step - 1] * self.query_loss(fmodel, task) / n_tasks, fmodel)

        with self._adapted(
            task,
            steps=self.train_steps,
            meta_grad=True,
            on_step=on_step if weights else None,
            initial=initial,
        ) as adaptation:
            final = self.query_loss(adaptation.model, task) / n_tasks
            add(final * (weights[-1] if weights else 1.0), adaptation.model)
        if first_order:
            apply_first_order(self.model, fast_grads, initial)
            for p, g in zip(extra, extra_grads, strict=True):
                if g is not None:
                    p.grad = g.clone() if p.grad is None else p.grad + g
        else:
            torch.stack(second_order_loss).sum().backward()
        support = adaptation.support_losses[0] / n_tasks if adaptation.support_losses else 0.0
        return float(final.detach()), support

    def _meta_gradients_batched(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        """The vmap backend's meta-gradient: chunks of ``chunk_size`` tasks (all at once when
        None), each adapted in one vectorized call and backpropagated at once, its share of the
        mean query loss accumulated in ``.grad``."""
        if not tasks:
            raise ValueError("a meta-batch needs at least one task")
        data = self.batch_tasks([self.featurize(t) for t in tasks])
        query_total, support_total = 0.0, 0.0
        for chunk in _task_chunks(data, len(tasks), self.chunk_size):
            result = adapt_batched(
                self.model,
                lambda model, data: self.support_loss(model, self.unbatch_task(data)),
                chunk,
                steps=self.train_steps,
                learning_rates=self.inner_learning_rates(),
                first_order=self.first_order,
                query_loss=lambda model, data: self.query_loss(model, self.unbatch_task(data)),
            )
            query_loss = result.query_losses.sum() / len(tasks)
            # First order: the fast weights are the initial ones minus constants, so this
            # backward gives the query gradient at the adapted weights (first_order_backward's).
            query_loss.backward()
            query_total += float(query_loss.detach())
            if self.train_steps > 0:
                support_total += float(result.support_losses[:, 0].sum()) / len(tasks)
        metrics = {"losses/query_after_adaptation": query_total}
        if self.train_steps > 0:
            metrics["losses/support_before_adaptation"] = support_total
        return metrics

    def _meta_gradients_compiled(self, tasks: Sequence[SupervisedTask]) -> dict[str, float]:
        """The compiled backend's meta-gradient (:mod:`metagym.learners.maml_compiled`),
        accumulated in ``.grad`` as a backward pass would."""
        from metagym.learners.maml_compiled import compiled_meta_gradient

        key = (self.train_steps, self.first_order)
        compiled = _COMPILED.setdefault(self, {})
        first_call = key not in compiled
        if first_call:
            compiled[key] = compiled_meta_gradient(self)
        data = self.batch_tasks([self.featurize(t) for t in tasks])
        named = dict(self.model.named_parameters())
        params = {n: p.detach() for n, p in named.items()}
        rates = {
            n: r.detach()
            if isinstance(r, Tensor)
            else torch.tensor(r, dtype=named[n].dtype, device=named[n].device)
            for n, r in self.inner_learning_rates().items()
        }
        grads, rate_grads, query, support = compiled[key](params, rates, data)
        targets = [(named[n], g) for n, g in grads.items()]
        if rate_grads is not None:
            by_name = dict(zip(named, self.learning_rates, strict=True))
            targets += [(by_name[n], g) for n, g in rate_grads.items()]
        if first_call:
            self._check_compiled(tasks, targets)
        for p, g in targets:
            p.grad = g.clone() if p.grad is None else p.grad + g
        metrics = {"losses/query_after_adaptation": float(query.mean())}
        if self.train_steps > 0:
            metrics["losses/support_before_adaptation"] = float(support.mean())
        return metrics

    def _check_compiled(
        self, tasks: Sequence[SupervisedTask], targets: list[tuple[nn.Parameter, Tensor]]
    ) -> None:
        """Raise unless the compiled meta-gradient ``targets`` (parameter, its gradient) equals
        the vmap backend's on the same ``tasks`` (to :data:`COMPILED_TOLERANCE` relative; the
        ``.grad`` fields are left as they were). Run once per compiled function: torch's
        inductor cache can serve code built for another CPU code path (measured with torch
        2.13: graphs cached under the default AVX512 path and loaded under
        ``ATEN_CPU_CAPABILITY=avx2`` gave meta-gradients 368x off, then NaN)."""
        params = [p for p, _ in targets]
        saved = [p.grad for p in params]
        for p in params:
            p.grad = None
        try:
            self._meta_gradients_batched(tasks)
            reference = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        finally:
            for p, g in zip(params, saved, strict=True):
                p.grad = g
        if not all(bool(torch.isfinite(r).all()) for r in reference):
            return  # diverged on both paths: the training loop reports it
        scale = max(float(r.abs().max()) for r in reference) or 1.0
        error = max(
            float((g - r).abs().max()) if bool(torch.isfinite(g).all()) else math.inf
            for (_, g), r in zip(targets, reference, strict=True)
        )
        tolerance = COMPILED_TOLERANCE.get(params[0].dtype, 1e-3)
        if not error / scale <= tolerance:
            how = (
                f"differs from the vmap backend's by {error / scale:.3g} relative (tolerance "
                f"{tolerance:g})"
                if math.isfinite(error)
                else "is not finite where the vmap backend's is"
            )
            raise RuntimeError(
                f"backend='compiled': the compiled meta-gradient {how}; torch.compile's cache "
                "may hold code built for another CPU code path: empty it (or point "
                "TORCHINDUCTOR_CACHE_DIR to an empty folder), or use backend='vmap'"
            )

    def adapt_many(self, tasks: Sequence[Any], steps: Sequence[int]) -> list[dict[int, Predictor]]:
        """:meth:`adapt_steps` for each of ``tasks``; on the vmap backend, chunks of
        ``chunk_size`` (default :data:`EVAL_CHUNK`) supervised tasks of equal sizes are adapted
        in one vectorized call each (the same predictions as task by task, up to rounding)."""
        steps = sorted(set(steps))
        if any(s < 0 for s in steps):
            raise ValueError(f"adaptation steps must be >= 0, got {steps}")
        tasks = list(tasks)
        if not self._batchable_evaluation(tasks):
            return super().adapt_many(tasks, steps)
        with torch.no_grad():
            data = self.batch_tasks([self.featurize(t) for t in tasks])
        names = [n for n, _ in self.model.named_parameters()]
        fmodel = FunctionalModel(
            self.model, dict(self.model.named_parameters()), dict(self.model.named_buffers())
        )
        predictors: list[dict[int, Predictor]] = []
        for chunk in _task_chunks(data, len(tasks), self.chunk_size or EVAL_CHUNK):
            result = adapt_batched(
                self.model,
                lambda model, data: self.support_loss(model, self.unbatch_task(data)),
                chunk,
                steps=max(steps),
                learning_rates=self.inner_learning_rates(),
                meta_grad=False,
                snapshots=steps,
            )
            for i in range(task_count(chunk)):
                predictors.append(
                    {
                        s: self.predictor(fmodel, [result.snapshots[s][n][i] for n in names])
                        for s in steps
                    }
                )
        return predictors

    def _batchable_evaluation(self, tasks: list[Any]) -> bool:
        """Whether :meth:`adapt_many` may adapt ``tasks`` with :func:`adapt_batched`: the vmap
        backend, supervised tasks of equal sizes, and an adaptation that is plain SGD from the
        meta-learned weights (not ProtoMAML's computed head nor MAML++'s per-step rates)."""
        if len(tasks) < 2 or self.backend not in ("vmap", "compiled"):
            return False
        if not all(isinstance(t, SupervisedTask) for t in tasks):
            return False
        sizes = {(len(t.support), len(t.query)) for t in tasks}
        if len(sizes) != 1 or self.step_learning_rates() is not None:
            return False
        return self.initial_weights(tasks[0], meta_grad=False) is None

    def adapt_steps(self, task, steps) -> dict[int, Predictor]:
        steps = sorted(set(steps))
        if any(s < 0 for s in steps):
            raise ValueError(f"adaptation steps must be >= 0, got {steps}")
        with torch.no_grad():
            task = self.featurize(task)
        with (
            torch.enable_grad(),
            self._adapted(task, steps=max(steps), meta_grad=False, snapshots=steps) as adaptation,
        ):
            fmodel = adaptation.model
        return {s: self.predictor(fmodel, adaptation.snapshots[s]) for s in steps}

    def adapt(self, task, steps: int | None = None) -> Predictor:
        steps = self.eval_steps if steps is None else steps
        return self.adapt_steps(task, [steps])[steps]
