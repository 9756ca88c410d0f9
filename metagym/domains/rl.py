"""Meta-reinforcement learning on any task-protocol Gymnasium environment (``--env``): MAML-RL,
RL^2 and baselines; on bandits also UCB1 and Thompson sampling.

    metagym run rl --env metagym/Navigation2D-v0 --profile quick --out runs/nav
    metagym run rl --env metagym/Bandit-v0 --env-kwargs '{"k": 5}' --learners rl2,ucb1,thompson,random

``steps`` in the results: gradient steps (maml, pretrain-pg), earlier episodes of the trial (rl2
on episodic tasks), environment steps of PPO on the task (pretrain, scratch); every row also has
``env_steps`` (the environment steps of experience on the task behind it) and ``scored_on``.
A run with a learner that is scored on whole trials (ucb1, thompson) scores rl2 and random on
trials too, of ``--episodes-per-trial`` (default 10) pulls.

Meta-World (``--env metaworld/ML1-reach-v3``, ``metaworld/ML10``, ``metaworld/ML45``; the
``metaworld`` extra): results have ``success`` and ``return`` rows, per env and over all envs
(:mod:`metagym.tasks.metaworld`). Its presets are ``metaworld-tiny``, ``metaworld-quick`` and
``metaworld-paper``; ``--profile tiny|quick|paper`` with a Meta-World ``--env`` selects them (and
``--profile metaworld-quick`` with another ``--env`` selects ``quick``): a preset belongs to a
family of environments, and changing the environment to another family changes the preset to the
same-named one of that family before the other flags apply (:meth:`RLProfile.replace`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metagym.domains import register
from metagym.domains.base import Context, Domain, LearnerRecipe
from metagym.domains.profile import Profile, json_object, setting
from metagym.learners.base import Learner
from metagym.plots.rl import navigation_trajectories, redraw
from metagym.results import write_json_atomic
from metagym.tasks.gym import GymTaskDistribution
from metagym.tasks.metaworld import (
    MetaWorldTaskDistribution,
    MetaWorldTrialDistribution,
    check_metaworld_env,
    is_metaworld,
)
from metagym.tasks.trials import TrialTaskDistribution

#: Recipes whose ``requires`` holds this are scored on whole trials (bandit algorithms).
TRIAL_TOTAL = "trial-total"


@dataclass(frozen=True)
class RLProfile(Profile):
    """The environment and the budgets of the RL learners."""

    env: str = "metagym/Navigation2D-v0"
    """the environment: a registered id or an importable module:Class"""
    env_kwargs: str = "{}"
    """JSON constructor arguments of the environment"""
    max_episode_steps: int | None = setting(None, low=1, high=1_000_000)
    """episode step limit (none: the environment's own)"""
    iterations: int = setting(50, low=1, high=1_000_000)
    """MAML-RL / pretrain-pg meta-updates"""
    meta_batch: int = setting(20, low=1, high=10_000)
    """tasks per meta-update (MAML: 20 for navigation, 40 for locomotion)"""
    fast_batch: int = setting(20, low=1, high=10_000)
    """episodes per inner policy-gradient step (MAML: 20)"""
    inner_lr: float = setting(0.1, low=1e-6, high=100.0)
    """step size of the inner policy-gradient step (maml, pretrain-pg; MAML: 0.1)"""
    maml_steps: tuple[int, ...] = setting((0, 1, 2, 3), low=0, high=100)
    """gradient steps evaluated (maml, pretrain-pg)"""
    ppo_iterations: int = setting(40, low=1, high=1_000_000)
    """pretrain / oracle PPO iterations"""
    ppo_steps_per_iteration: int = setting(4096, low=1, high=10**8)
    """PPO environment steps per iteration (pretrain, oracle)"""
    ppo_n_envs: int = setting(8, low=1, high=1024)
    """parallel environments of PPO (pretrain, oracle)"""
    ppo_n_steps: int = setting(256, low=2, high=10**6)
    """PPO rollout length per environment (pretrain, oracle)"""
    rl2_iterations: int = setting(120, low=1, high=1_000_000)
    """RL^2 iterations (Navigation2D: the returns level off after about 100)"""
    rl2_steps_per_iteration: int = setting(16384, low=1, high=10**8)
    """RL^2 environment steps per iteration, collected as whole trials of every meta-batch task"""
    episodes_per_trial: int | None = setting(None, low=1, high=10_000)
    """RL^2 trial length (none: 10 when bandit algorithms run, else 2)"""
    trial_total: bool = False
    """score trial learners by the trial's total return (automatic with ucb1/thompson)"""
    pearl_iterations: int = setting(500, low=1, high=1_000_000)
    """PEARL meta-training steps (each collects pearl_tasks new tasks, then pearl_updates SAC steps)"""
    pearl_tasks: int = setting(2, low=1, high=10_000)
    """new tasks PEARL collects per meta-training step (PEARL: 5)"""
    pearl_updates: int = setting(200, low=1, high=1_000_000)
    """PEARL's gradient steps per meta-training step"""
    pearl_episodes: tuple[int, ...] = setting((0, 1, 2), low=0, high=100)
    """episodes of context PEARL collects before the scored episodes (0: z from the prior)"""
    fine_tune_batches: tuple[int, ...] = setting((0, 1, 2), low=0, high=10_000)
    """PPO fine-tuning budgets in units of one inner batch (fast_batch episodes)"""
    eval_tasks: int = setting(40, low=1, high=100_000)
    """tasks per evaluated split, the same tasks for every learner"""
    eval_episodes: int = setting(20, low=1, high=100_000)
    """episodes per scored task"""
    eval_splits: tuple[str, ...] = ("test", "ood")
    """splits evaluated; ood stands for every ood-* split"""
    log_every: int = setting(5, low=1)
    """meta-iterations between rows of metrics.csv"""
    checkpoint_every: int = setting(10, low=1)
    """meta-iterations between checkpoints (one is always written at the end)"""
    policy_hidden: tuple[int, ...] = setting((64, 64), low=1, high=4096)
    """hidden layer widths of the MLP policies (maml, pretrain-pg, PPO baselines; tanh)"""
    max_envs: int | None = setting(None, low=1, high=100_000)
    """most environments the sampler steps at once (none: one per episode; Meta-World: 40)"""
    default_learners: tuple[str, ...] = ("maml", "pretrain", "scratch", "oracle", "random")
    """learners run when --learners is not given"""

    def replace(self, **changes: Any) -> RLProfile:
        """:meth:`Profile.replace`; when ``env`` moves to another family of environments
        (Meta-World or not) and this profile is one of the presets, the same-named preset of the
        new family is the base the changes apply to (``quick`` <-> ``metaworld-quick``)."""
        env = changes.get("env", self.env)
        if env_family(env) != env_family(self.env):
            name = preset_name(self)
            if name is not None and f"{env_family(env)}{name}" in PROFILES:
                other = family_preset(name, env_family(env))
                return Profile.replace(other, **changes)
        return Profile.replace(self, **changes)


def env_family(env: str) -> str:
    """The preset family of an environment: ``"metaworld-"`` for Meta-World, else ``""``."""
    return "metaworld-" if is_metaworld(env) else ""


def preset_name(profile: RLProfile) -> str | None:
    """The base name (``tiny``, ``quick``, ``paper``) of the preset ``profile`` equals, if any."""
    for name, preset in PROFILES.items():
        if preset == profile:
            return name.removeprefix("metaworld-")
    return None


def family_preset(name: str, family: str) -> RLProfile:
    return PROFILES[f"{family}{name}"]


#: Meta-World's profiles share these: its 39-dim observations, 10 episodes per adaptation step
#: and 3 scored episodes (metaworld.evaluation.metalearning_evaluation), success-rate rows.
_METAWORLD = {
    "env": "metaworld/ML1-reach-v3",
    "fast_batch": 10,
    "eval_episodes": 3,
    "maml_steps": (0, 1),
    "fine_tune_batches": (0, 1),
    "default_learners": ("maml", "random"),
}

#: What the 2-core Meta-World presets share: 8 tasks per meta-update, 2 x 128 networks, 30 test
#: tasks.
_METAWORLD_TWO_CORES = {
    **_METAWORLD,
    "meta_batch": 8,
    "eval_tasks": 30,
    "eval_splits": ("test",),
    "policy_hidden": (128, 128),
    "log_every": 1,
    "checkpoint_every": 5,
}

PROFILES = {
    # Navigation2D with maml,pretrain-pg,pretrain,scratch,oracle,random: 34 min wall measured on
    # 2 cores shared with other jobs (about 12 min of CPU time; maml: about 5 s per meta-update).
    "quick": RLProfile(),
    # Paper-scale budgets: 500 meta-updates of 20 tasks (pass --meta-batch 40 for locomotion, as
    # in MAML), longer PPO/RL^2 training, and a PPO learning curve to 25 inner batches.
    "paper": RLProfile(
        iterations=500,
        ppo_iterations=300,
        rl2_iterations=500,
        fine_tune_batches=(0, 1, 2, 3, 5, 10, 25),
        eval_splits=("train", "test", "ood"),
        log_every=10,
        checkpoint_every=20,
    ),
    # HalfCheetahVel, MAML-RL against random: 100 meta-updates of 10 tasks x 20 episodes of 200
    # steps (MAML: 500+ of 40), inner step 0.5 (MAML: 0.1), 40 test and 40 ood-fast tasks x 20
    # episodes scored. Measured: 14 min 43 s wall, 871 s CPU, one thread on 2 shared cores; one-step
    # gain +52.3 +- 12.1 on test (docs/results/rl.md, HalfCheetahVel, cheetah profile).
    "cheetah": RLProfile(
        env="metagym/HalfCheetahVel-v0",
        iterations=100,
        meta_batch=10,
        inner_lr=0.5,
        maml_steps=(0, 1),
        pearl_iterations=500,
        log_every=1,
        checkpoint_every=25,
        default_learners=("maml", "random"),
    ),
    # For tests: seconds.
    "tiny": RLProfile(
        iterations=2,
        meta_batch=2,
        fast_batch=4,
        maml_steps=(0, 1),
        ppo_iterations=1,
        ppo_steps_per_iteration=64,
        ppo_n_envs=2,
        ppo_n_steps=32,
        rl2_iterations=1,
        rl2_steps_per_iteration=64,
        pearl_iterations=2,
        pearl_tasks=2,
        pearl_updates=2,
        pearl_episodes=(0, 1),
        fine_tune_batches=(0, 1),
        eval_tasks=2,
        eval_episodes=2,
        log_every=1,
        checkpoint_every=1,
    ),
    # Meta-World, for tests: seconds per learner on ML1 (ML10/ML45 spend most of their time
    # making the benchmark's goals and Sawyer environments); 10-step episodes, 10 eval tasks so
    # that every ML10 train env gets one.
    "metaworld-tiny": RLProfile(
        **{**_METAWORLD, "fast_batch": 2, "eval_episodes": 1},
        max_episode_steps=10,
        iterations=1,
        meta_batch=2,
        ppo_iterations=1,
        ppo_steps_per_iteration=40,
        ppo_n_envs=2,
        ppo_n_steps=20,
        rl2_iterations=1,
        rl2_steps_per_iteration=40,
        pearl_iterations=1,
        pearl_tasks=2,
        pearl_updates=2,
        pearl_episodes=(0, 1),
        eval_tasks=10,
        eval_splits=("train", "test", "ood"),
        policy_hidden=(32, 32),
        log_every=1,
        checkpoint_every=1,
        max_envs=8,
    ),
    # Meta-World on 2 CPU cores in at most 30 minutes: ML1 reach-v3 with 100-step episodes
    # (Meta-World's are 500: a budget cut, stated in docs/metaworld.md), MAML-TRPO with 8 tasks
    # x 10 episodes per meta-update, and random; 30 test tasks x (3 + 10 + 3) episodes scored.
    "metaworld-quick": RLProfile(**_METAWORLD_TWO_CORES, max_episode_steps=100, iterations=30),
    # Meta-World ML1 reach-v3 with Meta-World's own 500-step episodes, MAML-RL, RL^2 and PEARL
    # on 2 CPU cores (about 15-25 min of one core each, docs/metaworld.md): MAML-TRPO 15
    # meta-updates of 8 tasks x 10 episodes (1.2M env steps), RL^2 60 PPO iterations of 16,384
    # steps (1M), PEARL 300 iterations of 2 tasks x 2 episodes (0.6M); 30 test tasks.
    "metaworld-ml1": RLProfile(
        **{**_METAWORLD_TWO_CORES, "default_learners": ("maml", "rl2", "pearl", "random")},
        iterations=15,
        rl2_iterations=60,
        pearl_iterations=300,
    ),
    # Meta-World+'s budgets (the authors' maml_trpo_ml1.py / maml_trpo_ml10.py / rl2_ml10.py):
    # 500-step episodes, a 2 x 512 tanh policy, 10 episodes per task and step; meta-batch 10 for
    # ML1 (pass --meta-batch 20 for ML10/ML45), 2M environment steps for ML1 = 20 meta-updates of
    # 10 tasks x 10 episodes x 500 steps x (support + query); pass --iterations 75 for ML10's 15M.
    "metaworld-paper": RLProfile(
        **{**_METAWORLD, "default_learners": ("maml", "rl2", "random")},
        iterations=20,
        meta_batch=10,
        rl2_iterations=2_000,
        rl2_steps_per_iteration=10_000,
        ppo_iterations=500,
        ppo_steps_per_iteration=10_000,
        eval_tasks=50,
        eval_splits=("train", "test", "ood"),
        policy_hidden=(512, 512),
        log_every=1,
        checkpoint_every=5,
    ),
}


# -- what a run's learners share -------------------------------------------------------------------
def bandit_run(context: Context) -> bool:
    """True when a requested learner is scored on whole trials (a bandit algorithm)."""
    return any(TRIAL_TOTAL in context.recipe(n).requires for n in context.learners)


def trial_total(context: Context) -> bool:
    return context.profile.trial_total or bandit_run(context)


def episodes_per_trial(context: Context) -> int:
    return context.profile.episodes_per_trial or (10 if bandit_run(context) else 2)


def horizon(context: Context) -> int:
    """Steps of one episode (the step limit, else 100)."""
    return context.distribution().sampler.time_limit or 100


#: The task distributions of each family of environments: (tasks, trials).
DISTRIBUTIONS = {
    "": (GymTaskDistribution, TrialTaskDistribution),
    "metaworld-": (MetaWorldTaskDistribution, MetaWorldTrialDistribution),
}


def make_distribution(context: Context, key: str) -> GymTaskDistribution:
    """``"tasks"``: the environment's tasks; ``"trials"``: the same tasks scored on trials."""
    profile = context.profile
    common = {
        "env_kwargs": json_object("--env-kwargs", profile.env_kwargs),
        "max_episode_steps": profile.max_episode_steps,
        "eval_episodes": profile.eval_episodes,
        "max_envs": profile.max_envs,
    }
    tasks, trials = DISTRIBUTIONS[env_family(profile.env)]
    if key == "trials":
        return trials(profile.env, episodes_per_trial(context), **common)
    return tasks(profile.env, **common)


def check(context: Context) -> None:
    """Before any work: a Meta-World name that is not a benchmark, or no metaworld package."""
    if is_metaworld(context.profile.env):
        check_metaworld_env(context.profile.env)


def eval_splits(context: Context) -> list[str]:
    distribution = context.distribution()
    splits: list[str] = []
    for split in context.profile.eval_splits:
        if split == "ood":
            splits += [s for s in distribution.splits if s.startswith("ood-")]
        else:
            splits.append(distribution.check_split(split))
    return splits


# -- learners --------------------------------------------------------------------------------------
def _maml_rl(train_steps: int, name: str):
    def build(context: Context) -> Learner:
        from metagym.rl.maml_rl import MAMLRL
        from metagym.rl.policies import make_policy

        distribution = context.distribution()
        policy = make_policy(
            distribution.observation_space,
            distribution.action_space,
            context.profile.policy_hidden,
        )
        return MAMLRL(
            policy,
            distribution.sampler,
            fast_batch=context.profile.fast_batch,
            inner_lr=context.profile.inner_lr,
            train_steps=train_steps,
            eval_steps=1,
            name=name,
        )

    return build


def _rl2(name: str, **network: Any):
    """RL^2 named ``name``; ``network``: its network's arguments (``policy``, ``hidden``, ...)."""

    def build(context: Context) -> Learner:
        from metagym.rl.rl2 import RL2

        profile = context.profile
        return RL2(
            context.distribution("trials"),
            per_episode=not trial_total(context),
            steps_per_iteration=profile.rl2_steps_per_iteration,
            seed=context.seed,
            name=name,
            **network,
        )

    return build


def _check_step_limit(context: Context) -> None:
    """The transformer's context is one trial: the episodes per trial times the step limit."""
    if not context.distribution("trials").sampler.time_limit:
        raise ValueError(
            f"transformer needs an episode step limit (its context is one trial); "
            f"{context.profile.env} has none: pass --max-episode-steps"
        )


def _pearl(context: Context) -> Learner:
    from metagym.rl.pearl import PEARL

    return PEARL(
        context.distribution(),
        updates_per_iteration=context.profile.pearl_updates,
        seed=context.seed,
    )


def _check_box_actions(context: Context) -> None:
    from gymnasium import spaces

    space = context.distribution().action_space
    if not isinstance(space, spaces.Box):
        raise ValueError(f"pearl needs a continuous (Box) action space, got {space}")


def _ppo(mode: str):
    def build(context: Context) -> Learner:
        from metagym.rl.sb3_learners import PPOBaseline

        profile = context.profile
        return PPOBaseline(
            context.distribution(),
            mode,
            steps_per_iteration=profile.ppo_steps_per_iteration,
            n_envs=profile.ppo_n_envs,
            ppo_kwargs={"n_steps": profile.ppo_n_steps},
            fine_tune_kwargs={"n_steps": profile.fast_batch * horizon(context)},
            seed=context.seed,
            hidden=profile.policy_hidden,
        )

    return build


def _random_distribution(context: Context) -> str:
    return "trials" if bandit_run(context) else "tasks"


def _random(context: Context) -> Learner:
    from metagym.rl.sb3_learners import RandomLearner

    scored_on = "trial" if bandit_run(context) else "episode"
    return RandomLearner(context.distribution().action_space, scored_on=scored_on)


def _bandit(algorithm: str):
    def build(context: Context) -> Learner:
        from metagym.rl.bandits import BanditLearner

        distribution = context.distribution()
        obs_dim = int(torch.tensor(distribution.observation_space.shape).prod())
        return BanditLearner(algorithm, int(distribution.action_space.n), obs_dim)

    return build


def _check_bandit(context: Context) -> None:
    space = context.distribution().action_space
    if not hasattr(space, "n"):
        raise ValueError(f"ucb1 and thompson need a bandit (a Discrete action space), got {space}")


def _fine_tune_steps(context: Context) -> tuple[int, ...]:
    per_batch = context.profile.fast_batch * horizon(context)
    return tuple(b * per_batch for b in context.profile.fine_tune_batches)


def _rl2_steps(context: Context) -> tuple[int, ...]:
    return (0,) if trial_total(context) else tuple(range(episodes_per_trial(context)))


def _recipes() -> dict[str, LearnerRecipe]:
    maml = {
        "iterations": lambda c: c.profile.iterations,
        "meta_batch": lambda c: c.profile.meta_batch,
        "eval_steps": lambda c: c.profile.maml_steps,
        "report_steps": 1,
        "cost": 10,
    }
    ppo = {
        "iterations": lambda c: c.profile.ppo_iterations,
        "meta_batch": lambda c: c.profile.meta_batch,
        "cost": 5,
    }
    rl2 = {
        "iterations": lambda c: c.profile.rl2_iterations,
        "meta_batch": lambda c: c.profile.meta_batch,
        "eval_steps": _rl2_steps,
        "distribution": "trials",
    }
    recipes = [
        LearnerRecipe(
            "maml",
            "gradient",
            _maml_rl(1, "maml"),
            extras=("trajectories",),
            summary="MAML-RL: policy-gradient inner step, TRPO outer step",
            **maml,
        ),
        LearnerRecipe(
            "pretrain-pg",
            "baseline",
            _maml_rl(0, "pretrain-pg"),
            summary="TRPO on the task mixture, fine-tuned by MAML's policy-gradient steps",
            **maml,
        ),
        LearnerRecipe(
            "rl2",
            "black-box",
            _rl2("rl2"),
            cost=8,
            summary="RL^2: a GRU policy over trials, trained by PPO through whole trials",
            sequence_model="gru",
            **rl2,
        ),
        LearnerRecipe(
            "transformer",
            "black-box",
            _rl2("transformer", policy="transformer", hidden=64, layers=2, heads=4),
            cost=10,
            check=_check_step_limit,
            summary="RL^2 with a causal transformer over the trial's steps instead of the GRU",
            sequence_model="transformer",
            **rl2,
        ),
        LearnerRecipe(
            "pearl",
            "black-box",
            _pearl,
            iterations=lambda c: c.profile.pearl_iterations,
            meta_batch=lambda c: c.profile.pearl_tasks,
            eval_steps=lambda c: c.profile.pearl_episodes,
            report_steps=1,
            cost=9,
            check=_check_box_actions,
            summary="PEARL: SAC with a probabilistic context encoder, adapts by inferring the task",
        ),
        LearnerRecipe(
            "pretrain",
            "baseline",
            _ppo("pretrain"),
            eval_steps=_fine_tune_steps,
            summary="PPO on the task mixture, fine-tuned by PPO on each task",
            **ppo,
        ),
        LearnerRecipe(
            "scratch",
            "baseline",
            _ppo("scratch"),
            iterations=0,
            eval_steps=_fine_tune_steps,
            cost=3,
            summary="PPO from scratch on each task",
        ),
        LearnerRecipe(
            "oracle", "baseline", _ppo("oracle"), summary="PPO that sees the task parameters", **ppo
        ),
        LearnerRecipe(
            "random",
            "baseline",
            _random,
            iterations=0,
            distribution=_random_distribution,
            summary="uniformly random actions",
        ),
        *(
            LearnerRecipe(
                name,
                "baseline",
                _bandit(name),
                iterations=0,
                distribution="trials",
                requires=(TRIAL_TOTAL,),
                check=_check_bandit,
                summary=summary,
            )
            for name, summary in (
                ("ucb1", "UCB1 on bandit trials"),
                ("thompson", "Thompson sampling on bandit trials"),
            )
        ),
    ]
    return {r.name: r for r in recipes}


# -- extras ----------------------------------------------------------------------------------------
def learner_extras(context: Context, recipe: LearnerRecipe, learner: Learner) -> dict[str, Any]:
    """Navigation2D: the positions visited before and after adaptation on four test tasks."""
    distribution = context.distribution()
    if "trajectories" not in recipe.extras or "Navigation2D" not in distribution.name:
        return {}
    tasks = context.eval_tasks("tasks", "test")[:4]
    return {"trajectories": navigation_trajectories(learner, distribution, tasks)}


def write_extras(context: Context, out_dir: Path, results: dict, extras: dict) -> None:
    for extra in extras.values():
        if "trajectories" in extra:
            write_json_atomic(extra["trajectories"], out_dir / "trajectories.json")


DOMAIN = register(
    Domain(
        name="rl",
        summary="meta-RL on a task-protocol Gymnasium environment (--env id or module:Class; "
        "Meta-World: metaworld/ML1-<env>-v3, metaworld/ML10, metaworld/ML45)",
        profile_class=RLProfile,
        profiles=PROFILES,
        recipes=_recipes(),
        make_distribution=make_distribution,
        eval_splits=eval_splits,
        redraw=redraw,
        default_learners=lambda p: p.default_learners,
        check=check,
        after_learner=learner_extras,
        after_run=write_extras,
        title=lambda c: f"{c.distribution().name} results",
        splits="train, val, test and the environment's ood-* splits",
        derived=lambda c: {
            "trial_total": trial_total(c),
            "episodes_per_trial": episodes_per_trial(c),
        },
    )
)
