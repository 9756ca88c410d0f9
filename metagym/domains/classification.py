"""Few-shot image classification: the learner recipes every classification distribution shares,
and the ``classification`` domain, which runs them on your own distribution (``--tasks
module:Class``). Nets are conv4 (``hidden`` channels) sized from the distribution's
``input_shape`` ``(C, H, W)`` and ``output_size`` (ways).

``metagym.domains.omniglot`` is the same recipe book on Omniglot, with the MAML step sweep and
example predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.nn import functional as F

from metagym.domains import register
from metagym.domains.base import Context, Domain, LearnerRecipe
from metagym.domains.profile import Profile, setting
from metagym.domains.regression import make_custom_distribution
from metagym.learners import (
    ANIL,
    MAML,
    Learner,
    MAMLPlusPlus,
    ProtoMAML,
    Reptile,
    TransformerClassifier,
)
from metagym.learners.blackbox_classifier import BlackBoxClassifier
from metagym.learners.maml import MAML_BACKENDS
from metagym.learners.matching import MatchingNetwork
from metagym.learners.pretrain_classifier import PretrainClassifier
from metagym.learners.protonet import PrototypicalNetwork
from metagym.learners.soft_nn import SoftNearestNeighbour
from metagym.nets.conv4 import conv4, embedding_size
from metagym.plots.classification import redraw
from metagym.seeding import make_generator

LEARNERS = (
    "protonet",
    "matching",
    "matching-fce",
    "soft-nn",
    "maml",
    "maml-fo",
    "blackbox",
    "pretrain",
    "anil",
    "reptile",
    "protomaml",
    "maml++",
    "transformer",
)
EPISODIC = ("protonet", "matching", "matching-fce", "soft-nn")
#: Rough relative cost of a learner's whole run, to start the slowest first.
COST = {
    "maml": 10,
    "protonet": 10,
    "blackbox": 9,
    "maml-fo": 6,
    "pretrain": 5,
    "matching-fce": 4,
    "matching": 3,
    "soft-nn": 2,
    "maml++": 12,
    "protomaml": 8,
    "reptile": 8,
    "transformer": 8,
    "anil": 4,
}


@dataclass(frozen=True)
class ClassificationProfile(Profile):
    """Budgets of the classification learners (iterations and meta-batches per learner)."""

    iterations: dict[str, int] = setting(
        factory=lambda: {
            "protonet": 3000,
            "matching": 1200,
            "matching-fce": 1200,
            "soft-nn": 500,
            "maml": 800,
            "maml-fo": 800,
            "blackbox": 1500,
            "pretrain": 1000,
            "anil": 1500,
            "reptile": 1500,
            "protomaml": 800,
            "maml++": 1500,
            "transformer": 1500,
        },
        low=1,
    )
    """meta-updates per learner"""
    meta_batch: dict[str, int] = setting(
        factory=lambda: {
            "protonet": 1,
            "matching": 1,
            "matching-fce": 1,
            "soft-nn": 1,
            "blackbox": 8,
            "pretrain": 4,
            "reptile": 5,
            "transformer": 8,
        },
        low=1,
        high=100_000,
    )
    """tasks per meta-update, per learner (MAML's follows the paper, see maml_meta_batch_scale)"""
    default_learners: tuple[str, ...] = (
        "maml",
        "protonet",
        "matching-fce",
        "blackbox",
        "soft-nn",
        "pretrain",
    )
    """learners run when --learners is not given"""
    episode_ways: int = setting(20, low=0, high=10_000)
    """ways of the non-parametric learners' training episodes (0 or fewer than the test ways: the test ways)"""
    queries: int = setting(1, low=1, high=10_000)
    """query examples per class of evaluation tasks"""
    train_queries: int = setting(5, low=1, high=10_000)
    """query examples per class of training tasks"""
    maml_meta_batch_scale: float = setting(0.25, above=0.0, high=100.0)
    """MAML meta-batch = the paper's (32 for 5-way, 16 for 20-way) times this"""
    meta_lr: float = setting(1e-3, above=0.0, high=10.0)
    """Adam step size of meta-training"""
    blackbox_meta_lr: float = setting(3e-3, above=0.0, high=10.0)
    """the black-box learner's Adam step size (1e-3 leaves it at chance for longer)"""
    lr_halving: int = setting(0, low=0)
    """halve the non-parametric learners' step size every this many episodes (0: never)"""
    hidden: int = setting(64, low=1, high=4096)
    """channels of conv4"""
    backend: str = setting("auto", choices=MAML_BACKENDS)
    """MAML backend: auto (the fastest right one for the net and device), higher (the reference), loop (per task, fast CPU kernels) or vmap (task-batched)"""
    reptile_inner_lr: float = setting(0.1, above=0.0, high=1e3)
    """Reptile's inner SGD step size"""
    reptile_steps: int = setting(5, low=1, high=1000)
    """Reptile's inner steps per task in meta-training (on support and query together)"""
    reptile_eval_steps: int = setting(10, low=1, high=1000)
    """Reptile's inner steps at test time"""
    reptile_train_batches: int = setting(1, low=1, high=1000)
    """minibatches (class-balanced) Reptile's training examples are split into, one per inner step in turn (1: every step on all)"""
    protomaml_inner_lr: float = setting(0.1, above=0.0, high=1e3)
    """ProtoMAML's inner SGD step size"""
    mamlpp_steps: int = setting(2, low=1, high=100)
    """MAML++'s inner steps (training and test; the paper takes 5)"""
    log_every: int = setting(50, low=1)
    """meta-iterations between rows of metrics.csv"""
    checkpoint_every: int = setting(500, low=1)
    """meta-iterations between checkpoints (one is always written at the end)"""


#: The ``tiny`` profile of the classification domains, for tests: seconds.
TINY: dict[str, Any] = {
    "iterations": dict.fromkeys(LEARNERS, 3),
    "meta_batch": dict.fromkeys(LEARNERS, 2),
    "default_learners": LEARNERS,
    "episode_ways": 0,
    "queries": 1,
    "train_queries": 1,
    "eval_tasks": 4,
    "maml_meta_batch_scale": 1 / 16,
    "hidden": 8,
    "log_every": 1,
    "checkpoint_every": 2,
}


def maml_settings(ways: int) -> dict[str, Any]:
    """MAML's Omniglot settings (Finn et al. 2017, section 5.2)."""
    if ways <= 5:
        return {"inner_lr": 0.4, "train_steps": 1, "eval_steps": 3, "meta_batch": 32}
    return {"inner_lr": 0.1, "train_steps": 5, "eval_steps": 5, "meta_batch": 16}


def _image(context: Context) -> tuple[int, tuple[int, int], int]:
    """(channels, (height, width), ways) from the distribution's declarations."""
    distribution = context.distribution()
    shape, ways = distribution.input_shape, distribution.output_size
    if not shape or len(shape) != 3 or not ways:
        raise ValueError(
            f"{type(distribution).__name__} must declare input_shape (channels, height, width) and "
            "output_size (ways) for the classification learners' nets"
        )
    return int(shape[0]), (int(shape[1]), int(shape[2])), int(ways)


def _embedding(context: Context, **kwargs: Any):
    channels, size, _ = _image(context)
    return conv4(channels, context.profile.hidden, image_size=size, **kwargs)


def _dim(context: Context) -> int:
    return embedding_size(context.profile.hidden, _image(context)[1])


def _episodic(kind):
    def build(context: Context) -> Learner:
        profile = context.profile
        return kind(_embedding(context), meta_lr=profile.meta_lr, lr_halving=profile.lr_halving)

    return build


def _matching(fce: bool):
    def build(context: Context) -> Learner:
        profile = context.profile
        return MatchingNetwork(
            _embedding(context),
            _dim(context),
            fce=fce,
            meta_lr=profile.meta_lr,
            lr_halving=profile.lr_halving,
        )

    return build


def _maml(first_order: bool):
    def build(context: Context) -> Learner:
        channels, size, ways = _image(context)
        settings = maml_settings(ways)
        return MAML(
            conv4(
                channels,
                context.profile.hidden,
                out_features=ways,
                track_running_stats=False,
                image_size=size,
            ),
            F.cross_entropy,
            inner_lr=settings["inner_lr"],
            train_steps=settings["train_steps"],
            eval_steps=settings["eval_steps"],
            first_order=first_order,
            meta_lr=context.profile.meta_lr,
            backend=context.profile.backend,
        )

    return build


def _headed(context: Context) -> nn.Sequential:
    """conv4 with a linear head to the ways: images -> logits (batch statistics, for MAML)."""
    channels, size, ways = _image(context)
    return conv4(
        channels,
        context.profile.hidden,
        out_features=ways,
        track_running_stats=False,
        image_size=size,
    )


def _anil(context: Context) -> Learner:
    settings = maml_settings(_ways(context))
    net = _headed(context)
    return ANIL(
        net[:-1],
        net[-1],
        F.cross_entropy,
        inner_lr=settings["inner_lr"],
        train_steps=settings["train_steps"],
        eval_steps=settings["eval_steps"],
        meta_lr=context.profile.meta_lr,
        backend="vmap",
    )


def _reptile(context: Context) -> Learner:
    profile = context.profile
    return Reptile(
        _headed(context),
        F.cross_entropy,
        inner_lr=profile.reptile_inner_lr,
        train_steps=profile.reptile_steps,
        eval_steps=profile.reptile_eval_steps,
        train_batches=profile.reptile_train_batches,
        total_updates=profile.iterations["reptile"],
        backend=profile.backend,
    )


def _protomaml(context: Context) -> Learner:
    settings = maml_settings(_ways(context))
    return ProtoMAML(
        _headed(context),
        inner_lr=context.profile.protomaml_inner_lr,
        train_steps=settings["train_steps"],
        eval_steps=settings["eval_steps"],
        meta_lr=context.profile.meta_lr,
    )


def _maml_plus_plus(context: Context) -> Learner:
    profile = context.profile
    return MAMLPlusPlus(
        _headed(context),
        F.cross_entropy,
        total_updates=profile.iterations["maml++"],
        inner_lr=0.1,
        train_steps=profile.mamlpp_steps,
        eval_steps=profile.mamlpp_steps,
        meta_lr=profile.meta_lr,
    )


def _transformer(context: Context) -> Learner:
    return TransformerClassifier(
        _embedding(context), _dim(context), _ways(context), meta_lr=context.profile.blackbox_meta_lr
    )


def _blackbox(context: Context) -> Learner:
    ways = _image(context)[2]
    return BlackBoxClassifier(
        _embedding(context), _dim(context), ways, meta_lr=context.profile.blackbox_meta_lr
    )


def _pretrain(context: Context) -> Learner:
    distribution = context.distribution()
    return PretrainClassifier(
        _embedding(context),
        _dim(context),
        distribution.num_classes("train"),
        _image(context)[2],
        meta_lr=context.profile.meta_lr,
    )


def _check_pretrain(context: Context) -> None:
    if not callable(getattr(context.distribution(), "num_classes", None)):
        raise ValueError(
            "pretrain needs the distribution to have num_classes('train') and tasks whose params "
            "carry 'split' and 'class_ids' (global class ids)"
        )


def _check_reptile(context: Context) -> None:
    """Reptile splits each training task's examples into ``reptile_train_batches`` minibatches:
    more minibatches than examples would give empty ones (an error deep in training)."""
    batches = context.profile.reptile_train_batches
    if batches == 1:
        return
    recipe = context.domain.recipes["reptile"]
    distribution = context.distribution(recipe.distribution_key(context))
    task = distribution.sample(1, "train", make_generator(0))[0]
    examples = len(task.support.y) + len(task.query.y)
    if batches > examples:
        raise ValueError(
            f"--reptile-train-batches {batches} is more than the {examples} examples of a "
            f"training task (support and queries): at most {examples}"
        )


def _ways(context: Context) -> int:
    return _image(context)[2]


def _maml_meta_batch(context: Context) -> int:
    scale = context.profile.maml_meta_batch_scale
    return max(1, round(maml_settings(_ways(context))["meta_batch"] * scale))


def _episode_split(context: Context) -> str:
    episode_ways = context.profile.episode_ways
    if (
        episode_ways > _ways(context)
        and f"train-{episode_ways}way" in context.distribution().splits
    ):
        return f"train-{episode_ways}way"
    return "train"


def classification_recipes(extras: tuple[str, ...] = ()) -> dict[str, LearnerRecipe]:
    """The learners of every classification domain; ``extras`` are computed for every learner
    (and ``"sweep"`` for the MAML learners) when the domain has them."""

    def recipe(name: str, family: str, build, summary: str, **fields) -> LearnerRecipe:
        fields.setdefault("meta_batch", lambda c: c.profile.meta_batch[name])
        fields.setdefault("extras", extras)
        return LearnerRecipe(
            name=name,
            family=family,
            build=build,
            iterations=lambda c: c.profile.iterations[name],
            cost=COST[name],
            summary=summary,
            **fields,
        )

    def steps_fields(steps) -> dict[str, Any]:
        """Fields of a gradient learner evaluated after ``steps(context)`` steps."""
        return {
            "meta_batch": _maml_meta_batch,
            "eval_steps": lambda c: tuple(sorted({0, 1, steps(c)})),
            "report_steps": steps,
            "extras": (*extras, "sweep") if extras else (),
        }

    maml_fields = steps_fields(lambda c: maml_settings(_ways(c))["eval_steps"])
    recipes = [
        recipe(
            "protonet",
            "non-parametric",
            _episodic(PrototypicalNetwork),
            "prototypical networks (Snell et al. 2017)",
            train_split=_episode_split,
        ),
        recipe(
            "matching",
            "non-parametric",
            _matching(fce=False),
            "matching networks without full-context embeddings",
            train_split=_episode_split,
        ),
        recipe(
            "matching-fce",
            "non-parametric",
            _matching(fce=True),
            "matching networks with full-context embeddings (Vinyals et al. 2016)",
            train_split=_episode_split,
        ),
        recipe(
            "soft-nn",
            "non-parametric",
            _episodic(SoftNearestNeighbour),
            "soft nearest neighbour over the support embeddings",
            train_split=_episode_split,
        ),
        recipe("maml", "gradient", _maml(False), "MAML, second order, conv4", **maml_fields),
        recipe("maml-fo", "gradient", _maml(True), "first-order MAML, conv4", **maml_fields),
        recipe(
            "anil",
            "gradient",
            _anil,
            "ANIL: only the head adapts (Raghu et al. 2020)",
            **maml_fields,
        ),
        recipe(
            "reptile",
            "gradient",
            _reptile,
            "Reptile (Nichol et al. 2018), first order",
            check=_check_reptile,
            **{
                **steps_fields(lambda c: c.profile.reptile_eval_steps),
                "meta_batch": lambda c: c.profile.meta_batch["reptile"],
            },
        ),
        recipe(
            "protomaml",
            "gradient",
            _protomaml,
            "ProtoMAML: head from the prototypes, then MAML steps (Triantafillou et al. 2020)",
            **maml_fields,
        ),
        recipe(
            "maml++",
            "gradient",
            _maml_plus_plus,
            "MAML++: per-step learned step sizes, multi-step loss, annealing (Antoniou et al. 2019)",
            **steps_fields(lambda c: c.profile.mamlpp_steps),
        ),
        recipe(
            "blackbox",
            "black-box",
            _blackbox,
            "LSTM over (embedding, label) pairs with attention reads",
            sequence_model="lstm",
        ),
        recipe(
            "transformer",
            "black-box",
            _transformer,
            "transformer over (embedding, label) tokens; queries attend to the support set",
            sequence_model="transformer",
        ),
        recipe(
            "pretrain",
            "baseline",
            _pretrain,
            "classifier on all training classes, a new head fine-tuned per task",
            eval_steps=(0, 1, 3, 10),
            report_steps=10,
            check=_check_pretrain,
        ),
    ]
    return {r.name: r for r in recipes}


def eval_splits(context: Context) -> list[str]:
    """Every split but the training and validation ones."""
    splits = context.distribution().splits
    return [s for s in splits if not s.startswith("train") and s != "val"]


@dataclass(frozen=True)
class CustomClassificationProfile(ClassificationProfile):
    """The classification profile with the distribution named on the command line."""

    tasks: str = ""
    """your task distribution, 'module:Class' (a metagym.tasks.TaskDistribution subclass)"""
    task_kwargs: str = "{}"
    """JSON constructor arguments of --tasks"""


register(
    Domain(
        name="classification",
        summary="few-shot classification on your own image distribution (--tasks module:Class)",
        profile_class=CustomClassificationProfile,
        profiles={
            "quick": CustomClassificationProfile(),
            "tiny": CustomClassificationProfile(**TINY),
        },
        recipes=classification_recipes(),
        make_distribution=make_custom_distribution,
        eval_splits=eval_splits,
        redraw=redraw,
        default_learners=lambda p: p.default_learners,
        title=lambda c: f"{c.profile.tasks} results",
        splits="those of the --tasks distribution",
    )
)
