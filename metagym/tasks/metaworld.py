"""Meta-World ML1 / ML10 / ML45 as metagym task distributions, scored by success rate and return.

``--env`` names: ``metaworld/ML1-<env>-v3`` (any v3 env, e.g. ``metaworld/ML1-reach-v3``),
``metaworld/ML10`` and ``metaworld/ML45`` (the environments are
:class:`metagym_envs.metaworld.MetaWorldEnv`; see there for the splits and the task dicts).

:class:`MetaWorldTaskDistribution` is a :class:`~metagym.tasks.gym.GymTaskDistribution` whose
``score`` follows Meta-World's meta-learning evaluation (``metaworld.evaluation.
metalearning_evaluation``): a task counts as solved in an episode when ``info["success"]`` is 1 at
any step, and a task's score is ``{"success": fraction of its eval_episodes solved, "return": their
average undiscounted return}``. Its rows are grouped by env (``task_group``), so ML10/ML45 results
have rows per env and over all envs. With MAML's settings ``fast_batch=10`` (episodes per
adaptation step) and ``eval_episodes=3`` this is Meta-World's protocol of 10 adaptation episodes
then 3 scored ones. As in Meta-World's protocol (its agents' ``eval_action`` is the
distribution's mode), the scored episodes act with the mean of a Gaussian policy
(``deterministic=True``); other distributions (a random policy's uniform) are sampled.
(Meta-World's scored episodes stop at the first success; here they run to the time limit, which
changes the return, not the success rate.)

:class:`MetaWorldTrialDistribution` is the same for RL^2's trials: the success of episode ``k``
of a trial for a predictor with an ``episode`` attribute, else of any episode of the trial.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from metagym.tasks.gym import GymTaskDistribution, RLTask
from metagym.tasks.trials import TrialTaskDistribution

__all__ = [
    "METAWORLD_PREFIX",
    "MetaWorldTaskDistribution",
    "MetaWorldTrialDistribution",
    "check_metaworld_env",
    "is_metaworld",
]

#: ``--env`` names of Meta-World benchmarks start with this.
METAWORLD_PREFIX = "metaworld/"
#: Most Sawyer environments the sampler steps at once (each is about 25 MB).
DEFAULT_MAX_ENVS = 40


def is_metaworld(env: Any) -> bool:
    """True for a ``metaworld/...`` environment name."""
    return isinstance(env, str) and env.startswith(METAWORLD_PREFIX)


def check_metaworld_env(env: str) -> None:
    """A ValueError (one clear line) for an unknown ``metaworld/...`` name or a missing
    ``metaworld`` package, before any work."""
    from metagym_envs import METAWORLD_IDS

    if env not in METAWORLD_IDS:
        close = [i for i in METAWORLD_IDS if env.split("/")[-1].lower()[:6] in i.lower()]
        hint = f"; close: {', '.join(close[:6])}" if close else ""
        raise ValueError(
            f"unknown Meta-World benchmark {env!r}: use metaworld/ML1-<env>-v3 (e.g. "
            f"metaworld/ML1-reach-v3), metaworld/ML10 or metaworld/ML45{hint}"
        )
    try:
        import metaworld  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"{env} needs the optional metaworld package: pip install 'metagym-lab[metaworld]' "
            f"({error})"
        ) from None


class MeanAction:
    """A policy acting with the mean of ``policy``'s Gaussian (``Normal``, ``MultivariateNormal``,
    or ``Independent`` around them); any other output passes through. Attributes (a recurrent
    policy's ``reset_memory``, RL^2's ``episode``) are the wrapped policy's."""

    def __init__(self, policy):
        self.policy = policy

    def __getattr__(self, name: str):
        return getattr(self.__dict__["policy"], name)

    def __call__(self, observations: torch.Tensor):
        output = self.policy(observations)
        extras = None
        if isinstance(output, tuple):
            output, extras = output
        if isinstance(output, Distribution):
            base = output.base_dist if isinstance(output, Independent) else output
            if isinstance(base, (Normal, MultivariateNormal)):
                output = base.mean
        return output if extras is None else (output, extras)


def _success(episodes, key: str = "success") -> torch.Tensor:
    """``(B, E)``: 1.0 where ``info[key]`` was 1 at some real step of the episode, else 0.0."""
    flags = episodes.extras.get(key)
    if flags is None:
        raise RuntimeError("the episodes carry no success flags (the sampler's info_keys)")
    return ((flags * episodes.mask) > 0.5).any(-1).float()


class _SuccessScoring:
    """What both Meta-World distributions share: two metrics, groups by env, the sampler."""

    metric = "success"
    metrics = ("success", "return")
    lower_is_better = False
    #: Score with the mean action of Gaussian policies (Meta-World's protocol).
    deterministic = True

    def _scored(self, predictor):
        return MeanAction(predictor) if self.deterministic else predictor

    def task_group(self, task: RLTask) -> str:
        """The task's Meta-World env name (results rows per env)."""
        return str(task.params["env_name"])

    def diverged(self, score: float) -> bool:
        return not math.isfinite(score)

    @property
    def sampler(self):
        """The episode sampler, recording ``info["success"]`` per step."""
        if self._sampler is None:
            from metagym.rl.sampler import EpisodeSampler

            self._sampler = EpisodeSampler(
                self.env_fn, max_envs=self.max_envs, device=self.device, info_keys=("success",)
            )
        return self._sampler


class MetaWorldTaskDistribution(_SuccessScoring, GymTaskDistribution):
    """A Meta-World benchmark's tasks (see the module docstring).

    Args:
        env: ``metaworld/ML1-<env>-v3``, ``metaworld/ML10`` or ``metaworld/ML45``.
        max_envs: most Sawyer environments stepped at once (default 40).
        **kwargs: those of :class:`GymTaskDistribution` (``max_episode_steps`` at most 500,
            ``eval_episodes``, ``device``); ``env_kwargs`` may set ``benchmark_seed``.
    """

    def __init__(
        self, env: str = "metaworld/ML1-reach-v3", *, max_envs: int | None = None, **kwargs
    ):
        check_metaworld_env(env)
        _check_limit(kwargs.get("max_episode_steps"))
        super().__init__(env, max_envs=max_envs or DEFAULT_MAX_ENVS, **kwargs)

    def score(self, predictor, task: RLTask) -> dict[str, float]:
        """``{"success": solved fraction, "return": average return}`` of ``eval_episodes``
        episodes of ``predictor`` on ``task``, seeded by ``task.eval_seed``."""
        episodes = self.sampler.sample(
            self._scored(predictor), [task], self.eval_episodes, seed=task.eval_seed
        )
        return {
            "success": float(_success(episodes).mean()),
            "return": float(episodes.returns().mean()),
        }


class MetaWorldTrialDistribution(_SuccessScoring, TrialTaskDistribution):
    """A Meta-World benchmark's tasks scored on RL^2 trials of ``episodes_per_trial`` episodes."""

    def __init__(self, env: str, episodes_per_trial: int, *, max_envs: int | None = None, **kwargs):
        check_metaworld_env(env)
        _check_limit(kwargs.get("max_episode_steps"))
        super().__init__(env, episodes_per_trial, max_envs=max_envs or DEFAULT_MAX_ENVS, **kwargs)

    def score(self, predictor, task: RLTask) -> dict[str, float]:
        """Success and return of episode ``predictor.episode`` of the trials (else of the whole
        trial: solved in any episode, total return)."""
        episodes = self.sampler.sample(
            self._scored(predictor), [task], self.eval_episodes, seed=task.eval_seed
        )
        k = getattr(predictor, "episode", None)
        if k is None:
            return {
                "success": float(_success(episodes).mean()),
                "return": float(episodes.returns().mean()),
            }
        n = self.episodes_per_trial
        done_after = episodes.observations[..., 1:, -1] * episodes.mask
        index = (torch.cumsum(done_after, -1) - done_after).clamp(max=n - 1).long()
        mine = (index == k).float() * episodes.mask
        solved = ((episodes.extras["success"] * mine) > 0.5).any(-1).float()
        returns = (episodes.rewards * mine).sum(-1)
        return {"success": float(solved.mean()), "return": float(returns.mean())}


def _check_limit(limit: int | None) -> None:
    from metagym_envs.metaworld import MAX_PATH_LENGTH

    if limit is not None and limit > MAX_PATH_LENGTH:
        raise ValueError(
            f"--max-episode-steps {limit}: Meta-World episodes last at most {MAX_PATH_LENGTH} steps"
        )
