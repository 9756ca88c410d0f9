"""Few-shot Omniglot classification in and out of distribution: the classification recipes on
:class:`metagym.tasks.OmniglotTasks`, one variant (subfolder ``<W>way-<K>shot``) per ways/shots
combination, plus MAML's accuracy after 0..10 steps (``steps_sweep.json``) and one test task
with every learner's predictions (``examples.json``).

    metagym run omniglot --profile quick --data-root ../shared/data/omniglot --out runs/omniglot
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from metagym.domains import register
from metagym.domains.base import Context, Domain, LearnerRecipe
from metagym.domains.classification import (
    EPISODIC,
    LEARNERS,
    TINY,
    ClassificationProfile,
    classification_recipes,
    eval_splits,
)
from metagym.domains.profile import setting
from metagym.evaluate import evaluate
from metagym.learners.base import Learner
from metagym.plots.classification import redraw
from metagym.results import write_json_atomic, write_results
from metagym.seeding import eval_task_stream, split_generator
from metagym.tasks.omniglot import (
    DEFAULT_SCALE_LEVELS,
    DEFAULT_SHEAR_LEVELS,
    PROTOCOLS,
    OmniglotTasks,
)

SWEEP_STEPS = tuple(range(11))
#: Reptile's meta-updates in the quick profile.
REPTILE_QUICK = 3000


@dataclass(frozen=True)
class OmniglotProfile(ClassificationProfile):
    """The classification profile with Omniglot's task settings."""

    ways: tuple[int, ...] = setting((5,), low=2, high=1623)
    """ways N of the tasks (several: one run per combination)"""
    shots: tuple[int, ...] = setting((1,), low=1, high=19)
    """shots K of the tasks (several: one run per combination)"""
    protocol: str = setting("standard", choices=PROTOCOLS)
    """character split: standard (1,200 / 423 shuffled characters) or alphabets (train on the background alphabets)"""
    sweep_tasks: int = setting(200, low=1, high=100_000)
    """tasks per split of the MAML step sweep (0..10 steps)"""
    shear_levels: tuple[float, ...] = setting(DEFAULT_SHEAR_LEVELS, above=0.0, high=2.0)
    """shear levels of the ood-shear-* splits"""
    scale_levels: tuple[float, ...] = setting(DEFAULT_SCALE_LEVELS, above=0.0, high=1.0)
    """shrink factors of the ood-scale-* splits"""
    reptile_train_queries: int = setting(0, low=0, high=19)
    """query drawings per class of Reptile's training tasks (0: train_queries; the paper trains on 10 shots)"""


PROFILES = {
    # 2 CPU cores, all learners, 5-way 1-shot: about 16 minutes with --jobs 2 (docs/results/omniglot.md).
    # Reptile trains on 10 drawings per class, 5 inner steps on class-balanced minibatches of 10
    # (the paper's train-shots 10, inner batch 10), so its updates cost a third of 5 full-batch
    # steps on support and query together and it takes REPTILE_QUICK of them.
    "quick": OmniglotProfile(
        iterations={**ClassificationProfile().iterations, "reptile": REPTILE_QUICK},
        reptile_train_queries=9,
        reptile_train_batches=5,
    ),
    # The papers' settings, for a GPU: Prototypical Networks train 60-way episodes with 5 queries
    # and halve Adam's 1e-3 every 2,000 episodes; MAML 60,000 meta-updates (batch 32 / 16).
    "paper": OmniglotProfile(
        iterations={
            "protonet": 20_000,
            "matching": 20_000,
            "matching-fce": 20_000,
            "soft-nn": 20_000,
            "maml": 60_000,
            "maml-fo": 60_000,
            "blackbox": 40_000,
            "pretrain": 20_000,
            "anil": 60_000,
            "reptile": 100_000,
            "protomaml": 60_000,
            "maml++": 60_000,
            "transformer": 40_000,
        },
        meta_batch={
            "protonet": 1,
            "matching": 1,
            "matching-fce": 1,
            "soft-nn": 1,
            "blackbox": 32,
            "pretrain": 8,
            "reptile": 5,
            "transformer": 32,
        },
        default_learners=LEARNERS,
        episode_ways=60,
        queries=5,
        train_queries=5,
        sweep_tasks=600,
        maml_meta_batch_scale=1.0,
        lr_halving=2000,
        mamlpp_steps=5,
        reptile_train_queries=9,
        reptile_train_batches=5,
        log_every=100,
        checkpoint_every=2000,
    ),
    # 20-way 1-shot for every learner on 2 CPU cores, about the quick profile's time: budgets
    # cut to match the 4x larger tasks, 200 tasks per split, one shear and one scale level.
    "quick-20way": OmniglotProfile(
        ways=(20,),
        iterations={
            "protonet": 1000,
            "matching": 400,
            "matching-fce": 400,
            "soft-nn": 200,
            "maml": 150,
            "maml-fo": 150,
            "blackbox": 600,
            "pretrain": 500,
            "anil": 400,
            "reptile": 600,
            "protomaml": 150,
            "maml++": 80,
            "transformer": 600,
        },
        meta_batch={
            **dict.fromkeys(EPISODIC, 1),
            "blackbox": 4,
            "pretrain": 4,
            "reptile": 5,
            "transformer": 4,
        },
        default_learners=LEARNERS,
        eval_tasks=200,
        sweep_tasks=50,
        shear_levels=(0.4,),
        scale_levels=(0.6,),
        checkpoint_every=100,
        # Reptile's minibatched steps as in quick, on 5 drawings per class (100 images of 20-way tasks).
        reptile_train_queries=4,
        reptile_train_batches=5,
    ),
    # For tests: seconds.
    "tiny": OmniglotProfile(
        **TINY,
        sweep_tasks=2,
        shear_levels=(0.5,),
        scale_levels=(0.5,),
        reptile_train_queries=3,
        reptile_train_batches=2,
    ),
}


def variants(profile: OmniglotProfile) -> list[tuple[str, dict[str, Any]]]:
    """One run per ways/shots combination, in ``<W>way-<K>shot``; a value given twice is
    refused (it would run once, and make the definition differ from the same run without it)."""
    for flag, values in (("--ways", profile.ways), ("--shots", profile.shots)):
        if len(set(values)) != len(values):
            raise ValueError(f"{flag} {','.join(map(str, values))} names a value twice")
    return [
        (f"{ways}way-{shots}shot", {"ways": ways, "shots": shots})
        for ways in profile.ways
        for shots in profile.shots
    ]


def check_data_root(context: Context) -> None:
    """A ``--data-root`` that does not exist is a typo: refuse it rather than create folders."""
    root = context.data_root
    if root is not None and not Path(root).is_dir():
        raise ValueError(
            f"--data-root {root} does not exist; give the folder holding the Omniglot npz files "
            "(or an omniglot/ subfolder of them), or create it to download the data there"
        )


def make_distribution(context: Context, key: str) -> OmniglotTasks:
    profile, ways = context.profile, context.variant["ways"]
    episode_ways = (profile.episode_ways,) if profile.episode_ways > ways else ()
    return OmniglotTasks(
        ways,
        context.variant["shots"],
        profile.queries,
        train_queries=profile.train_queries,
        train_ways=episode_ways,
        protocol=profile.protocol,
        shear_levels=profile.shear_levels,
        scale_levels=profile.scale_levels,
        data_root=context.data_root,
        device=context.device,
    )


def sweep_splits(distribution: OmniglotTasks) -> list[str]:
    """``test`` and the strongest shift of each kind."""
    strongest: dict[str, tuple[float, str]] = {}
    for split, (kind, level) in distribution.shifts.items():
        far = level if kind == "shear" else -level
        if kind not in strongest or far > strongest[kind][0]:
            strongest[kind] = (far, split)
    return ["test", *(s for _, s in strongest.values())]


def _example(context: Context):
    distribution = context.distribution()
    return distribution.sample(1, "test", split_generator(context.seed, "example"))[0]


def learner_extras(context: Context, recipe: LearnerRecipe, learner: Learner) -> dict[str, Any]:
    """The step sweep (MAML learners) and the learner's predictions on the example task."""
    distribution = context.distribution()
    extras: dict[str, Any] = {}
    if "sweep" in recipe.extras:
        rows, records = [], []
        for split in sweep_splits(distribution):
            tasks = eval_task_stream(distribution, split, context.seed, context.profile.sweep_tasks)
            rows += evaluate(
                learner, distribution, split, tasks, SWEEP_STEPS, progress=False, records=records
            )
        extras["sweep"] = [{**row, "family": recipe.family} for row in rows]
        extras["scores"] = {"sweep": records}
    example = _example(context).to(learner.device)
    learner.eval()
    extras["predictions"] = learner.adapt(example)(example.query.x).argmax(-1).tolist()
    learner.train()
    return extras


def write_extras(context: Context, out_dir: Path, results: dict, extras: dict) -> None:
    """``steps_sweep.json`` and ``examples.json``."""
    sweep = [row for extra in extras.values() for row in extra.get("sweep", [])]
    if sweep:
        write_results(
            out_dir / "steps_sweep.json",
            sweep,
            config={"steps": list(SWEEP_STEPS)},
            seed=context.seed,
        )
    task = _example(context)
    example = {
        "split": "test",
        "params": task.params,
        "support_x": task.support.x[:, 0].tolist(),
        "support_y": task.support.y.tolist(),
        "query_x": task.query.x[:, 0].tolist(),
        "query_y": task.query.y.tolist(),
        "predictions": {n: e["predictions"] for n, e in extras.items() if "predictions" in e},
    }
    write_json_atomic(example, out_dir / "examples.json")


def reptile_train_profile(context: Context) -> dict[str, int]:
    """Reptile's training tasks: ``reptile_train_queries`` query drawings per class when set
    (the paper trains on 10 shots), else the shared tasks."""
    queries = context.profile.reptile_train_queries
    return {"train_queries": queries} if queries else {}


def recipes() -> dict[str, LearnerRecipe]:
    """The classification recipes, Reptile's training tasks by :func:`reptile_train_profile`."""
    book = classification_recipes(extras=("predictions",))
    book["reptile"] = replace(book["reptile"], train_profile=reptile_train_profile)
    return book


DOMAIN = register(
    Domain(
        name="omniglot",
        summary="few-shot Omniglot classification (N-way K-shot), shear and scale shifts",
        profile_class=OmniglotProfile,
        profiles=PROFILES,
        recipes=recipes(),
        make_distribution=make_distribution,
        eval_splits=eval_splits,
        redraw=redraw,
        default_learners=lambda p: p.default_learners,
        variants=variants,
        check=check_data_root,
        after_learner=learner_extras,
        after_run=write_extras,
        title=lambda c: f"Omniglot {c.variant['ways']}-way {c.variant['shots']}-shot results",
        splits="train, val, test, test-alphabets, ood-shear-<level>, ood-scale-<level>",
        shift_fields={"shear": "shear_levels", "scale": "scale_levels"},
    )
)
