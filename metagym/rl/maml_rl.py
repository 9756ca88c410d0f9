"""MAML for reinforcement learning (Finn et al. 2017, section 5.3).

The inner step is vanilla policy gradient (REINFORCE with a linear feature baseline refit per task,
advantages normalized per task) on ``fast_batch`` episodes collected by acting with the current
(fast) policy; it goes through the library's one adaptation routine,
:func:`metagym.learners.maml.adapted_model`, with :meth:`MAMLRL.support_loss` as its loss. The outer
update is TRPO (:func:`metagym.rl.trpo.trpo_step`) on the post-adaptation surrogate loss, with the
KL's Hessian-vector products differentiated through the inner step (second order).

With ``train_steps=0`` the same class is the paper's "pretrained" baseline: one policy trained by
TRPO on the mixture of training tasks, fine-tuned at test time by the same policy-gradient steps.

Every task's episodes are collected in a sampler call of its own, seeded by the task's own seeds
(``task.seed`` for the inner steps, ``task.eval_seed`` for the query), so they do not depend on
which other tasks share the meta-batch. That is what lets ``torchrun`` split a meta-batch across
processes (:mod:`metagym.distributed`): each process collects and adapts to its share of the tasks,
and TRPO's gradient, Fisher-vector products and line-search numbers are averaged over the
processes through :attr:`MAMLRL.mean_over_processes`, so every process takes the step of the whole
meta-batch, the one a single process takes with the same seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

from metagym.learners.maml import MAML, adapted_model
from metagym.rl.policies import detach_distribution
from metagym.rl.returns import discounted_returns, gae, masked_mean, normalize
from metagym.rl.sampler import Episodes, EpisodeSampler
from metagym.rl.step_count import StepCount
from metagym.rl.trpo import flat, local_mean, trpo_step
from metagym.rl.value_baseline import LinearFeatureBaseline

_SEED_HIGH = 2**31 - 1


def step_seed(seed: int, step: int) -> int:
    """Seed of the episodes collected for inner step ``step`` of a task whose seed is ``seed``."""
    return (seed + 104_729 * (step + 1)) % _SEED_HIGH


def episode_steps(episodes: Episodes) -> tuple[Tensor, Tensor, Tensor]:
    """Per-step observations ``(B, E, T, ...)``, actions ``(B, E, T, ...)`` and mask ``(B, E, T)``."""
    return episodes.observations[:, :, :-1], episodes.actions, episodes.mask


def advantages(episodes: Episodes, gamma: float = 0.99, gae_lambda: float = 1.0) -> Tensor:
    """Advantages ``(B, E, T)``: GAE over a linear feature baseline fitted on each task's own
    episodes, then normalized per task (mean 0, std 1 over its steps)."""
    observations, _, mask = episode_steps(episodes)
    returns = discounted_returns(episodes.rewards, mask, gamma)
    result = torch.zeros_like(returns)
    for b in range(episodes.num_tasks):
        baseline = LinearFeatureBaseline().fit(observations[b], returns[b], mask[b])
        values = baseline.predict(observations[b], mask[b])
        result[b] = normalize(gae(episodes.rewards[b], values, mask[b], gamma, gae_lambda), mask[b])
    return result


def log_probs(distribution: Distribution, actions: Tensor, shape: torch.Size) -> Tensor:
    return distribution.log_prob(actions).view(shape)


def policy_gradient_loss(
    policy: nn.Module,
    episodes: Episodes,
    advantages: Tensor,
    params: Sequence[Tensor] | None = None,
) -> Tensor:
    """REINFORCE's surrogate ``-mean_t log pi(a_t | s_t) * A_t`` over the real steps of ``episodes``.

    Args:
        policy: observations ``(N, *obs)`` -> distribution (a module or a functional model).
        episodes: ``B`` tasks x ``E`` episodes x ``T`` steps.
        advantages: ``(B, E, T)``, treated as constants.
        params: fast weights for a functional ``policy`` (``policy(x, params=params)``).
    """
    observations, actions, mask = episode_steps(episodes)
    shape = mask.shape
    obs = observations.reshape(-1, *observations.shape[3:])
    dist = policy(obs) if params is None else policy(obs, params=params)
    logp = log_probs(dist, actions.reshape(-1, *actions.shape[3:]), shape)
    return -masked_mean(logp * advantages.detach(), mask)


class MAMLRL(StepCount, MAML):
    """MAML-RL: a meta-learned policy initialization adapted by policy-gradient steps.

    Tasks are :class:`metagym.tasks.gym.RLTask`; predictors are policies (observations ->
    action distributions) for :meth:`metagym.tasks.gym.GymTaskDistribution.score`.

    Args:
        policy: a module mapping observations ``(N, *obs)`` to a distribution
            (:func:`metagym.rl.policies.make_policy`).
        sampler: collects episodes (e.g. the distribution's ``sampler``); with ``max_envs=None``
            the query episodes of a whole meta-batch are collected in one vectorized pass.
        inner_lr: policy-gradient step size (MAML: 0.1).
        train_steps: inner steps in meta-training (MAML: 1; 0 gives the pretrained baseline).
        eval_steps: default inner steps at test time.
        fast_batch: episodes per inner step and per query (MAML: 20).
        gamma, gae_lambda: discount and GAE parameter of the advantages.
        max_kl, cg_iterations, cg_damping, ls_backtracks, ls_ratio: TRPO's settings.
        name: the learner's name in results.

    Attributes:
        mean_over_processes: ``tensor -> tensor``, the share-weighted mean over processes of a
            number computed from this process's tasks; the identity in a single process.
            :class:`metagym.distributed.DistributedMetaBatch` sets it while training under
            ``torchrun`` (the TRPO step is not a ``torch.optim`` step, so it cannot be
            all-reduced in an optimizer hook).
    """

    def __init__(
        self,
        policy: nn.Module,
        sampler: EpisodeSampler,
        *,
        inner_lr: float = 0.1,
        train_steps: int = 1,
        eval_steps: int = 1,
        fast_batch: int = 20,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        max_kl: float = 0.01,
        cg_iterations: int = 10,
        cg_damping: float = 1e-5,
        ls_backtracks: int = 15,
        ls_ratio: float = 0.8,
        name: str = "maml",
    ):
        super().__init__(
            policy, loss_fn=None, inner_lr=inner_lr, train_steps=train_steps, eval_steps=eval_steps
        )
        if not isinstance(fast_batch, int) or fast_batch < 1:
            raise ValueError(f"fast_batch must be an int >= 1, got {fast_batch!r}")
        self.sampler = sampler
        self.fast_batch = fast_batch
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.max_kl, self.cg_iterations, self.cg_damping = max_kl, cg_iterations, cg_damping
        self.ls_backtracks, self.ls_ratio = ls_backtracks, ls_ratio
        self.name = name
        self.scored_on = "episode"
        self.mean_over_processes: Callable[[Tensor], Tensor] = local_mean

    def checkpoint_state(self) -> dict[str, Any]:
        return {**super().checkpoint_state(), **self.step_state()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        super().load_checkpoint_state(state)
        self.load_step_state(state)

    def env_steps(self, steps: int | None) -> int:
        """Each inner step collects ``fast_batch`` episodes of the step limit."""
        return (steps or 0) * self.fast_batch * (self.sampler.time_limit or 100)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inner_lr": self.inner_lr,
            "train_steps": self.train_steps,
            "eval_steps": self.eval_steps,
            "fast_batch": self.fast_batch,
            "gamma": self.gamma,
            "gae_lambda": self.gae_lambda,
            "max_kl": self.max_kl,
            "cg_iterations": self.cg_iterations,
            "cg_damping": self.cg_damping,
            "ls_backtracks": self.ls_backtracks,
            "ls_ratio": self.ls_ratio,
        }

    # -- data and losses ---------------------------------------------------------------------
    def collect(self, policy: Any, tasks: Sequence[Any], seed: int) -> Episodes:
        """``fast_batch`` episodes of each task acting with ``policy`` (no gradients)."""
        return self.sampler.sample(policy, tasks, self.fast_batch, seed=seed)

    def support_loss(self, model: nn.Module, task: Any, episodes: Episodes | None = None) -> Tensor:
        """The inner policy-gradient loss of ``model`` on ``episodes`` (collected by acting with
        ``model`` when not given)."""
        if episodes is None:
            episodes = self.collect(model, [task], task.seed)
        adv = advantages(episodes, self.gamma, self.gae_lambda)
        return policy_gradient_loss(model, episodes, adv)

    def query_loss(self, model: nn.Module, task: Any) -> Tensor:
        episodes = self.collect(model, [task], task.eval_seed)
        return policy_gradient_loss(
            model, episodes, advantages(episodes, self.gamma, self.gae_lambda)
        )

    def _adapted(
        self,
        task: Any,
        *,
        steps: int,
        meta_grad: bool,
        snapshots: Iterable[int] = (),
        cache: list[Episodes] | None = None,
    ) -> AbstractContextManager:
        """:func:`adapted_model` with the policy-gradient support loss. Step ``k`` uses
        ``cache[k]`` when there is one, else collects episodes with the current fast policy
        (seeded by the task and ``k``) and appends them to ``cache``."""
        count = [0]

        def loss(model: nn.Module) -> Tensor:
            k = count[0]
            count[0] += 1
            if cache is not None and k < len(cache):
                episodes = cache[k]
            else:
                episodes = self.collect(model, [task], step_seed(task.seed, k))
                if cache is not None:
                    cache.append(episodes)
            return self.support_loss(model, task, episodes)

        return adapted_model(
            self.model,
            self.inner_optimizer,
            loss,
            steps=steps,
            meta_grad=meta_grad,
            snapshots=tuple(snapshots),
        )

    def _collect_adapted(self, fmodel: Any, weights: list[Tensor], task: Any) -> Episodes:
        """The query episodes of ``task``, acting with the functional model ``fmodel`` at the
        task's fast ``weights`` (seeded by the task's ``eval_seed``)."""

        def policy(observations: Tensor) -> Distribution:
            return fmodel(observations, params=weights)

        return self.collect(policy, [task], step_seed(task.eval_seed, 0))

    # -- meta-training -----------------------------------------------------------------------
    def meta_train_step(self, tasks: Sequence[Any]) -> dict[str, float]:
        """One TRPO meta-update on ``tasks`` (this process's share of the meta-batch under
        ``torchrun``; see :attr:`mean_over_processes`)."""
        tasks = list(tasks)
        # Each task's own seeds, not the batch's: the episodes do not depend on the batch's split.
        caches = [[self.collect(self.model, [t], step_seed(t.seed, 0))] for t in tasks]
        weights, fmodel = [], None
        for task, cache in zip(tasks, caches, strict=True):
            with (
                torch.enable_grad(),
                self._adapted(
                    task,
                    steps=self.train_steps,
                    meta_grad=False,
                    snapshots=[self.train_steps],
                    cache=cache,
                ) as adaptation,
            ):
                fmodel = adaptation.model
            weights.append(adaptation.snapshots[self.train_steps])
        queries = [self._collect_adapted(fmodel, w, t) for w, t in zip(weights, tasks, strict=True)]
        for episodes in [*(e for cache in caches for e in cache), *queries]:
            self.count(episodes)
        query_adv = [advantages(q, self.gamma, self.gae_lambda)[0] for q in queries]
        obs, acts, mask = [], [], []
        for query in queries:
            observations, actions, steps_mask = episode_steps(query)
            obs.append(observations[0].reshape(-1, *observations.shape[3:]))
            acts.append(actions[0].reshape(-1, *actions.shape[3:]))
            mask.append(steps_mask[0])
        with torch.no_grad():
            old = [
                detach_distribution(fmodel(o, params=w)) for o, w in zip(obs, weights, strict=True)
            ]
            old_logp = [d.log_prob(a) for d, a in zip(old, acts, strict=True)]

        parameters = list(self.model.parameters())

        def loss_and_kl(differentiable: bool):
            losses, kls, fast = [], [], []
            for b, task in enumerate(tasks):
                with (
                    torch.enable_grad(),
                    self._adapted(
                        task, steps=self.train_steps, meta_grad=differentiable, cache=caches[b]
                    ) as adaptation,
                ):
                    dist = adaptation.model(obs[b])
                    ratio = torch.exp(dist.log_prob(acts[b]) - old_logp[b]).view(mask[b].shape)
                    losses.append(-masked_mean(ratio * query_adv[b], mask[b]))
                    kl = kl_divergence(old[b], dist).view(mask[b].shape)
                    kls.append(masked_mean(kl, mask[b]))
                    fast.append(list(adaptation.model.parameters()))
            loss, kl = torch.stack(losses).mean(), torch.stack(kls).mean()
            if not differentiable:
                return loss.detach(), kl.detach()
            return loss, kl, self._fisher_vector(parameters, fast, fmodel, obs, old, mask)

        stats = trpo_step(
            list(self.model.parameters()),
            loss_and_kl,
            max_kl=self.max_kl,
            damping=self.cg_damping,
            cg_iterations=self.cg_iterations,
            backtrack_ratio=self.ls_ratio,
            max_backtracks=self.ls_backtracks,
            mean=self.mean_over_processes,
        )
        # Every task has fast_batch episodes: the mean of the tasks' means is the batch's mean.
        before = torch.stack([c[0].returns().mean() for c in caches]).mean()
        after = torch.stack([q.returns().mean() for q in queries]).mean()
        return {
            "charts/return_before_adaptation": float(before),
            "charts/return_after_adaptation": float(after),
            "losses/surrogate_before": stats.loss_before,
            "losses/surrogate_after": stats.loss_after,
            "trpo/kl": stats.kl,
            "trpo/step_fraction": stats.step_fraction,
            # Under torchrun each process sees its share: the total is this process's count.
            **(self.step_metrics() if self.mean_over_processes is local_mean else {}),
        }

    def _fisher_vector(self, parameters, fast, fmodel, obs, old, mask):
        """``v -> H v``, ``H`` the Hessian of the mean post-adaptation KL with respect to the
        initial weights, as ``mean_b J_b^T K_b J_b v``: ``J_b`` the Jacobian of task ``b``'s fast
        weights and ``K_b`` the KL's Hessian at them. This is exact where the KL's gradient is
        zero (at the weights that collected the data, where TRPO evaluates it) and needs only
        second derivatives, not the third ones of differentiating the KL twice through the
        inner step."""
        kl_grads, detached = [], []
        for b, weights in enumerate(fast):
            free = [w.detach().requires_grad_() for w in weights]
            with torch.enable_grad():
                kl = masked_mean(
                    kl_divergence(old[b], fmodel(obs[b], params=free)).view(mask[b].shape),
                    mask[b],
                )
                kl_grads.append(torch.autograd.grad(kl, free, create_graph=True))
            detached.append(free)
        symmetric = self.train_steps <= 1 and self.learning_rates is None

        def split(v: Tensor) -> list[Tensor]:
            out, offset = [], 0
            for p in parameters:
                out.append(v[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
            return out

        def product(v: Tensor) -> Tensor:
            total = torch.zeros_like(v)
            pieces = split(v)
            for weights, grads, free in zip(fast, kl_grads, detached, strict=True):
                if symmetric:  # J = I - lr * Hessian of the inner loss: J v = J^T v
                    jv = torch.autograd.grad(weights, parameters, pieces, retain_graph=True)
                else:
                    dummy = [torch.zeros_like(w, requires_grad=True) for w in weights]
                    back = torch.autograd.grad(
                        weights, parameters, dummy, retain_graph=True, create_graph=True
                    )
                    jv = torch.autograd.grad(back, dummy, pieces, retain_graph=True)
                kjv = torch.autograd.grad(grads, free, jv, retain_graph=True)
                jtkjv = torch.autograd.grad(weights, parameters, kjv, retain_graph=True)
                total += flat(jtkjv)
            return total / len(fast)

        return product
