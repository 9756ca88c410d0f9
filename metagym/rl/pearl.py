"""PEARL: off-policy meta-RL by probabilistic context inference (Rakelly et al. 2019).

A soft actor-critic (SAC, with twin critics, target critics and a tuned entropy weight) whose actor
and critics also read a latent task variable ``z``. ``z`` is inferred from a task's context, a set
of its transitions ``(observation, action, reward)``, by :class:`ContextEncoder` (a product of
Gaussian factors, one per transition). The encoder learns from the critics' loss plus
``kl_weight`` times ``KL(q(z | context) || N(0, I))``.

Meta-training step (PEARL's algorithm 1, on the meta-batch the runner draws):

1. each new task takes a slot of the replay pool (:class:`TaskReplay`, the most recent
   ``task_slots`` tasks); ``prior_episodes`` episodes are collected with ``z`` drawn from the
   prior, into both the task's replay and its context buffer, then ``posterior_episodes`` with
   ``z`` drawn from the posterior given that context, into the replay only;
2. ``updates_per_iteration`` gradient steps, each on ``task_batch`` tasks of the pool: a
   ``context_size`` sample of each task's context buffer gives ``z`` (reparameterized), and a
   ``batch_size`` sample of its replay the SAC losses.

Adaptation (no gradient step): ``steps = k`` collects ``k`` episodes one after the other on the
task, each with ``z`` drawn from the posterior given the episodes before it (the first from the
prior), then scores the policy with ``z`` drawn from the posterior given all ``k``, one draw per
scored episode, acting with the mean action (PEARL's evaluation). The report counts PEARL as
black-box: it adapts by inference, with no gradient at test time.

Actions are stored in replay in units of the action space's half range ([-1, 1], tanh's range);
the sampler receives them rescaled to the Box bounds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn

from metagym.learners.base import Learner, Predictor
from metagym.nets.mlp import mlp
from metagym.rl.context_encoder import ContextEncoder, kl_to_prior
from metagym.rl.maml_rl import step_seed
from metagym.rl.sampler import Episodes
from metagym.rl.step_count import StepCount
from metagym.rl.task_replay import TaskReplay
from metagym.seeding import isolated_rng

__all__ = ["PEARL", "LatentPolicy", "transitions"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class TanhGaussianActor(nn.Module):
    """SAC's actor: ``(N, obs + latent)`` -> a tanh-squashed Gaussian over ``[-1, 1]^act_dim``."""

    def __init__(self, input_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.net = mlp(input_dim, hidden, 2 * act_dim, nn.ReLU)
        self.act_dim = act_dim

    def forward(
        self, inputs: Tensor, generator: torch.Generator | None, deterministic: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Actions ``(N, act_dim)`` in [-1, 1] and their log-densities ``(N,)`` (zeros when
        ``deterministic``: the mean action)."""
        mean, log_std = self.net(inputs).split(self.act_dim, dim=-1)
        if deterministic:
            return torch.tanh(mean), mean.new_zeros(mean.shape[0])
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        pre_tanh = mean + std * noise
        log_prob = (-0.5 * noise**2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log |d tanh(u) / du| = 2 (log 2 - u - softplus(-2u)), numerically stable.
        log_prob = log_prob - (2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))).sum(-1)
        return torch.tanh(pre_tanh), log_prob


class TwinCritic(nn.Module):
    """Two Q-networks ``(N, obs + action + latent)`` -> ``(N,)`` each."""

    def __init__(self, input_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.q1 = mlp(input_dim, hidden, 1, nn.ReLU)
        self.q2 = mlp(input_dim, hidden, 1, nn.ReLU)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        return self.q1(inputs).squeeze(-1), self.q2(inputs).squeeze(-1)


def transitions(episodes: Episodes, low: Tensor, high: Tensor) -> Tensor:
    """The steps of every episode of ``episodes`` as rows ``(n, O + A + 1 + O + 1)``:
    observation, action in [-1, 1] (from the Box bounds ``low``, ``high``), reward, next
    observation, terminated (1.0 when the episode ended by termination: no bootstrapping)."""
    obs = episodes.observations.flatten(start_dim=3).float()  # (B, E, T + 1, O)
    actions = episodes.actions.flatten(start_dim=3).float()
    unit = (2 * (actions - low) / (high - low) - 1).clamp(-1.0, 1.0)
    rows = torch.cat(
        [
            obs[:, :, :-1],
            unit,
            episodes.rewards[..., None],
            obs[:, :, 1:],
            episodes.terminated[..., None].float(),
        ],
        dim=-1,
    )
    return rows[episodes.mask.bool()]


class LatentPolicy:
    """A sampler policy (:data:`metagym.rl.sampler.Policy`) acting with ``z`` drawn from
    ``N(mean, variance)`` (``(latent,)`` each), one draw per episode (at ``reset_memory``)."""

    def __init__(
        self,
        learner: PEARL,
        mean: Tensor,
        variance: Tensor,
        generator: torch.Generator,
        deterministic: bool,
    ):
        self.learner, self.mean, self.std = learner, mean, variance.sqrt()
        self.generator, self.deterministic = generator, deterministic
        self.z: Tensor | None = None

    def draw(self, n: int) -> Tensor:
        return self.mean + self.std * torch.randn(n, len(self.mean), generator=self.generator)

    def reset_memory(self, mask: Tensor) -> None:
        if self.z is None or len(self.z) != len(mask):
            self.z = self.draw(len(mask))
        elif bool(mask.any()):
            self.z[mask] = self.draw(int(mask.sum()))

    def __call__(self, observations: Tensor) -> Tensor:
        if self.z is None or len(self.z) != len(observations):
            self.z = self.draw(len(observations))
        inputs = torch.cat([observations.flatten(start_dim=1).float(), self.z], dim=-1)
        unit, _ = self.learner.actor(inputs, self.generator, self.deterministic)
        return self.learner.to_env_action(unit)


class PEARL(StepCount, Learner):
    """PEARL on a task distribution with a Box action space (see the module's docstring).

    Args:
        distribution: a :class:`~metagym.tasks.gym.GymTaskDistribution` (gives the sampler).
        latent: size of ``z`` (PEARL: 5).
        hidden: hidden widths of the actor and the critics (PEARL: three of 300).
        encoder_hidden: hidden widths of the context encoder (PEARL: three of 200).
        task_slots: tasks held in the replay pool (the most recent ones).
        replay_capacity, context_capacity: transitions held per task in its replay and its
            context buffer (None: what one meta-training step collects for a task, the
            episodes times the step limit, 1,000 steps per episode without a limit).
        prior_episodes, posterior_episodes: episodes collected per new task with ``z`` from the
            prior and from the posterior (PEARL: 400 steps of each on HalfCheetahVel).
        updates_per_iteration: gradient steps per meta-training step.
        task_batch: tasks per gradient step (PEARL: 16).
        batch_size: replay transitions per task and gradient step (PEARL: 256).
        context_size: context transitions per task and gradient step (PEARL: 100).
        learning_rate: Adam's step size for every network (PEARL: 3e-4).
        gamma: discount; tau: the target critics' averaging rate.
        kl_weight: weight of the KL term (PEARL: 0.1).
        reward_scale: rewards are multiplied by it in the critics' targets (PEARL: 5).
        seed: seed of the initialization, of the collection and of the gradient steps' samples.
        name: the learner's name in results.
    """

    name = "pearl"
    uses_steps = True
    scored_on = "episode"

    def __init__(
        self,
        distribution: Any,
        *,
        latent: int = 5,
        hidden: Sequence[int] = (128, 128),
        encoder_hidden: Sequence[int] = (128, 128, 128),
        task_slots: int = 200,
        replay_capacity: int | None = None,
        context_capacity: int | None = None,
        prior_episodes: int = 1,
        posterior_episodes: int = 1,
        updates_per_iteration: int = 200,
        task_batch: int = 8,
        batch_size: int = 128,
        context_size: int = 100,
        learning_rate: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        kl_weight: float = 0.1,
        reward_scale: float = 5.0,
        seed: int = 0,
        name: str = "pearl",
    ):
        super().__init__()
        self.name = name
        self.sampler = distribution.sampler
        space = self.sampler.action_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"PEARL needs a continuous (Box) action space, got {space}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"PEARL needs a bounded action space (tanh actions), got {space}")
        for what, value in (
            ("latent", latent),
            ("task_slots", task_slots),
            ("updates_per_iteration", updates_per_iteration),
            ("task_batch", task_batch),
            ("batch_size", batch_size),
            ("context_size", context_size),
            ("prior_episodes", prior_episodes),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be an int >= 1, got {value!r}")
        episode = self.sampler.time_limit or 1_000
        replay_capacity = replay_capacity or (prior_episodes + posterior_episodes) * episode
        context_capacity = context_capacity or prior_episodes * episode
        self.settings = {
            "latent": latent,
            "hidden": list(hidden),
            "encoder_hidden": list(encoder_hidden),
            "task_slots": task_slots,
            "replay_capacity": replay_capacity,
            "context_capacity": context_capacity,
            "prior_episodes": prior_episodes,
            "posterior_episodes": posterior_episodes,
            "updates_per_iteration": updates_per_iteration,
            "task_batch": task_batch,
            "batch_size": batch_size,
            "context_size": context_size,
            "learning_rate": learning_rate,
            "gamma": gamma,
            "tau": tau,
            "kl_weight": kl_weight,
            "reward_scale": reward_scale,
        }
        self.seed_value = seed
        self.iteration = 0
        obs_dim = int(np.prod(self.sampler.observation_space.shape))
        act_dim = int(np.prod(space.shape))
        self.obs_dim, self.act_dim = obs_dim, act_dim
        #: Width of a context row: observation, action, reward.
        self.context_width = obs_dim + act_dim + 1
        self.register_buffer("action_low", torch.as_tensor(space.low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(space.high, dtype=torch.float32))
        with isolated_rng(seed):
            self.encoder = ContextEncoder(self.context_width, latent, encoder_hidden)
            self.actor = TanhGaussianActor(obs_dim + latent, act_dim, hidden)
            self.critic = TwinCritic(obs_dim + act_dim + latent, hidden)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.target_entropy = -float(act_dim)
        width = 2 * obs_dim + act_dim + 2
        self.replay = TaskReplay(task_slots, replay_capacity, width)
        self.context = TaskReplay(task_slots, context_capacity, width)
        self.optimizers = {
            "critic": torch.optim.Adam(
                [*self.critic.parameters(), *self.encoder.parameters()], lr=learning_rate
            ),
            "actor": torch.optim.Adam(self.actor.parameters(), lr=learning_rate),
            "alpha": torch.optim.Adam([self.log_alpha], lr=learning_rate),
        }
        self.optimizer = self.optimizers["critic"]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.settings}

    # -- acting ------------------------------------------------------------------------------
    def to_env_action(self, unit: Tensor) -> Tensor:
        """Actions in [-1, 1] ``(N, A)`` -> the action space's bounds."""
        low, high = self.action_low, self.action_high
        return (low + (unit + 1) * (high - low) / 2).reshape(-1, *self.sampler.action_space.shape)

    def posterior(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance ``(latent,)`` of ``z`` given context rows ``(C, >= context_width)``."""
        with torch.no_grad():
            return self.encoder(context[None, :, : self.context_width])

    def collect(self, task: Any, episodes: int, context: Tensor, seed: int) -> Episodes:
        """``episodes`` episodes of ``task`` with stochastic actions and ``z`` drawn from the
        posterior given ``context`` (the prior when it is empty)."""
        mean, variance = self.posterior(context)
        policy = LatentPolicy(
            self, mean[0], variance[0], torch.Generator().manual_seed(seed), deterministic=False
        )
        return self.sampler.sample(policy, [task], episodes, seed=seed)

    def rows(self, episodes: Episodes) -> Tensor:
        """The transitions of ``episodes`` as replay rows (:func:`transitions`)."""
        return transitions(episodes, self.action_low, self.action_high)

    # -- meta-training -----------------------------------------------------------------------
    def meta_train_step(self, tasks: Sequence[Any]) -> dict[str, float]:
        self.iteration += 1
        s = self.settings
        seed = (self.seed_value * 1_000_003 + self.iteration * 7_919) % (2**31 - 1)
        prior_returns, posterior_returns = [], []
        with torch.no_grad():
            for b, task in enumerate(tasks):
                slot = self.replay.new_task()
                self.context.new_task()
                empty = torch.zeros(0, self.context_width)
                prior = self.collect(task, s["prior_episodes"], empty, seed + 2 * b)
                self.replay.add(slot, self.rows(prior))
                self.context.add(slot, self.rows(prior))
                prior_returns.append(float(prior.returns().mean()))
                self.count(prior)
                if s["posterior_episodes"]:
                    context = self.context.rows(slot)
                    posterior = self.collect(
                        task, s["posterior_episodes"], context, seed + 2 * b + 1
                    )
                    self.replay.add(slot, self.rows(posterior))
                    posterior_returns.append(float(posterior.returns().mean()))
                    self.count(posterior)
        generator = torch.Generator().manual_seed(seed)
        totals: dict[str, float] = {}
        for _ in range(s["updates_per_iteration"]):
            for key, value in self.gradient_step(generator).items():
                totals[key] = totals.get(key, 0.0) + value
        metrics = {k: v / s["updates_per_iteration"] for k, v in totals.items()}
        metrics["charts/return_prior"] = float(np.mean(prior_returns))
        if posterior_returns:
            metrics["charts/return_posterior"] = float(np.mean(posterior_returns))
        metrics.update(self.step_metrics())
        metrics["charts/alpha"] = float(self.log_alpha.detach().exp())
        return metrics

    def gradient_step(self, generator: torch.Generator) -> dict[str, float]:
        """One SAC step on ``task_batch`` tasks of the pool, with ``z`` inferred from context."""
        s = self.settings
        filled = self.replay.filled()
        k = min(s["task_batch"], len(filled))
        slots = filled[torch.randperm(len(filled), generator=generator)[:k]]
        context = self.context.sample(slots, s["context_size"], generator)[
            ..., : self.context_width
        ]
        batch = self.replay.sample(slots, s["batch_size"], generator)
        o, a = self.obs_dim, self.act_dim
        obs, actions, rewards, next_obs, terminated = batch.split([o, a, 1, o, 1], dim=-1)

        mean, variance = self.encoder(context)  # (K, latent)
        noise = torch.randn(mean.shape, generator=generator)
        z = mean + variance.sqrt() * noise
        kl = kl_to_prior(mean, variance).mean()
        zs = z[:, None].expand(-1, s["batch_size"], -1)  # (K, B, latent)

        def flat(x: Tensor) -> Tensor:
            return x.reshape(-1, x.shape[-1])

        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_in = flat(torch.cat([next_obs, zs.detach()], dim=-1))
            next_actions, next_log_prob = self.actor(next_in, generator)
            q1_t, q2_t = self.target_critic(torch.cat([flat(next_obs), next_actions, flat(zs)], -1))
            soft = torch.min(q1_t, q2_t) - alpha * next_log_prob
            target = (
                s["reward_scale"] * flat(rewards).squeeze(-1)
                + s["gamma"] * (1 - flat(terminated).squeeze(-1)) * soft
            )
        q1, q2 = self.critic(flat(torch.cat([obs, actions, zs], dim=-1)))
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.optimizers["critic"].zero_grad(set_to_none=True)
        (critic_loss + s["kl_weight"] * kl).backward()
        self.optimizers["critic"].step()

        state = flat(torch.cat([obs, zs.detach()], dim=-1))
        new_actions, log_prob = self.actor(state, generator)
        q1_pi, q2_pi = self.critic(torch.cat([flat(obs), new_actions, flat(zs.detach())], -1))
        actor_loss = (alpha * log_prob - torch.min(q1_pi, q2_pi)).mean()
        self.optimizers["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        self.optimizers["actor"].step()

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.optimizers["alpha"].zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.optimizers["alpha"].step()

        with torch.no_grad():
            for target_p, p in zip(
                self.target_critic.parameters(), self.critic.parameters(), strict=True
            ):
                target_p.lerp_(p, s["tau"])
        return {
            "losses/critic": critic_loss.item(),
            "losses/actor": actor_loss.item(),
            "losses/kl": kl.item(),
            "losses/entropy": -log_prob.mean().item(),
        }

    # -- adaptation --------------------------------------------------------------------------
    def env_steps(self, steps: int | None) -> int:
        """``steps`` episodes of context of the step limit (100 without one)."""
        return (steps or 0) * (self.sampler.time_limit or 100)

    def adapt_steps(self, task: Any, steps: Iterable[int]) -> dict[int, Predictor]:
        """Policies after ``k`` episodes of context, for each ``k`` in ``steps``; the episodes
        are shared (the policy after 2 saw the episode the policy after 1 saw)."""
        wanted = sorted(set(int(k) for k in steps))
        context = torch.zeros(0, self.replay.data.shape[2])
        policies: dict[int, Predictor] = {}
        for k in range(wanted[-1] + 1):
            if k in wanted:
                mean, variance = self.posterior(context)
                generator = torch.Generator().manual_seed(step_seed(task.eval_seed, k))
                policies[k] = LatentPolicy(self, mean[0], variance[0], generator, True)
            if k < wanted[-1]:
                seed = step_seed(task.seed, k)
                context = torch.cat([context, self.rows(self.collect(task, 1, context, seed))])
        return policies

    def adapt(self, task: Any, steps: int | None = None) -> Predictor:
        k = 1 if steps is None else int(steps)
        return self.adapt_steps(task, [k])[k]

    # -- persistence -------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.state_dict(),
            "optimizer": {k: o.state_dict() for k, o in self.optimizers.items()},
            "iteration": self.iteration,
            **self.step_state(),
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["model"])
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizer"][key])
        self.iteration = int(state.get("iteration", 0))
        self.load_step_state(state)
