"""What the report runs: its experiments, their learners (picked by family from the registry)
and the report's own budgets per profile.

Each experiment is one call of the runner (:func:`metagym.experiment.run`) with a domain's
profile and the report's overrides; every experiment serves every claim it informs. Learners are
every registered recipe of the wanted families (minus those the plan leaves out, named in the
report), so learners added to a domain join the report without a change here. Within an
experiment all meta-learners get the same budget (meta-updates and meta-batch), so that "at the
same budget" holds for the comparisons between families.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metagym import domains
from metagym.domains.profile import Profile

REPORT_PROFILES = ("tiny", "quick", "paper")
#: The report's domains: the registered ones it covers by default, and the opt-in ones
#: (``--domains ...,metaworld``), each named by the registered domain its experiments run.
DOMAIN_OF = {"sinusoid": "sinusoid", "omniglot": "omniglot", "rl": "rl", "metaworld": "rl"}
DEFAULT_DOMAINS = ("sinusoid", "omniglot", "rl")
#: The lecture's three families (claims) and the baselines that anchor the scales.
META_FAMILIES = ("gradient", "black-box", "non-parametric")


@dataclass(frozen=True)
class Experiment:
    """One runner call of the report.

    Attributes:
        name: its folder under ``DIR/runs/`` and its label in the report.
        domain: the registered domain.
        base_profile: the domain's preset the overrides apply to.
        overrides: profile fields set by the report (its budgets).
        families: the families whose recipes run (every recipe of each).
        baselines: baseline learners that also run (the trivial and oracle references).
        leave_out: learners of those families left out (cost), named in the report.
        budget: meta-updates per family; applied to every learner of the family.
        primary: claims 1, 2, 5 and 6 read it; claim 3 reads every experiment of a domain.
        needs_data: the domain reads a data set (``--data-root``).
        per_family: at most this many learners of each family, in registry order (None: all).
        report_domain: the ``--domains`` name that selects it (``""``: ``domain``).
    """

    name: str
    domain: str
    base_profile: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    families: tuple[str, ...] = META_FAMILIES
    baselines: tuple[str, ...] = ()
    leave_out: tuple[str, ...] = ()
    budget: Mapping[str, int] = field(default_factory=dict)
    primary: bool = True
    needs_data: bool = False
    per_family: int | None = None
    report_domain: str = ""

    def selected_by(self) -> str:
        """The ``--domains`` name that selects this experiment."""
        return self.report_domain or self.domain

    def learners(self) -> list[str]:
        """The learners run: every recipe of ``families`` (registry order), then ``baselines``."""
        recipes = domains.get(self.domain).recipes
        chosen, count = [], dict.fromkeys(self.families, 0)
        for name, recipe in recipes.items():
            if recipe.family not in self.families or name in self.leave_out:
                continue
            if self.per_family is None or count[recipe.family] < self.per_family:
                chosen.append(name)
                count[recipe.family] += 1
        return chosen + [name for name in self.baselines if name in recipes]

    def absent(self) -> list[str]:
        """Learners of the wanted families that the plan leaves out (named in the report)."""
        recipes = domains.get(self.domain).recipes
        ran = self.learners()
        return [n for n, r in recipes.items() if r.family in self.families and n not in ran]

    def profile(self) -> Profile:
        """The domain's ``base_profile`` with the overrides and the per-family budget."""
        domain = domains.get(self.domain)
        profile = domain.profile(self.base_profile)
        changes = dict(self.overrides)
        if self.budget and isinstance(getattr(profile, "iterations", None), dict):
            iterations = dict(profile.iterations)
            for name in self.learners():
                family = domain.recipes[name].family
                if family in self.budget:
                    iterations[name] = self.budget[family]
            changes["iterations"] = iterations
        return profile.replace(**changes)


# -- the budgets ------------------------------------------------------------------------------------
def _sinusoid(profile: str, shots: int, primary: bool, **settings: Any) -> Experiment:
    budget = settings.pop("budget")
    per_family = settings.pop("per_family", None)
    return Experiment(
        name=f"sinusoid-k{shots}",
        domain="sinusoid",
        base_profile=profile,
        overrides={"shots": shots, "shift_levels": 3 if primary else 0, **settings},
        families=("gradient", "black-box"),
        # the references that normalize scores; claim 3 reads them in the primary (K = 5) run
        baselines=("pretrain", "oracle") if primary else (),
        budget=budget,
        primary=primary,
        per_family=per_family,
    )


def _omniglot(profile: str, **settings: Any) -> Experiment:
    budget = settings.pop("budget")
    leave_out = settings.pop("leave_out", ())
    per_family = settings.pop("per_family", None)
    return Experiment(
        name="omniglot",
        domain="omniglot",
        base_profile=profile,
        overrides={"ways": (5,), "shots": (1, 5), **settings},
        families=META_FAMILIES,
        leave_out=leave_out,
        budget=budget,
        needs_data=True,
        per_family=per_family,
    )


def _rl(profile: str, **settings: Any) -> Experiment:
    leave_out = settings.pop("leave_out", ())
    return Experiment(
        name="rl-navigation",
        domain="rl",
        base_profile=profile,
        overrides={"env": "metagym/Navigation2D-v0", "eval_splits": ("test", "ood"), **settings},
        families=("gradient", "black-box"),
        baselines=("random", "oracle"),
        leave_out=leave_out,
    )


def _metaworld(profile: str, **settings: Any) -> Experiment:
    """Meta-World ML10 (opt-in: ``--domains ...,metaworld``): success rate on the training envs'
    new goals (``test``) and on the held-out envs (``ood-heldout``), MAML-RL against RL^2."""
    return Experiment(
        name="rl-metaworld",
        domain="rl",
        base_profile=f"metaworld-{profile}",
        overrides={
            "env": "metaworld/ML10",
            "eval_splits": ("test", "ood"),
            **settings,
        },
        families=("gradient", "black-box"),
        baselines=("random", "oracle"),
        # PEARL's 500 iterations of SAC updates alone take longer than the report's budget here
        leave_out=("transformer", "pearl") if profile != "tiny" else (),
        report_domain="metaworld",
    )


def tiny_plan() -> list[Experiment]:
    """Seconds per experiment: the test suite's report (its numbers decide nothing). Two
    learners per family (so the transformer meets the LSTM), K = 5 and 20."""
    sinusoid = {
        "budget": dict.fromkeys(META_FAMILIES + ("baseline",), 20),
        "per_family": 2,
        "eval_tasks": 8,
        "backend": "vmap",
        "eval_steps": (0, 1, 2, 5, 10),
        "log_every": 5,
        "checkpoint_every": 10,
    }
    return [
        _sinusoid("tiny", 5, True, **sinusoid),
        _sinusoid("tiny", 20, False, **sinusoid),
        _omniglot(
            "tiny",
            budget=dict.fromkeys(META_FAMILIES + ("baseline",), 3),
            per_family=2,
            leave_out=("matching", "matching-fce", "soft-nn"),
        ),
        _rl("tiny"),
        _metaworld("tiny"),
    ]


def quick_plan() -> list[Experiment]:
    """The report's quick budgets (2 CPU cores, at most 60 minutes in all; docs/report.md)."""
    sinusoid = {
        "budget": dict.fromkeys(META_FAMILIES + ("baseline",), 1500),
        "eval_tasks": 300,
        "backend": "vmap",
        "log_every": 50,
        "checkpoint_every": 500,
    }
    return [
        _sinusoid("quick", 5, True, **sinusoid),
        _sinusoid("quick", 10, False, **sinusoid),
        _sinusoid("quick", 20, False, **sinusoid),
        _omniglot(
            "quick",
            # CPU seconds per meta-update measured at 5-shot (10 updates each, loaded machine):
            # maml 3.3, maml++ 6.7, reptile 2.5, protomaml 0.5, anil 0.3, blackbox 0.7,
            # transformer 0.6, protonet 0.04 (5-way episodes); docs/report.md has the estimate
            budget={"gradient": 60, "black-box": 200, "non-parametric": 300},
            leave_out=("matching", "matching-fce"),
            eval_tasks=40,
            sweep_tasks=20,
            # 15 query drawings per class (75 per task, the most 5-shot leaves of 20): with the
            # default 1, a task's accuracy over 5 queries is mostly binomial noise that two
            # learners or two step counts do not share, so pairing removes little of it.
            queries=15,
            episode_ways=0,
            log_every=10,
            checkpoint_every=100,
        ),
        _rl(
            "quick",
            # PEARL's quick profile alone takes 22 min of one core (docs/results/rl.md): named
            # in the report as left out. The transformer runs RL^2's 60 iterations (about 6 min
            # of one core per seed: 715 s for 120 iterations, docs/results/rl.md), so claim 6
            # compares it with the GRU on RL too.
            leave_out=("pearl",),
            iterations=15,
            # RL^2 adapts within a trial after about 50 iterations (docs/results/rl.md).
            rl2_iterations=60,
            rl2_steps_per_iteration=16384,
            ppo_iterations=20,
            eval_tasks=20,
            eval_episodes=10,
            log_every=1,
            checkpoint_every=5,
        ),
        _metaworld("quick"),
    ]


def paper_plan() -> list[Experiment]:
    """Each domain's paper profile (a GPU; hours): the report adds only its structure."""
    return [
        _sinusoid("paper", 5, True, budget={}),
        _sinusoid("paper", 10, False, budget={}),
        _sinusoid("paper", 20, False, budget={}),
        _omniglot("paper", budget={}),
        _rl("paper"),
        _metaworld("paper"),
    ]


PLANS = {"tiny": tiny_plan, "quick": quick_plan, "paper": paper_plan}


def plan(profile: str, only_domains: tuple[str, ...] | None = None) -> list[Experiment]:
    """The experiments of the report at ``profile`` selected by ``only_domains`` (names of
    :data:`DOMAIN_OF`; default :data:`DEFAULT_DOMAINS`: Meta-World is opt-in)."""
    if profile not in PLANS:
        raise ValueError(f"unknown report profile {profile!r}; accepted: {', '.join(PLANS)}")
    wanted = DEFAULT_DOMAINS if only_domains is None else only_domains
    return [e for e in PLANS[profile]() if e.selected_by() in wanted]


def registered_domains(report_domains: Sequence[str]) -> tuple[str, ...]:
    """The registered domains that ``--domains`` names run (``metaworld`` runs ``rl``)."""
    return tuple(dict.fromkeys(DOMAIN_OF[d] for d in report_domains))
