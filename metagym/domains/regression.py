"""Few-shot regression: the learner recipes every regression distribution shares, and the
``regression`` domain, which runs them on your own distribution named by ``--tasks module:Class``.

Nets are MLPs sized from the distribution's ``input_shape`` and ``output_size``; the oracle is
told the task parameters named by its ``param_keys``. ``metagym.domains.sinusoid`` is the same
recipe book on MAML's sinusoid tasks, with its own profiles and example plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from metagym.domains import register
from metagym.domains.base import Context, Domain, LearnerRecipe
from metagym.domains.plugins import load_task_distribution
from metagym.domains.profile import Profile, json_object, setting
from metagym.learners import (
    ANIL,
    MAML,
    BlackBoxRegressor,
    Learner,
    Oracle,
    PretrainFineTune,
    Reptile,
    TransformerRegressor,
)
from metagym.learners.maml import MAML_BACKENDS
from metagym.nets import mlp
from metagym.plots.regression import redraw

LEARNERS = ("maml", "maml-fo", "meta-sgd", "blackbox", "pretrain", "oracle")
#: Learners beside the default ones (run them with --learners).
MORE_LEARNERS = ("reptile", "anil", "anil-fo", "transformer")
#: Relative cost of one meta-update (MAML's, second order, is the unit).
UPDATE_COST = {
    "maml": 1.0,
    "maml-fo": 0.7,
    "meta-sgd": 1.1,
    "blackbox": 0.5,
    "pretrain": 0.3,
    "oracle": 0.2,
    "reptile": 0.8,
    "anil": 0.6,
    "anil-fo": 0.5,
    "transformer": 0.8,
}


@dataclass(frozen=True)
class RegressionProfile(Profile):
    """Budgets and settings of the regression learners."""

    iterations: dict[str, int] = setting(
        factory=lambda: {
            "maml": 8000,
            "maml-fo": 3000,
            "meta-sgd": 2000,
            "blackbox": 4000,
            "pretrain": 2000,
            "oracle": 2000,
            "reptile": 8000,
            "anil": 8000,
            "anil-fo": 8000,
            "transformer": 4000,
        },
        low=1,
    )
    """meta-updates per learner"""
    default_learners: tuple[str, ...] = LEARNERS
    """learners run when --learners is not given"""
    meta_batch: int = setting(25, low=1, high=100_000)
    """tasks per meta-update"""
    inner_lr: float = setting(0.01, above=0.0, high=1e3)
    """MAML's inner SGD step size (Meta-SGD: the initial per-weight step size)"""
    meta_lr: float = setting(1e-3, above=0.0, high=10.0)
    """Adam step size of meta-training, every learner"""
    train_steps: int = setting(1, low=1, high=100)
    """MAML's inner steps in meta-training"""
    eval_steps: tuple[int, ...] = setting((0, 1, 2, 5, 10), low=0, high=1000)
    """adaptation steps evaluated for gradient learners"""
    backend: str = setting("auto", choices=MAML_BACKENDS)
    """MAML backend: auto (the fastest right one for the net and device), higher (the reference), loop (per task, fast CPU kernels) or vmap (task-batched)"""
    anil_steps: int = setting(3, low=1, high=100)
    """ANIL's inner steps in meta-training (1 step diverges on some tasks after 10 at test)"""
    reptile_steps: int = setting(10, low=1, high=1000)
    """Reptile's inner SGD steps per task in meta-training (on support and query together)"""
    reptile_inner_lr: float = setting(0.01, above=0.0, high=1e3)
    """Reptile's inner SGD step size"""
    reptile_outer_lr: float = setting(1.0, above=0.0, high=10.0)
    """Reptile's outer step size at the start (annealed linearly to 0)"""


REGRESSION_PROFILES = {
    # CPU, under 10 minutes on 2 cores with every learner.
    "quick": RegressionProfile(eval_tasks=600),
    # MAML's settings: 70,000 iterations, meta-batch 25, Adam 1e-3, inner lr 0.01, 1 inner step.
    "paper": RegressionProfile(
        iterations=dict.fromkeys(LEARNERS + MORE_LEARNERS, 70_000),
        checkpoint_every=5000,
        eval_tasks=600,
    ),
    # For tests: seconds.
    "tiny": RegressionProfile(
        iterations=dict.fromkeys(LEARNERS + MORE_LEARNERS, 20),
        meta_batch=4,
        eval_tasks=8,
        log_every=5,
        checkpoint_every=10,
    ),
}


def _sizes(context: Context) -> tuple[int, int]:
    """(input features, output features) of the nets, from the distribution's declarations."""
    distribution = context.distribution()
    shape, out = distribution.input_shape, distribution.output_size
    if not shape or not out:
        raise ValueError(
            f"{type(distribution).__name__} must declare input_shape (e.g. (1,)) and output_size "
            "(target features) for the regression learners' nets"
        )
    return math.prod(shape), int(out)


def _maml(first_order: bool = False, meta_sgd: bool = False):
    def build(context: Context) -> Learner:
        profile = context.profile
        x_dim, y_dim = _sizes(context)
        return MAML(
            mlp(x_dim, [40, 40], y_dim),
            inner_lr=profile.inner_lr,
            train_steps=profile.train_steps,
            # Meta-SGD learns its step sizes for train_steps steps; more can diverge.
            eval_steps=profile.train_steps if meta_sgd else max(profile.eval_steps),
            first_order=first_order,
            meta_sgd=meta_sgd,
            meta_lr=profile.meta_lr,
            backend=profile.backend,
        )

    return build


def _anil(first_order: bool):
    def build(context: Context) -> Learner:
        profile = context.profile
        x_dim, y_dim = _sizes(context)
        net = mlp(x_dim, [40, 40], y_dim)
        return ANIL(
            net[:-1],
            net[-1],
            inner_lr=profile.inner_lr,
            train_steps=profile.anil_steps,
            eval_steps=max(profile.eval_steps),
            first_order=first_order,
            meta_lr=profile.meta_lr,
            backend=profile.backend,
        )

    return build


def _reptile(context: Context) -> Learner:
    profile = context.profile
    x_dim, y_dim = _sizes(context)
    return Reptile(
        mlp(x_dim, [40, 40], y_dim),
        inner_lr=profile.reptile_inner_lr,
        train_steps=profile.reptile_steps,
        eval_steps=max(profile.eval_steps),
        outer_lr=profile.reptile_outer_lr,
        total_updates=profile.iterations["reptile"],
        backend=profile.backend,
    )


def _transformer(context: Context) -> Learner:
    x_dim, y_dim = _sizes(context)
    return TransformerRegressor(x_dim, y_dim, meta_lr=context.profile.meta_lr)


def _blackbox(context: Context) -> Learner:
    x_dim, y_dim = _sizes(context)
    return BlackBoxRegressor(x_dim, y_dim, hidden=64, meta_lr=context.profile.meta_lr)


def _pretrain(context: Context) -> Learner:
    x_dim, y_dim = _sizes(context)
    return PretrainFineTune(
        mlp(x_dim, [40, 40], y_dim),
        eval_steps=max(context.profile.eval_steps),
        meta_lr=context.profile.meta_lr,
        # Tuning on more val tasks than are evaluated per split would only cost time.
        tune_tasks=min(100, context.profile.eval_tasks),
    )


def _oracle(context: Context) -> Learner:
    x_dim, y_dim = _sizes(context)
    keys = context.distribution().param_keys
    return Oracle(keys, x_dim, y_dim, meta_lr=context.profile.meta_lr)


def _check_oracle(context: Context) -> None:
    if not context.distribution().param_keys:
        raise ValueError(
            "the oracle needs the distribution to declare param_keys (the entries of task.params "
            "it is told)"
        )


def regression_recipes() -> dict[str, LearnerRecipe]:
    """The learners of every regression domain, in the order of the tables."""

    def recipe(name: str, family: str, build, summary: str, **extra) -> LearnerRecipe:
        return LearnerRecipe(
            name=name,
            family=family,
            build=build,
            iterations=lambda c: c.profile.iterations[name],
            meta_batch=lambda c: c.profile.meta_batch,
            eval_steps=lambda c: c.profile.eval_steps,
            cost=lambda c: UPDATE_COST[name] * c.profile.iterations[name],
            summary=summary,
            **extra,
        )

    recipes = [
        recipe("maml", "gradient", _maml(), "MAML, second order (Finn et al. 2017)"),
        recipe("maml-fo", "gradient", _maml(first_order=True), "first-order MAML"),
        recipe("meta-sgd", "gradient", _maml(meta_sgd=True), "Meta-SGD: learned step sizes"),
        recipe("reptile", "gradient", _reptile, "Reptile (Nichol et al. 2018), first order"),
        recipe("anil", "gradient", _anil(False), "ANIL: only the head adapts (Raghu et al. 2020)"),
        recipe("anil-fo", "gradient", _anil(True), "first-order ANIL"),
        recipe(
            "blackbox", "black-box", _blackbox, "LSTM over the support pairs", sequence_model="lstm"
        ),
        recipe(
            "transformer",
            "black-box",
            _transformer,
            "transformer: queries attend to the support pairs",
            sequence_model="transformer",
        ),
        recipe("pretrain", "baseline", _pretrain, "one net on all tasks, fine-tuned by SGD"),
        recipe(
            "oracle",
            "baseline",
            _oracle,
            "told the task parameters (a lower bound on the error)",
            check=_check_oracle,
        ),
    ]
    return {r.name: r for r in recipes}


@dataclass(frozen=True)
class CustomRegressionProfile(RegressionProfile):
    """The regression profile with the distribution named on the command line."""

    tasks: str = ""
    """your task distribution, 'module:Class' (a metagym.tasks.TaskDistribution subclass)"""
    task_kwargs: str = "{}"
    """JSON constructor arguments of --tasks"""


def _custom_profiles() -> dict[str, CustomRegressionProfile]:
    return {
        name: CustomRegressionProfile(**{f: getattr(p, f) for f in p.__dataclass_fields__})
        for name, p in REGRESSION_PROFILES.items()
    }


def make_custom_distribution(context: Context, key: str):
    """The distribution named by ``--tasks`` (with ``--task-kwargs``)."""
    profile = context.profile
    if not profile.tasks:
        raise ValueError(f"metagym run {context.domain.name} needs --tasks module:Class")
    return load_task_distribution(profile.tasks, json_object("--task-kwargs", profile.task_kwargs))


def all_splits(context: Context) -> list[str]:
    return list(context.distribution().splits)


register(
    Domain(
        name="regression",
        summary="few-shot regression on your own distribution (--tasks module:Class)",
        profile_class=CustomRegressionProfile,
        profiles=_custom_profiles(),
        recipes=regression_recipes(),
        make_distribution=make_custom_distribution,
        default_learners=lambda p: p.default_learners,
        eval_splits=all_splits,
        redraw=redraw,
        title=lambda c: f"{c.profile.tasks} results",
        splits="those of the --tasks distribution",
    )
)
