"""Meta-reinforcement learning: MAML-RL, RL^2 and baselines on a task-protocol environment.

    python experiments/rl.py --env metagym/Navigation2D-v0 --learners maml,pretrain,scratch,oracle,random --profile quick --out runs/nav
    python experiments/rl.py --env metagym/Bandit-v0 --env-kwargs '{"k": 5}' --learners rl2,ucb1,thompson,random --profile quick --out runs/bandit

``--env`` is a registered id or an importable ``module:Class`` / ``module:factory`` whose
environment has ``sample_tasks`` and ``set_task`` (see the README, "Meta-reinforcement learning").

Learners: ``maml`` (MAML-RL: policy-gradient inner step, TRPO outer step), ``pretrain-pg`` (the
MAML paper's pretrained baseline: TRPO on the task mixture, fine-tuned by the same policy-gradient
steps), ``rl2`` (RL^2 with RecurrentPPO), ``pretrain`` (SB3 PPO on the task mixture, fine-tuned
by PPO on each test task), ``scratch`` (PPO from scratch on each test task), ``oracle`` (PPO
seeing the task parameters), ``random``, and for bandits ``ucb1`` and ``thompson``.

Every learner is evaluated on the same tasks of every evaluated split. ``steps`` in the results:
gradient steps (maml, pretrain-pg), earlier episodes of the trial (rl2 on episodic tasks),
environment steps of PPO on the task (pretrain, scratch); each row also has ``env_steps``, the
environment steps of experience on the task behind it. On a bandit (``ucb1``/``thompson``
requested, or ``--trial-total``), rl2, ucb1, thompson and random are scored by the total reward
of a trial of ``--episodes-per-trial`` pulls.

Writes into --out: results.json, results.md, return_vs_adaptation.png, training_curves.png,
trajectories.png (Navigation2D with maml) and runs/<learner>/{metrics.csv, checkpoint.pt,
learner.pt}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from metagym.evaluate import evaluate
from metagym.experiment import check_names, check_out_dir
from metagym.learners.base import Learner
from metagym.plots.rl import navigation_trajectories, plot_return_vs_adaptation, plot_rl_training
from metagym.results import read_results, write_json_atomic, write_markdown, write_results
from metagym.rl.bandits import BanditLearner
from metagym.rl.maml_rl import MAMLRL
from metagym.rl.policies import make_policy
from metagym.rl.rl2 import RL2
from metagym.rl.sb3_learners import PPOBaseline, RandomLearner
from metagym.seeding import build_seeded, split_generator
from metagym.tasks.gym import GymTaskDistribution
from metagym.tasks.trials import TrialTaskDistribution
from metagym.train import TrainConfig, train

LEARNERS = (
    "maml",
    "pretrain-pg",
    "rl2",
    "pretrain",
    "scratch",
    "oracle",
    "random",
    "ucb1",
    "thompson",
)
TRIAL_LEARNERS = ("rl2", "ucb1", "thompson")


@dataclass
class Profile:
    """Budget of one profile. Iterations are meta-training steps per learner."""

    maml_iterations: int
    """MAML-RL / pretrain-pg meta-updates"""
    meta_batch: int
    """tasks per meta-update (MAML: 20 for navigation, 40 for locomotion)"""
    fast_batch: int = 20
    """episodes per inner policy-gradient step (MAML: 20)"""
    maml_steps: tuple[int, ...] = (0, 1, 2, 3)
    """gradient steps evaluated"""
    ppo_iterations: int = 40
    """pretrain / oracle PPO iterations"""
    ppo_steps_per_iteration: int = 4096
    ppo_n_envs: int = 8
    """parallel environments of PPO (pretrain, oracle, rl2)"""
    ppo_n_steps: int = 256
    """PPO rollout length per environment (rl2: half of it)"""
    rl2_iterations: int = 60
    rl2_steps_per_iteration: int = 8192
    episodes_per_trial: int = 2
    """RL^2 trial length on episodic tasks (bandits: --episodes-per-trial, default 10)"""
    fine_tune_batches: tuple[int, ...] = (0, 1, 2)
    """PPO fine-tuning budgets in units of one inner batch (fast_batch episodes)"""
    eval_tasks: int = 40
    eval_episodes: int = 20
    eval_splits: tuple[str, ...] = ("test", "ood")
    """splits evaluated; "ood" stands for every ood-* split"""
    log_every: int = 5
    checkpoint_every: int = 10


PROFILES = {
    # Navigation2D with maml,pretrain-pg,pretrain,scratch,oracle,random: 34 min wall measured on
    # 2 cores shared with other jobs (about 12 min of CPU time; maml: about 5 s per meta-update).
    "quick": Profile(maml_iterations=50, meta_batch=20),
    # Paper-scale budgets: 500 meta-updates of 20 tasks (pass --meta-batch 40 for locomotion, as
    # in MAML), longer PPO/RL^2 training, and a PPO learning curve to 25 inner batches.
    "paper": Profile(
        maml_iterations=500,
        meta_batch=20,
        ppo_iterations=300,
        rl2_iterations=500,
        fine_tune_batches=(0, 1, 2, 3, 5, 10, 25),
        eval_splits=("train", "test", "ood"),
        log_every=10,
        checkpoint_every=20,
    ),
    # For tests: seconds.
    "tiny": Profile(
        maml_iterations=2,
        meta_batch=2,
        fast_batch=4,
        maml_steps=(0, 1),
        ppo_iterations=1,
        ppo_steps_per_iteration=64,
        ppo_n_envs=2,
        ppo_n_steps=32,
        rl2_iterations=1,
        rl2_steps_per_iteration=64,
        fine_tune_batches=(0, 1),
        eval_tasks=2,
        eval_episodes=2,
        log_every=1,
        checkpoint_every=1,
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="metagym/Navigation2D-v0", help="id or module:Class")
    parser.add_argument("--env-kwargs", default="{}", help="JSON constructor arguments")
    parser.add_argument("--max-episode-steps", type=int, default=None, help="episode step limit")
    parser.add_argument(
        "--learners",
        default="maml,pretrain,scratch,oracle,random",
        help=f"comma-separated learners: {', '.join(LEARNERS)}",
    )
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--meta-batch", type=int, default=None, help="override the meta-batch")
    parser.add_argument("--iterations", type=int, default=None, help="override MAML iterations")
    parser.add_argument(
        "--fast-batch", type=int, default=None, help="override episodes per inner step"
    )
    parser.add_argument(
        "--maml-steps", default=None, help="override the evaluated gradient steps, e.g. 0,1"
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=None, help="override episodes per scored task"
    )
    parser.add_argument(
        "--eval-tasks", type=int, default=None, help="override evaluated tasks per split"
    )
    parser.add_argument(
        "--episodes-per-trial", type=int, default=None, help="RL^2 trial length (bandits: 10)"
    )
    parser.add_argument(
        "--trial-total",
        action="store_true",
        help="score trial learners by the trial's total return (automatic for ucb1/thompson)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of tasks and initialization")
    parser.add_argument("--out", default="runs/rl", help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (small nets: 1 is fastest)"
    )
    return parser.parse_args(argv)


def build_learner(
    name: str,
    profile: Profile,
    distribution: GymTaskDistribution,
    trials: TrialTaskDistribution | None,
    *,
    trial_total: bool,
    seed: int,
) -> Learner:
    horizon = distribution.sampler.time_limit or 100
    if name in ("maml", "pretrain-pg"):
        policy = make_policy(distribution.observation_space, distribution.action_space)
        return MAMLRL(
            policy,
            distribution.sampler,
            fast_batch=profile.fast_batch,
            train_steps=1 if name == "maml" else 0,
            eval_steps=1,
            name=name,
        )
    if name == "rl2":
        return RL2(
            trials,
            per_episode=not trial_total,
            steps_per_iteration=profile.rl2_steps_per_iteration,
            n_envs=profile.ppo_n_envs,
            seed=seed,
            ppo_kwargs={"n_steps": max(profile.ppo_n_steps // 2, 8), "batch_size": 256},
        )
    if name in ("pretrain", "scratch", "oracle"):
        return PPOBaseline(
            distribution,
            name,
            steps_per_iteration=profile.ppo_steps_per_iteration,
            n_envs=profile.ppo_n_envs,
            ppo_kwargs={"n_steps": profile.ppo_n_steps},
            fine_tune_kwargs={"n_steps": profile.fast_batch * horizon},
            seed=seed,
        )
    if name == "random":
        return RandomLearner(distribution.action_space)
    if name in ("ucb1", "thompson"):
        space = distribution.action_space
        if not hasattr(space, "n"):
            raise ValueError(f"{name} needs a bandit (a Discrete action space), got {space}")
        obs_dim = int(torch.tensor(distribution.observation_space.shape).prod())
        return BanditLearner(name, int(space.n), obs_dim)
    raise ValueError(f"unknown learner {name!r}; accepted: {', '.join(LEARNERS)}")


def iterations_of(name: str, profile: Profile) -> int:
    if name in ("maml", "pretrain-pg"):
        return profile.maml_iterations
    if name == "rl2":
        return profile.rl2_iterations
    if name in ("pretrain", "oracle"):
        return profile.ppo_iterations
    return 0


def eval_steps_of(name: str, profile: Profile, horizon: int, trials: int, total: bool):
    """(steps passed to evaluate, env steps of experience behind each step count)."""
    if name in ("maml", "pretrain-pg"):
        return list(profile.maml_steps), {
            s: s * profile.fast_batch * horizon for s in profile.maml_steps
        }
    if name == "rl2" and not total:
        return list(range(trials)), {s: s * horizon for s in range(trials)}
    if name in ("pretrain", "scratch"):
        steps = [b * profile.fast_batch * horizon for b in profile.fine_tune_batches]
        return steps, {s: s for s in steps}
    return [0], {None: 0}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    learners = check_names(
        "learner", [s.strip() for s in args.learners.split(",") if s.strip()], LEARNERS
    )
    out_dir = check_out_dir(args.out)
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        raise ValueError(f"--env-kwargs is not JSON: {error}") from error
    profile = replace(PROFILES[args.profile])
    if args.meta_batch is not None:
        profile.meta_batch = args.meta_batch
    if args.iterations is not None:
        profile.maml_iterations = args.iterations
    if args.fast_batch is not None:
        profile.fast_batch = args.fast_batch
    if args.maml_steps is not None:
        profile.maml_steps = tuple(int(s) for s in args.maml_steps.split(","))
    if args.eval_episodes is not None:
        profile.eval_episodes = args.eval_episodes
    if args.eval_tasks is not None:
        profile.eval_tasks = args.eval_tasks
    for label in ("meta_batch", "iterations", "fast_batch", "eval_episodes", "eval_tasks"):
        value = getattr(args, label)
        if value is not None and value < 1:
            raise ValueError(f"--{label.replace('_', '-')} must be >= 1, got {value}")
    bandit = any(n in ("ucb1", "thompson") for n in learners)
    trial_total = args.trial_total or bandit
    episodes_per_trial = args.episodes_per_trial or (10 if bandit else profile.episodes_per_trial)
    common = {
        "env_kwargs": env_kwargs,
        "max_episode_steps": args.max_episode_steps,
        "eval_episodes": profile.eval_episodes,
    }
    distribution = GymTaskDistribution(args.env, **common)
    needs_trials = any(n in TRIAL_LEARNERS for n in learners) or (bandit and "random" in learners)
    trials = TrialTaskDistribution(args.env, episodes_per_trial, **common) if needs_trials else None
    splits = []
    for split in profile.eval_splits:
        if split == "ood":
            splits += [s for s in distribution.splits if s.startswith("ood-")]
        else:
            splits.append(distribution.check_split(split))
    horizon = distribution.sampler.time_limit or 100
    config = {
        "script": "experiments/rl.py",
        "args": vars(args),
        "profile": asdict(profile),
        "distribution": distribution.describe(),
        "episodes_per_trial": episodes_per_trial if needs_trials else None,
        "trial_total": trial_total,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tasks = {
        s: distribution.sample(profile.eval_tasks, s, split_generator(args.seed, s)) for s in splits
    }
    trial_tasks = (
        {s: trials.sample(profile.eval_tasks, s, split_generator(args.seed, s)) for s in splits}
        if trials
        else {}
    )
    rows: list[dict[str, Any]] = []
    timings: dict[str, dict[str, float]] = {}
    results_path = out_dir / "results.json"
    if args.resume and results_path.exists():
        # Keep the rows (and timings) of learners this invocation does not run.
        previous = read_results(results_path)
        rows = [r for r in previous["rows"] if r["learner"] not in learners]
        timings = {
            k: v for k, v in previous["config"].get("timings", {}).items() if k not in learners
        }
        config["learners"] = {
            k: v for k, v in previous["config"].get("learners", {}).items() if k not in learners
        }
    trained: dict[str, Learner] = {}
    for name in learners:
        on_trials = name in TRIAL_LEARNERS or (name == "random" and bandit)
        dist = trials if on_trials else distribution
        learner = build_seeded(
            lambda name=name: build_learner(
                name, profile, distribution, trials, trial_total=trial_total, seed=args.seed
            ),
            args.seed,
        )
        config.setdefault("learners", {})[name] = learner.config()
        run_dir = out_dir / "runs" / name
        tick = time.perf_counter()
        iterations = iterations_of(name, profile)
        if iterations:
            train(
                learner,
                dist,
                TrainConfig(
                    iterations,
                    profile.meta_batch,
                    seed=args.seed,
                    log_every=profile.log_every,
                    checkpoint_every=profile.checkpoint_every,
                ),
                run_dir,
                resume=args.resume,
                progress=not args.no_progress,
            )
            learner.save(run_dir / "learner.pt")
        train_time = time.perf_counter() - tick
        steps, env_steps = eval_steps_of(name, profile, horizon, episodes_per_trial, trial_total)
        tick = time.perf_counter()
        for split in splits:
            split_tasks = trial_tasks[split] if on_trials else tasks[split]
            for row in evaluate(
                learner, dist, split, split_tasks, steps, progress=not args.no_progress
            ):
                row["env_steps"] = env_steps.get(row["steps"], 0)
                row["scored_on"] = (
                    "trial" if on_trials and (trial_total or name != "rl2") else "episode"
                )
                rows.append(row)
        timings[name] = {
            "train_s": round(train_time, 1),
            "eval_s": round(time.perf_counter() - tick, 1),
        }
        trained[name] = learner
        config["timings"] = timings
        write_results(out_dir / "results.json", rows, config=config, seed=args.seed)
        print(f"{name}: train {train_time:.0f} s, eval {timings[name]['eval_s']:.0f} s", flush=True)
    results = read_results(out_dir / "results.json")
    write_markdown(out_dir / "results.md", results, title=f"{distribution.name} results")
    plots = [
        plot_return_vs_adaptation(results, out_dir / "return_vs_adaptation.png"),
        plot_rl_training(
            {r["learner"]: out_dir / "runs" / r["learner"] for r in results["rows"]},
            out_dir / "training_curves.png",
        ),
    ]
    if "maml" in trained and "Navigation2D" in distribution.name:
        data = navigation_trajectories(trained["maml"], distribution, tasks["test"][:4])
        write_json_atomic(data, out_dir / "trajectories.json")
        from metagym.plots.rl import plot_navigation_trajectories

        plots.append(plot_navigation_trajectories(data, out_dir / "trajectories.png"))
    print((out_dir / "results.md").read_text())
    print(f"wall time {time.perf_counter() - start:.0f} s ({json.dumps(timings)})")
    print("plots: " + ", ".join(str(p) for p in plots if p))
    distribution.close()
    if trials is not None:
        trials.close()
    return results


if __name__ == "__main__":
    try:
        main()
    except (ValueError, NotADirectoryError) as error:
        sys.exit(f"error: {error}")
