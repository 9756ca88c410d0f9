"""RL^2 (Duan et al. 2016): a recurrent policy whose memory persists across the episodes of a
trial on one task, trained by PPO on whole trials.

:class:`metagym.tasks.trials.RL2TrialWrapper` turns a trial of ``episodes_per_trial`` episodes of
one task into one Gymnasium episode whose observation is ``(observation, previous action, previous
reward, done flag)``. :class:`RL2` collects whole trials through the library's sampler
(:class:`metagym.rl.sampler.EpisodeSampler`), with the GRU's memory reset only at the start of a
trial, and trains the GRU by PPO with back-propagation through the whole trial.

Why not sb3-contrib's ``RecurrentPPO`` (used before): its rollout buffer starts a sequence at every
rollout and minibatch boundary from a stored LSTM state, so back-propagation never crosses those
points and a trial longer than ``n_steps`` is always cut (read in its code, not isolated). On
Navigation2D its episode-2 return stayed at its episode-1 return (docs/results/rl.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from metagym.learners.base import Learner, Predictor
from metagym.rl.returns import discounted_returns, gae, masked_mean, normalize
from metagym.rl.step_count import StepCount
from metagym.seeding import isolated_rng
from metagym.tasks.trials import TrialTaskDistribution, trial_episode_returns

__all__ = ["RL2", "ActorCriticHeads", "RecurrentActorCritic", "RecurrentPolicy"]


class ActorCriticHeads(nn.Module):
    """What RL^2's actor-critics share: the input scaling and the policy and value heads.

    Input per step: the :class:`~metagym.tasks.trials.RL2TrialWrapper` vector ``[observation,
    previous action, previous reward, done flag]``, ``D`` floats. Box actions with finite bounds
    are Gaussian with mean ``center + half_range * tanh(head)`` and a learned state-independent
    standard deviation (initially ``init_std * half_range``), so the policy starts in the action
    box whatever its scale; the previous action is fed back in the same units (divided by
    ``half_range``). Discrete actions are categorical.

    A subclass calls ``super().__init__(input_dim, action_space)``, builds its body, then
    :meth:`add_heads` (in this order: the GRU's initialization is drawn as it was before this
    class existed), and maps features ``(T, N, H)`` to outputs with :meth:`heads`.
    """

    def __init__(self, input_dim: int, action_space: spaces.Space):
        super().__init__()
        if isinstance(action_space, spaces.Discrete):
            self.discrete, act_dim = True, int(action_space.n)
            low = high = None
        elif isinstance(action_space, spaces.Box):
            self.discrete, act_dim = False, int(np.prod(action_space.shape))
            low, high = action_space.low.reshape(-1), action_space.high.reshape(-1)
        else:
            raise TypeError(f"RL^2 needs a Box or Discrete action space, got {action_space}")
        self.act_dim = act_dim
        bounded = low is not None and bool(np.all(np.isfinite(low) & np.isfinite(high)))
        self.squash = bounded
        center = (high + low) / 2 if bounded else np.zeros(act_dim)
        half = (high - low) / 2 if bounded else np.ones(act_dim)
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))
        self.register_buffer("half_range", torch.as_tensor(half, dtype=torch.float32))
        # Previous-action entries of the input, scaled to about [-1, 1] (one-hot for Discrete).
        scale = torch.ones(input_dim)
        if not self.discrete:
            scale[input_dim - 2 - act_dim : input_dim - 2] = 1 / self.half_range
        self.register_buffer("input_scale", scale)

    def add_heads(self, hidden: int, init_std: float) -> None:
        """The policy head, the value head and the log standard deviation over ``H`` features."""
        self.policy_head = nn.Linear(hidden, self.act_dim)
        self.value_head = nn.Linear(hidden, 1)
        nn.init.orthogonal_(self.policy_head.weight, 0.01)
        nn.init.zeros_(self.policy_head.bias)
        self.log_std = nn.Parameter(torch.full((self.act_dim,), float(np.log(init_std))))

    def heads(self, features: Tensor) -> tuple[Distribution, Tensor]:
        """Features ``(T, N, H)`` -> the action distribution (batch shape ``(T, N)``) and the
        values ``(T, N)``."""
        head = self.policy_head(features)
        values = self.value_head(features).squeeze(-1)
        if self.discrete:
            return Categorical(logits=head), values
        mean = self.center + self.half_range * torch.tanh(head) if self.squash else head
        std = (self.log_std.exp() * self.half_range).expand_as(mean)
        return Independent(Normal(mean, std), 1), values


class RecurrentActorCritic(ActorCriticHeads):
    """A GRU over trial observations with a policy head and a value head
    (:class:`ActorCriticHeads`).

    Args:
        input_dim: ``D``.
        action_space: the inner environment's action space (Box or Discrete).
        hidden: width of the encoder and of the GRU's state ``H``.
        init_std: initial standard deviation of Box actions, in units of the half range.
    """

    def __init__(
        self, input_dim: int, action_space: spaces.Space, hidden: int = 128, init_std: float = 0.5
    ):
        super().__init__(input_dim, action_space)
        self.encoder = nn.Sequential(nn.Linear(input_dim, hidden), nn.Tanh())
        self.gru = nn.GRU(hidden, hidden)
        self.add_heads(hidden, init_std)
        self.hidden_size = hidden

    def initial_state(self, n: int) -> Tensor:
        """The memory at the start of a trial, ``(1, n, H)``."""
        return torch.zeros(1, n, self.hidden_size, device=self.center.device)

    def forward(self, inputs: Tensor, state: Tensor) -> tuple[Distribution, Tensor, Tensor]:
        """Run ``T`` steps of ``N`` trials.

        Args:
            inputs: ``(T, N, D)``.
            state: ``(1, N, H)``, the memory before the first step.

        Returns:
            the action distribution (batch shape ``(T, N)``), values ``(T, N)`` and the memory
            after the last step ``(1, N, H)``.
        """
        features, state = self.gru(self.encoder(inputs * self.input_scale), state)
        distribution, values = self.heads(features)
        return distribution, values, state


class RecurrentPolicy:
    """A sampler policy around an actor-critic with memory (:class:`RecurrentActorCritic`,
    :class:`~metagym.rl.transformer_policy.TransformerActorCritic`): the memory persists between
    calls and is reset for the rows the sampler marks (at the start of each trial).

    ``episode``: which episode of the trial a score reads (None: the whole trial).
    """

    def __init__(self, net: ActorCriticHeads, episode: int | None = None):
        self.net = net
        self.episode = episode
        self.state: Tensor | None = None

    def reset_memory(self, mask: Tensor) -> None:
        if self.state is None or self.state.shape[1] != mask.shape[0]:
            self.state = self.net.initial_state(mask.shape[0])
        else:
            self.state = self.state * (~mask.bool()).float()[None, :, None]

    def __call__(self, observations: Tensor) -> Distribution:
        if self.state is None or self.state.shape[1] != observations.shape[0]:
            self.state = self.net.initial_state(observations.shape[0])
        with torch.no_grad():
            distribution, _, self.state = self.net(observations.float()[None], self.state)
        if isinstance(distribution, Categorical):
            return Categorical(logits=distribution.logits[0])
        return Independent(
            Normal(distribution.base_dist.loc[0], distribution.base_dist.scale[0]), 1
        )


def trial_batch(episodes: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Time-major tensors of ``N = B * E`` trials: inputs ``(T, N, D)``, actions ``(T, N, ...)``,
    rewards, mask and behaviour log-probabilities ``(T, N)``."""
    b, e, t = episodes.rewards.shape

    def time_major(x: Tensor) -> Tensor:
        return x.reshape(b * e, t, *x.shape[3:]).transpose(0, 1)

    inputs = time_major(episodes.observations[:, :, :-1].float())
    return (
        inputs,
        time_major(episodes.actions),
        time_major(episodes.rewards),
        time_major(episodes.mask),
        time_major(episodes.extras["log_prob"]),
    )


class RL2(StepCount, Learner):
    """RL^2: a GRU (or transformer) policy trained by PPO over whole trials (back-propagation
    through the trial).

    Each meta-training step collects about ``steps_per_iteration`` environment steps as whole
    trials of the meta-batch's tasks (the same number of trials of each task) with the current
    policy, then takes ``epochs`` passes of PPO over them in ``minibatches``
    minibatches of whole trials. Advantages are GAE over the whole trial (the trial is one
    episode: an inner episode's end is not the end of the return). Adaptation is the GRU's
    memory: :meth:`adapt` returns the policy itself. With ``per_episode``, ``steps`` are the
    number of earlier episodes of the trial (the score is that of episode ``steps``); otherwise
    the score is the trial's total return.

    Args:
        distribution: a :class:`TrialTaskDistribution` (gives the sampler of trials).
        steps_per_iteration: environment steps per meta-training step; the trials per task are
            this over (tasks x trial length), at least 1. The trial length is the episodes per
            trial times the step limit, or, without a step limit, the mean length of the first
            meta-training step's trials (one per task).
        per_episode: report per-episode returns (``steps`` = episodes before) instead of totals.
        seed: seed of the initialization and of the trials' sampling.
        hidden: GRU width (transformer: model width).
        policy: ``"gru"`` (:class:`RecurrentActorCritic`) or ``"transformer"``
            (:class:`~metagym.rl.transformer_policy.TransformerActorCritic`, causal attention
            over the trial's steps).
        layers, heads: the transformer's layers and attention heads (ignored by the GRU).
        context: the transformer's window in steps (None: the episodes per trial times the step
            limit, one whole trial; a trial without a step limit needs it).
        name: the learner's name in results.
        learning_rate, epochs, minibatches, clip, gamma, gae_lambda, ent_coef, vf_coef,
            max_grad_norm: PPO's settings.
    """

    name = "rl2"

    def __init__(
        self,
        distribution: TrialTaskDistribution,
        *,
        steps_per_iteration: int = 16_384,
        per_episode: bool = True,
        seed: int = 0,
        hidden: int = 128,
        learning_rate: float = 1e-3,
        epochs: int = 4,
        minibatches: int = 4,
        clip: float = 0.2,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        policy: str = "gru",
        layers: int = 2,
        heads: int = 4,
        context: int | None = None,
        name: str = "rl2",
    ):
        super().__init__()
        if policy not in ("gru", "transformer"):
            raise ValueError(f"policy must be 'gru' or 'transformer', got {policy!r}")
        self.name = name
        if steps_per_iteration < 1:
            raise ValueError(f"steps_per_iteration must be >= 1, got {steps_per_iteration}")
        self.distribution = distribution
        self.sampler = distribution.sampler
        self.uses_steps = per_episode
        self.scored_on = "episode" if per_episode else "trial"
        self.steps_per_iteration = steps_per_iteration
        self.seed_value = seed
        self.iteration = 0
        self.settings = {
            "hidden": hidden,
            "learning_rate": learning_rate,
            "epochs": epochs,
            "minibatches": minibatches,
            "clip": clip,
            "gamma": gamma,
            "gae_lambda": gae_lambda,
            "ent_coef": ent_coef,
            "vf_coef": vf_coef,
            "max_grad_norm": max_grad_norm,
        }
        # Running second moment of the discounted returns: rewards are divided by its root, so
        # the value head's targets have about unit scale on every environment.
        self.register_buffer("return_moment", torch.ones(()))
        limit = self.sampler.time_limit
        length = distribution.episodes_per_trial * limit if limit else 0  # 0: not measured yet
        self.register_buffer("trial_length", torch.tensor(float(length)))
        input_dim = int(np.prod(self.sampler.observation_space.shape))
        space = self.sampler.action_space
        #: The transformer's settings, written into the config ({} for the GRU, whose config and
        #: checkpoints are those from before the transformer existed).
        self.network: dict[str, Any] = {}
        if policy == "transformer":
            from metagym.rl.transformer_policy import TransformerActorCritic

            if context is None and not length:
                raise ValueError(
                    f"the transformer policy needs a context window of at least one trial: "
                    f"{distribution.name} has no step limit, so pass context= (steps) or give "
                    "the environment a step limit (max_episode_steps)"
                )
            context = context or int(length)
            self.network = {"policy": policy, "layers": layers, "heads": heads, "context": context}
            with isolated_rng(seed):
                self.net = TransformerActorCritic(
                    input_dim, space, hidden, layers=layers, heads=heads, context=context
                )
        else:
            with isolated_rng(seed):
                self.net = RecurrentActorCritic(input_dim, space, hidden)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=learning_rate)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps_per_iteration": self.steps_per_iteration,
            "per_episode": self.uses_steps,
            "episodes_per_trial": self.distribution.episodes_per_trial,
            "ppo": self.settings,
            **({"network": self.network} if self.network else {}),
        }

    def trials_per_task(self, n_tasks: int) -> int:
        """Trials of each of ``n_tasks`` tasks that make about ``steps_per_iteration`` steps."""
        length = float(self.trial_length)
        if length == 0:
            return 1
        return max(1, round(self.steps_per_iteration / (n_tasks * length)))

    def collect(self, tasks: Sequence[Any], seed: int) -> Any:
        """Trials of each of ``tasks`` with the current policy (see :meth:`trials_per_task`)."""
        trials = self.trials_per_task(len(tasks))
        episodes = self.sampler.sample(RecurrentPolicy(self.net), tasks, trials, seed=seed)
        if float(self.trial_length) == 0:
            self.trial_length.fill_(float(episodes.lengths.float().mean()))
        return episodes

    def meta_train_step(self, tasks: Sequence[Any]) -> dict[str, float]:
        self.iteration += 1
        seed = (self.seed_value * 1_000_003 + self.iteration) % (2**31 - 1)
        episodes = self.collect(tasks, seed)
        self.count(episodes)
        metrics = self.ppo_update(episodes, torch.Generator().manual_seed(seed))
        metrics["charts/trial_return"] = float(episodes.returns().mean())
        metrics.update(self.step_metrics())
        n = self.distribution.episodes_per_trial
        if self.uses_steps and n > 1:  # learning curves of each episode of the training trials
            per_episode = trial_episode_returns(
                episodes.observations, episodes.rewards, episodes.mask, n
            ).mean(dim=(0, 1))
            for k in range(n):
                metrics[f"charts/episode_{k + 1}_return"] = float(per_episode[k])
        return metrics

    def ppo_update(self, episodes: Any, generator: torch.Generator) -> dict[str, float]:
        """PPO's epochs over the trials of ``episodes`` (``B`` tasks x ``E`` trials)."""
        s = self.settings
        inputs, actions, rewards, mask, old_log_probs = trial_batch(episodes)
        rewards = rewards / self.update_return_scale(rewards, mask)
        n = inputs.shape[1]
        with torch.no_grad():
            _, values, _ = self.net(inputs, self.net.initial_state(n))
        # GAE runs over the last dimension: trials x time.
        advantages = gae(rewards.T, values.T, mask.T, s["gamma"], s["gae_lambda"]).T
        returns = (advantages + values) * mask
        advantages = normalize(advantages, mask)
        chunks = max(1, min(s["minibatches"], n))
        stats: dict[str, list[float]] = {"policy": [], "value": [], "entropy": [], "kl": []}
        for _ in range(s["epochs"]):
            order = torch.randperm(n, generator=generator)
            for rows in order.chunk(chunks):
                distribution, new_values, _ = self.net(
                    inputs[:, rows], self.net.initial_state(len(rows))
                )
                m = mask[:, rows]
                log_ratio = distribution.log_prob(actions[:, rows]) - old_log_probs[:, rows]
                ratio = log_ratio.exp()
                adv = advantages[:, rows]
                clipped = ratio.clamp(1 - s["clip"], 1 + s["clip"])
                policy_loss = -masked_mean(torch.min(ratio * adv, clipped * adv), m)
                value_loss = masked_mean((new_values - returns[:, rows]) ** 2, m)
                entropy = masked_mean(distribution.entropy(), m)
                loss = policy_loss + s["vf_coef"] * value_loss - s["ent_coef"] * entropy
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), s["max_grad_norm"])
                self.optimizer.step()
                stats["policy"].append(policy_loss.item())
                stats["value"].append(value_loss.item())
                stats["entropy"].append(entropy.item())
                stats["kl"].append(masked_mean((ratio - 1) - log_ratio, m).item())
        return {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}

    def update_return_scale(self, rewards: Tensor, mask: Tensor) -> Tensor:
        """Fold this batch's discounted returns ``(T, N)`` into the running second moment and
        return its root (the reward scale)."""
        returns = discounted_returns(rewards.T, mask.T, self.settings["gamma"])
        moment = masked_mean(returns**2, mask.T)
        weight = 1.0 if self.iteration <= 1 else 0.05
        self.return_moment.mul_(1 - weight).add_(weight * moment)
        return self.return_moment.sqrt().clamp_min(1e-6)

    def env_steps(self, steps: int | None) -> int:
        """Steps of the ``steps`` earlier episodes of the trial: the trial length (see
        :meth:`trials_per_task`) over its episodes; 0 before a trial without a step limit ran."""
        per_episode = float(self.trial_length) / self.distribution.episodes_per_trial
        return round((steps or 0) * per_episode)

    def adapt(self, task: Any, steps: int | None = None) -> Predictor:
        return RecurrentPolicy(self.net, episode=steps if self.uses_steps else None)

    def checkpoint_state(self) -> dict[str, Any]:
        return {**super().checkpoint_state(), "iteration": self.iteration, **self.step_state()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        super().load_checkpoint_state(state)
        self.iteration = int(state.get("iteration", 0))
        self.load_step_state(state)
