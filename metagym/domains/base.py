"""A domain is a registered recipe book: its profiles, its task distributions and one recipe
per learner. The runner (:mod:`metagym.experiment`) loops over recipes; nothing branches on a
learner's name.

Recipe fields that depend on the run (the budget, the evaluated steps, ...) are either plain
values or functions of the run's :class:`Context`; :meth:`LearnerRecipe.get` resolves them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metagym.domains.profile import Profile
from metagym.learners.base import Learner
from metagym.seeding import eval_task_stream
from metagym.tasks.base import TaskDistribution

#: The families of learners: the lecture's three, plus the baselines that keep them honest.
FAMILIES = ("gradient", "black-box", "non-parametric", "baseline")


@dataclass
class Context:
    """What a recipe is built from: the domain, the profile, the variant (e.g. ``{"ways": 5,
    "shots": 1}``), the requested learners and the run's options. Task distributions are built
    on first use (``distribution(key)``) and shared by the learners of one process."""

    domain: Domain
    profile: Profile
    variant: dict[str, Any]
    learners: tuple[str, ...]
    seed: int = 0
    device: str = "cpu"
    data_root: str | None = None
    _distributions: dict[str, TaskDistribution] = field(default_factory=dict, repr=False)
    _eval_tasks: dict[tuple[str, str], list] = field(default_factory=dict, repr=False)

    def distribution(self, key: str = "tasks") -> TaskDistribution:
        """The domain's task distribution ``key`` (``"tasks"``; RL also has ``"trials"``).

        A key ``"<key>|<json>"`` (:meth:`LearnerRecipe.distribution_key`) is distribution
        ``<key>`` built from the profile with the JSON object's fields changed."""
        if key not in self._distributions:
            base, _, changes = key.partition("|")
            context = self
            if changes:
                context = dataclasses.replace(
                    self,
                    profile=self.profile.replace(**json.loads(changes)),
                    _distributions={},
                    _eval_tasks={},
                )
            self._distributions[key] = self.domain.make_distribution(context, base)
        return self._distributions[key]

    def eval_tasks(self, key: str, split: str) -> list:
        """The evaluation tasks of ``split`` of distribution ``key``: the first
        ``profile.eval_tasks`` of the split's stream (:func:`metagym.seeding.eval_task_stream`),
        the same tasks for every learner of a run."""
        if (key, split) not in self._eval_tasks:
            self._eval_tasks[(key, split)] = eval_task_stream(
                self.distribution(key), split, self.seed, self.profile.eval_tasks
            )
        return self._eval_tasks[(key, split)]

    def recipe(self, name: str) -> LearnerRecipe:
        return self.domain.recipes[name]

    def close(self) -> None:
        for distribution in self._distributions.values():
            close = getattr(distribution, "close", None)
            if close is not None:
                close()
        self._distributions.clear()
        self._eval_tasks.clear()


#: A recipe field: a value, or a function of the run's context giving it.
Resolvable = Any


def resolve(value: Resolvable, context: Context) -> Any:
    return value(context) if callable(value) else value


@dataclass(frozen=True)
class LearnerRecipe:
    """How one learner of a domain is built, meta-trained, evaluated and reported.

    Attributes:
        name: the learner's name in results and on the command line.
        family: one of :data:`FAMILIES`.
        build: ``build(context) -> Learner`` (weights are initialized under the run's seed).
        iterations: meta-updates (0: nothing to meta-train).
        meta_batch: tasks per meta-update.
        train_split: the split meta-batches are drawn from.
        eval_steps: step counts evaluated on every split (ignored by learners whose
            ``uses_steps`` is False).
        report_steps: the step count shown when one number per split is wanted (None: the
            stepless row, or the largest step count).
        cost: rough relative cost, to start the slowest learners first.
        distribution: the key of the context's task distribution it trains and is scored on.
        train_profile: profile fields changed for the learner's own task distribution
            (``{field: value}``; Reptile's training tasks with more queries); its evaluation
            splits must not depend on them.
        extras: names of the domain's per-learner extras computed after evaluation (e.g. the
            step sweep, example predictions).
        row_fields: fields added to each of its results rows.
        requires: what the learner asks of the whole run, read by the domain (RL: learners
            scored on whole trials make the run score its trial learners that way).
        check: ``check(context)`` raises a ValueError when the learner cannot run in this
            context (called before any work).
        summary: one line for ``metagym list``.
        sequence_model: a black-box learner's sequence model (``"lstm"``, ``"gru"`` or
            ``"transformer"``): the report's claim 6 compares attention with recurrence.
    """

    name: str
    family: str
    build: Callable[[Context], Learner]
    iterations: Resolvable
    meta_batch: Resolvable = 1
    train_split: Resolvable = "train"
    eval_steps: Resolvable = (0,)
    report_steps: Resolvable = None
    cost: float = 1.0
    distribution: Resolvable = "tasks"
    train_profile: Resolvable = field(default_factory=dict)
    extras: tuple[str, ...] = ()
    row_fields: Resolvable = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    check: Callable[[Context], None] | None = None
    summary: str = ""
    sequence_model: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: family must be one of {FAMILIES}, got {self.family!r}")

    def get(self, attribute: str, context: Context) -> Any:
        """The value of ``attribute`` in ``context``."""
        return resolve(getattr(self, attribute), context)

    def distribution_key(self, context: Context) -> str:
        """The key of :meth:`Context.distribution` for this learner: its ``distribution``,
        with its ``train_profile`` changes when it has any."""
        key, changes = self.get("distribution", context), self.get("train_profile", context)
        return f"{key}|{json.dumps(changes, sort_keys=True)}" if changes else key


def one_variant(profile: Profile) -> list[tuple[str, dict[str, Any]]]:
    """The default: a run is one variant, written straight into the output folder."""
    return [("", {})]


def no_extras(context: Context, recipe: LearnerRecipe, learner: Learner) -> dict[str, Any]:
    return {}


def nothing_after(context: Context, out_dir: Path, results: dict, extras: dict) -> None:
    return None


@dataclass(frozen=True)
class Domain:
    """A registered domain (see :mod:`metagym.domains`).

    Attributes:
        name: its name on the command line (``metagym run NAME``).
        summary: one line for ``metagym list``.
        profile_class: the :class:`Profile` subclass whose fields are the flags.
        profiles: named presets (``tiny`` for tests, ``quick`` for a CPU, ``paper``).
        recipes: learner name -> :class:`LearnerRecipe`, in the order of the tables.
        make_distribution: ``make_distribution(context, key) -> TaskDistribution``.
        eval_splits: ``eval_splits(context) -> splits`` evaluated for every learner.
        default_learners: the learners run when ``--learners`` is not given.
        variants: ``variants(profile) -> [(subfolder, variant dict)]``: the runs one command
            makes (Omniglot: one per ways/shots combination).
        check: ``check(context)`` raises a ValueError for settings that cannot run.
        after_learner: ``after_learner(context, recipe, learner) -> dict`` of JSON extras,
            computed in the learner's worker after evaluation (names in ``recipe.extras``).
        after_run: ``after_run(context, out_dir, results, extras)`` writes the domain's extra
            files (``extras``: learner -> what ``after_learner`` returned).
        redraw: ``redraw(out_dir) -> [paths]`` draws the domain's plots from the files only.
        title: ``title(context) -> str`` of results.md.
        default_profile: the profile used when ``--profile`` is not given.
        splits: one line naming the splits, for ``metagym list``.
        shift_fields: kind of graded shift -> the profile field holding its levels (Omniglot's
            ``{"scale": "scale_levels", ...}``), so ``metagym evaluate --shift`` can add levels.
        derived: ``derived(context) -> dict`` of settings that define the results beyond the
            profile, computed from the context (RL: how a trial is scored, which depends on
            the run's learners); part of ``run.json``, so ``--resume`` refuses a change.
    """

    name: str
    summary: str
    profile_class: type[Profile]
    profiles: Mapping[str, Profile]
    recipes: Mapping[str, LearnerRecipe]
    make_distribution: Callable[[Context, str], TaskDistribution]
    eval_splits: Callable[[Context], Sequence[str]]
    redraw: Callable[[Path], list[Path]]
    default_learners: Resolvable = None
    variants: Callable[[Profile], list[tuple[str, dict[str, Any]]]] = one_variant
    check: Callable[[Context], None] | None = None
    after_learner: Callable[[Context, LearnerRecipe, Learner], dict[str, Any]] = no_extras
    after_run: Callable[[Context, Path, dict, dict], None] = nothing_after
    title: Callable[[Context], str] | None = None
    default_profile: str = "quick"
    splits: str = "those of the distribution"
    shift_fields: Mapping[str, str] = field(default_factory=dict)
    derived: Callable[[Context], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        for name, recipe in self.recipes.items():
            if name != recipe.name:
                raise ValueError(f"{self.name}: recipe {recipe.name!r} registered as {name!r}")
        if self.default_profile not in self.profiles:
            raise ValueError(f"{self.name}: no profile {self.default_profile!r}")

    def learners_of(self, profile: Profile) -> list[str]:
        """The default learners for ``profile``."""
        if self.default_learners is None:
            return list(self.recipes)
        value = self.default_learners
        return list(value(profile) if callable(value) else value)

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ValueError(
                f"unknown profile {name!r} for {self.name}; accepted: {', '.join(self.profiles)}"
            )
        return self.profiles[name]

    def context(
        self,
        profile: Profile | str | None = None,
        learners: Sequence[str] = (),
        variant: Mapping[str, Any] | None = None,
        *,
        distributions: Mapping[str, TaskDistribution] | None = None,
        **options: Any,
    ) -> Context:
        """A context to build recipes in by hand (tests, notebooks): ``profile`` (a preset's
        name or a profile), the ``variant`` (default: the profile's first), ``distributions``
        already built (else built on first use) and the run options (``seed``, ``device``,
        ``data_root``)::

            context = domains.get("sinusoid").context("tiny")
            learner = context.recipe("maml").build(context)
        """
        if profile is None or isinstance(profile, str):
            profile = self.profile(profile or self.default_profile)
        if variant is None:
            variant = self.variants(profile)[0][1]
        context = Context(self, profile, dict(variant), tuple(learners), **options)
        context._distributions.update(distributions or {})
        return context

    def results_title(self, context: Context) -> str:
        return self.title(context) if self.title else f"{self.name} results"
