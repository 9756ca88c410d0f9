"""Vectorized episode collection over a batch of tasks.

:class:`EpisodeSampler` collects, for each task of a batch, a given number of complete episodes in
one pass over a Gymnasium ``SyncVectorEnv`` whose sub-environments each hold one task. The policy
is evaluated once per vector step on the observations of all sub-environments (one batched
forward). Episode boundaries are exact: the vector env runs in Gymnasium's default ``NEXT_STEP``
autoreset mode, and the sampler never lets it autoreset: a sub-environment whose episode ended is
reset at once (``reset(options={"reset_mask": ...})``) with its next episode's task and seed, so no
step is an autoreset step and no transition crosses two episodes.

Every episode is reset with its own seed, derived from the collection's ``seed``, the task's index
and the episode's index, and the policy's action noise comes from a ``torch.Generator`` seeded with
``seed``: the same call gives the same episodes.

The result, :class:`Episodes`, is padded to the longest episode ``T`` and indexed
``[task, episode, time]``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import concatenate, iterate
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    MultivariateNormal,
    Normal,
    Uniform,
)

from metagym.tasks.environment import (
    EnvLike,
    check_task_protocol,
    env_name,
    episode_limit,
    make_env_fn,
)

__all__ = [
    "Episodes",
    "EpisodeSampler",
    "Policy",
    "PolicyOutput",
    "collect_episodes",
    "draw",
    "episode_seed",
    "random_policy",
]

#: What a policy returns for a batch: actions ``(N, *action_shape)``, a distribution over them
#: (batch shape ``(N,)``), or either with a dict of extra ``(N, ...)`` tensors to record per step.
PolicyOutput = Tensor | Distribution | tuple[Tensor | Distribution, Mapping[str, Tensor]]
#: A policy: observations ``(N, *observation_shape)`` -> :data:`PolicyOutput`. A policy with memory
#: (recurrent) may also define ``reset_memory(mask: Tensor)``, ``mask`` bool ``(N,)``: the sampler
#: calls it before the forward of a step where rows start afresh (see :meth:`EpisodeSampler.sample`).
Policy = Callable[[Tensor], PolicyOutput]

#: An episode longer than this without a time limit is taken for a missing limit.
MAX_UNLIMITED_STEPS = 10_000


def episode_seed(seed: int, task_index: int, episode_index: int) -> int:
    """The reset seed of episode ``episode_index`` of task ``task_index`` in a collection seeded
    ``seed`` (independent of the batch size and of the number of sub-environments)."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(task_index, episode_index))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def draw(distribution: Distribution, generator: torch.Generator) -> Tensor:
    """A sample of ``distribution`` drawn with ``generator`` (torch's ``sample()`` cannot take one).

    Supports ``Normal``, ``MultivariateNormal``, ``Uniform``, ``Categorical``, ``Bernoulli`` and
    ``Independent`` around them; raises ``TypeError`` for other distributions.
    """
    with torch.no_grad():
        if isinstance(distribution, Independent):
            return draw(distribution.base_dist, generator)
        if isinstance(distribution, Normal):
            noise = torch.randn(
                distribution.loc.shape,
                generator=generator,
                dtype=distribution.loc.dtype,
                device=distribution.loc.device,
            )
            return distribution.loc + distribution.scale * noise
        if isinstance(distribution, MultivariateNormal):
            loc = distribution.loc
            noise = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
            return loc + (distribution.scale_tril @ noise.unsqueeze(-1)).squeeze(-1)
        if isinstance(distribution, Uniform):
            low, high = distribution.low, distribution.high
            u = torch.rand(low.shape, generator=generator, dtype=low.dtype, device=low.device)
            return low + (high - low) * u
        if isinstance(distribution, Categorical):
            probs = distribution.probs
            flat = probs.reshape(-1, probs.shape[-1])
            picks = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
            return picks
        if isinstance(distribution, Bernoulli):
            probs = distribution.probs
            u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device)
            return (u < probs).to(probs.dtype)
    raise TypeError(
        f"the sampler cannot draw from {type(distribution).__name__} with an explicit generator; "
        "return actions, or a Normal, MultivariateNormal, Uniform, Categorical or Bernoulli "
        "(optionally inside Independent)"
    )


def random_policy(action_space: gym.Space) -> Policy:
    """A policy that acts uniformly at random (Box with finite bounds, Discrete, MultiBinary)."""
    if isinstance(action_space, spaces.Box):
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise ValueError("random_policy needs a Box action space with finite bounds")
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)

        def box_policy(observations: Tensor) -> Distribution:
            n = observations.shape[0]
            return Uniform(low.expand(n, *low.shape), high.expand(n, *high.shape))

        return box_policy
    if isinstance(action_space, spaces.Discrete):
        k = int(action_space.n)

        def discrete_policy(observations: Tensor) -> Distribution:
            logits = torch.zeros(observations.shape[0], k)
            return Categorical(logits=logits)

        return discrete_policy
    if isinstance(action_space, spaces.MultiBinary):
        shape = tuple(action_space.shape)

        def binary_policy(observations: Tensor) -> Distribution:
            return Bernoulli(probs=torch.full((observations.shape[0], *shape), 0.5))

        return binary_policy
    raise TypeError(f"random_policy does not support {action_space}")


@dataclass(frozen=True)
class Episodes:
    """Complete episodes of a batch of tasks, padded to the longest one.

    Shapes use ``B`` tasks, ``E`` episodes per task and ``T`` the longest episode's length;
    entries past an episode's end are zero (``mask`` tells them apart).

    Attributes:
        observations: ``(B, E, T + 1, *obs_shape)``; ``observations[b, e, t]`` is what the policy
            saw before action ``t``, and ``observations[b, e, lengths[b, e]]`` the observation after
            the last step (the final observation, for bootstrapping a truncated episode). float32
            for Box spaces, int64 for discrete ones.
        actions: ``(B, E, T, *action_shape)``, as the policy returned them (before clipping to a Box
            action space); float32 for Box spaces, int64 for discrete ones.
        rewards: ``(B, E, T)`` float32.
        dones: ``(B, E, T)`` bool, True at the last step of each episode (terminated or truncated).
        terminated: ``(B, E, T)`` bool, True at the last step of an episode that ended by the
            environment's termination (no bootstrapping), False when it was truncated.
        mask: ``(B, E, T)`` float32, 1 for the steps of an episode and 0 for padding.
        lengths: ``(B, E)`` int64, the number of steps of each episode (>= 1).
        tasks: the ``B`` task dicts, ``tasks[b]`` the task of every episode ``[b, :]``.
        seeds: ``(B, E)`` int64, the reset seed of each episode.
        extras: per-step tensors ``(B, E, T, ...)``: ``log_prob`` (float32) when the policy returned
            a distribution (the log-probability of the action taken, detached), whatever extra
            tensors the policy returned, and the sampler's ``info_keys`` (float32, from the info
            of each step, e.g. Meta-World's ``success``).
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    dones: Tensor
    terminated: Tensor
    mask: Tensor
    lengths: Tensor
    tasks: tuple[dict[str, Any], ...]
    seeds: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def num_tasks(self) -> int:
        return self.rewards.shape[0]

    @property
    def episodes_per_task(self) -> int:
        return self.rewards.shape[1]

    @property
    def num_steps(self) -> int:
        """Environment steps in all episodes (padding excluded)."""
        return int(self.lengths.sum())

    def returns(self) -> Tensor:
        """Undiscounted return of each episode, ``(B, E)`` float32."""
        return (self.rewards * self.mask).sum(-1)

    def task(self, index: int) -> Episodes:
        """The episodes of task ``index``, as an :class:`Episodes` with ``B = 1``."""
        pick = slice(index, index + 1)
        return Episodes(
            observations=self.observations[pick],
            actions=self.actions[pick],
            rewards=self.rewards[pick],
            dones=self.dones[pick],
            terminated=self.terminated[pick],
            mask=self.mask[pick],
            lengths=self.lengths[pick],
            tasks=self.tasks[pick],
            seeds=self.seeds[pick],
            extras={k: v[pick] for k, v in self.extras.items()},
        )

    def to(self, device: torch.device | str) -> Episodes:
        move = {
            name: getattr(self, name).to(device)
            for name in ("observations", "actions", "rewards", "dones", "terminated", "mask")
        }
        extras = {k: v.to(device) for k, v in self.extras.items()}
        return replace(self, **move, lengths=self.lengths.to(device), extras=extras)


def _space_dtype(space: gym.Space, what: str) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(space, spaces.Box):
        return tuple(space.shape), np.dtype(np.float32)
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        return tuple(space.shape), np.dtype(np.int64)
    raise TypeError(
        f"the sampler supports Box, Discrete, MultiDiscrete and MultiBinary {what} spaces, got "
        f"{space}; wrap the environment (e.g. gymnasium.wrappers.FlattenObservation)"
    )


class _Buffers:
    """Per-episode storage ``(B, E, capacity, ...)``, grown along time when an episode needs it."""

    def __init__(self, b: int, e: int, capacity: int, obs_spec, act_spec):
        self.shape = (b, e)
        self.capacity = capacity
        (obs_shape, obs_dtype), (act_shape, act_dtype) = obs_spec, act_spec
        self.observations = np.zeros((b, e, capacity + 1, *obs_shape), obs_dtype)
        self.actions = np.zeros((b, e, capacity, *act_shape), act_dtype)
        self.rewards = np.zeros((b, e, capacity), np.float32)
        self.terminated = np.zeros((b, e, capacity), np.bool_)
        self.dones = np.zeros((b, e, capacity), np.bool_)
        self.extras: dict[str, np.ndarray] = {}

    def _time_arrays(self) -> list[str]:
        return ["actions", "rewards", "terminated", "dones"]

    def grow(self, needed: int) -> None:
        new = self.capacity
        while new < needed:
            new *= 2

        def widen(array: np.ndarray, extra: int) -> np.ndarray:
            pad = np.zeros((*array.shape[:2], extra, *array.shape[3:]), array.dtype)
            return np.concatenate([array, pad], axis=2)

        extra = new - self.capacity
        self.observations = widen(self.observations, extra)
        for name in self._time_arrays():
            setattr(self, name, widen(getattr(self, name), extra))
        self.extras = {k: widen(v, extra) for k, v in self.extras.items()}
        self.capacity = new

    def add_extras(self, extras: Mapping[str, np.ndarray]) -> None:
        for name, value in extras.items():
            if name not in self.extras:
                self.extras[name] = np.zeros(
                    (*self.shape, self.capacity, *value.shape[1:]), value.dtype
                )


class _InfoFreeSyncVectorEnv(SyncVectorEnv):
    """A ``SyncVectorEnv`` in ``NEXT_STEP`` autoreset mode whose ``step`` returns only the info
    entries named in ``info_keys``, as ``{key: float32 array (num_envs,)}`` (0 where a
    sub-environment's info lacks the key).

    Merging the sub-environments' whole info dicts (``info["task"]`` is a nested dict) costs more
    than a cheap environment's step. Everything else, autoreset included, is Gymnasium's; should a
    Gymnasium version lack the private attributes used here, ``step`` falls back to Gymnasium's own.
    """

    _FIELDS = ("_env_obs", "_rewards", "_terminations", "_truncations", "_autoreset_envs")

    def __init__(self, *args: Any, info_keys: Sequence[str] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.info_keys = tuple(info_keys)
        self._fast = self.autoreset_mode == AutoresetMode.NEXT_STEP and all(
            hasattr(self, name) for name in self._FIELDS
        )

    def step(self, actions: Any):
        if not self._fast:
            observations, rewards, terminations, truncations, infos = super().step(actions)
            picked = {
                key: np.asarray(infos.get(key, np.zeros(self.num_envs)), np.float32)
                for key in self.info_keys
            }
            return observations, rewards, terminations, truncations, picked
        picked = {key: np.zeros(self.num_envs, np.float32) for key in self.info_keys}
        for i, action in enumerate(iterate(self.action_space, actions)):
            env = self.envs[i]
            if self._autoreset_envs[i]:
                self._env_obs[i], _ = env.reset()
                self._rewards[i] = 0.0
                self._terminations[i] = False
                self._truncations[i] = False
            else:
                (
                    self._env_obs[i],
                    self._rewards[i],
                    self._terminations[i],
                    self._truncations[i],
                    info,
                ) = env.step(action)
                for key in self.info_keys:
                    picked[key][i] = info.get(key, 0.0)
        self._observations = concatenate(
            self.single_observation_space, self._env_obs, self._observations
        )
        self._autoreset_envs = np.logical_or(self._terminations, self._truncations)
        return (
            self._observations,
            np.copy(self._rewards),
            np.copy(self._terminations),
            np.copy(self._truncations),
            picked,
        )


class EpisodeSampler:
    """Collects complete episodes of a batch of tasks through a Gymnasium vector environment.

    The sampler keeps a pool of environments (made once, reused across calls) and builds a
    ``SyncVectorEnv`` over as many of them as a call needs.

    Args:
        env: the environment: a registered id, a ``"module:Class"`` / ``"module:factory"`` string, a
            class or a factory (see :func:`metagym.tasks.environment.make_env_fn`). It must have
            ``set_task``.
        env_kwargs: its constructor arguments.
        max_episode_steps: a step limit overriding the registered one.
        max_envs: most sub-environments used at once (None: one per episode, all in parallel).
            With fewer, each sub-environment runs several episodes one after the other.
        device: where observations are put for the policy; episodes are returned on the CPU.
        torch_threads: torch's intra-op threads while collecting, restored afterwards (default 1:
            a small policy's batched forward is fastest on one thread, and on a busy machine
            multi-threaded tiny operations take milliseconds each). None leaves the setting alone.
        info_keys: entries of the environment's step ``info`` recorded per step as float32
            extras ``(B, E, T)`` of the episodes (e.g. ``("success",)`` for Meta-World; 0 where a
            step's info lacks the key). The step's info is read for nothing else.
    """

    def __init__(
        self,
        env: EnvLike,
        *,
        env_kwargs: Mapping[str, Any] | None = None,
        max_episode_steps: int | None = None,
        max_envs: int | None = None,
        device: torch.device | str = "cpu",
        torch_threads: int | None = 1,
        info_keys: Sequence[str] = (),
    ):
        if max_envs is not None and (
            isinstance(max_envs, bool) or not isinstance(max_envs, int) or max_envs < 1
        ):
            raise ValueError(f"max_envs must be an int >= 1 or None, got {max_envs!r}")
        self.name = env_name(env)
        self.env_fn = make_env_fn(env, env_kwargs, max_episode_steps)
        self.max_envs = max_envs
        self.device = torch.device(device)
        self.torch_threads = torch_threads
        if isinstance(info_keys, str) or not all(isinstance(k, str) for k in info_keys):
            raise TypeError(f"info_keys must be a sequence of strings, got {info_keys!r}")
        self.info_keys = tuple(info_keys)
        self._pool: list[gym.Env] = [self.env_fn()]
        first = self._pool[0]
        check_task_protocol(first, self.name)
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        self._obs_spec = _space_dtype(self.observation_space, "observation")
        self._act_spec = _space_dtype(self.action_space, "action")
        self.time_limit = episode_limit(first)
        box = isinstance(self.action_space, spaces.Box)
        self._clip = (
            (self.action_space.low, self.action_space.high)
            if box and np.any(np.isfinite(self.action_space.low))
            else None
        )

    # -- environments ------------------------------------------------------------------------
    def _vector_env(self, n: int) -> SyncVectorEnv:
        while len(self._pool) < n:
            self._pool.append(self.env_fn())
        envs = self._pool[:n]
        return _InfoFreeSyncVectorEnv(
            [lambda env=env: env for env in envs],
            copy=False,
            autoreset_mode=AutoresetMode.NEXT_STEP,
            info_keys=self.info_keys,
        )

    def close(self) -> None:
        """Close every environment of the pool."""
        for env in self._pool:
            env.close()
        self._pool = []

    def __enter__(self) -> EpisodeSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collection --------------------------------------------------------------------------
    def _policy_step(
        self, policy: Policy, observations: np.ndarray, generator: torch.Generator
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # A copy: the vector env reuses its observation array, and a policy may keep its input.
        obs = torch.from_numpy(np.array(observations, dtype=self._obs_spec[1])).to(self.device)
        with torch.no_grad():
            output = policy(obs)
            extras: dict[str, Tensor] = {}
            if isinstance(output, tuple):
                output, user_extras = output
                extras.update(user_extras)
            if isinstance(output, Distribution):
                actions = draw(output, generator)
                extras["log_prob"] = output.log_prob(actions)
            elif isinstance(output, Tensor):
                actions = output
            else:
                raise TypeError(
                    "a policy returns actions (a Tensor), a torch Distribution, or either with a "
                    f"dict of extras; got {type(output).__name__}"
                )
        n = observations.shape[0]
        actions_np = actions.detach().cpu().numpy().astype(self._act_spec[1], copy=False)
        if actions_np.shape != (n, *self._act_spec[0]):
            raise ValueError(
                f"the policy returned actions of shape {tuple(actions_np.shape)} for {n} "
                f"observations; expected {(n, *self._act_spec[0])} for {self.action_space}"
            )
        extras_np = {}
        for name, value in extras.items():
            value = torch.as_tensor(value).detach().cpu().numpy()
            if value.shape[:1] != (n,):
                raise ValueError(
                    f"the policy's extra {name!r} has shape {value.shape}, not (N, ...)"
                )
            extras_np[name] = value.astype(np.float32) if value.dtype == np.float64 else value
        return actions_np, extras_np

    def sample(
        self,
        policy: Policy,
        tasks: Sequence[Mapping[str, Any] | Any],
        episodes_per_task: int,
        *,
        seed: int,
        trials: bool = False,
    ) -> Episodes:
        """Run ``policy`` for ``episodes_per_task`` complete episodes of each task.

        Args:
            policy: observations ``(N, *obs_shape)`` (float32, or int64 for discrete spaces, on
                ``device``) -> actions ``(N, *action_shape)``, a torch distribution (sampled here
                with a generator seeded by ``seed``), or either with a dict of extra ``(N, ...)``
                tensors. It runs under ``torch.no_grad()``, once per step for all sub-environments.
                Actions are clipped to a Box action space before stepping (recorded unclipped).
            tasks: task dicts, or objects with a ``params`` dict (e.g. :class:`~metagym.tasks.RLTask`).
            episodes_per_task: ``E``, complete episodes per task.
            seed: the collection's seed (episode reset seeds and action noise).
            trials: False: every episode is independent; a policy's ``reset_memory(mask)`` is called
                for the rows starting any episode. True (RL^2 trials): one sub-environment per task
                runs its ``E`` episodes in order, and ``reset_memory`` is called only once, for
                all rows, before the first step, so a recurrent policy keeps its memory across the
                episodes of a task.

        Rows (the batch the policy sees, ``N`` sub-environments): with ``trials=False`` the
        episodes are jobs ``k = b * E + e`` (task ``b``, episode ``e``), and job ``k`` runs on row
        ``k % N``, in order. So with ``max_envs`` None (or >= ``B * E``), row ``i`` holds episode
        ``(i // E, i % E)`` for the whole call: rows ``[b * E, (b + 1) * E)`` are task ``b``'s, and a
        policy may act with per-task weights. With ``trials=True``, row ``b`` holds task ``b``.
        Rows whose episodes are all done keep being stepped (their data is discarded) until
        the last episode ends.

        Returns:
            :class:`Episodes` with ``B = len(tasks)`` and ``E = episodes_per_task``.
        """
        threads = torch.get_num_threads()
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        try:
            return self._sample(policy, tasks, episodes_per_task, seed=seed, trials=trials)
        finally:
            torch.set_num_threads(threads)

    def _sample(self, policy, tasks, episodes_per_task, *, seed, trials) -> Episodes:
        params = [_task_params(t) for t in tasks]
        if not params:
            raise ValueError("sample() needs at least one task")
        if (
            isinstance(episodes_per_task, bool)
            or not isinstance(episodes_per_task, int)
            or episodes_per_task < 1
        ):
            raise ValueError(f"episodes_per_task must be an int >= 1, got {episodes_per_task!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {seed!r}")
        seed = int(seed)
        n_tasks, n_episodes = len(params), episodes_per_task

        # Jobs are (task, episode) pairs; queues[i] lists the jobs of sub-environment i in order.
        if trials:
            if self.max_envs is not None and self.max_envs < n_tasks:
                raise ValueError(
                    f"trials need one sub-environment per task: {n_tasks} tasks, max_envs={self.max_envs}"
                )
            queues = [[(b, e) for e in range(n_episodes)] for b in range(n_tasks)]
        else:
            n_jobs = n_tasks * n_episodes
            n_envs = min(n_jobs, self.max_envs or n_jobs)
            jobs = [(b, e) for b in range(n_tasks) for e in range(n_episodes)]
            queues = [jobs[i::n_envs] for i in range(n_envs)]
        n_envs = len(queues)
        vec = self._vector_env(n_envs)
        inners = [env.unwrapped for env in vec.envs]
        seeds = np.array(
            [[episode_seed(seed, b, e) for e in range(n_episodes)] for b in range(n_tasks)],
            dtype=np.int64,
        )
        generator = torch.Generator().manual_seed(seed)
        capacity = self.time_limit or 64
        buffers = _Buffers(n_tasks, n_episodes, capacity, self._obs_spec, self._act_spec)
        lengths = np.zeros((n_tasks, n_episodes), np.int64)

        cursor = np.zeros(n_envs, np.int64)  # index of the current job in each queue
        job_b = np.array([q[0][0] for q in queues], np.int64)
        job_e = np.array([q[0][1] for q in queues], np.int64)
        task_of = [-1] * n_envs
        for i in range(n_envs):
            self._set_task(inners[i], params, job_b[i], task_of, i)
        with self._shape_errors(params, job_b):
            observations, _ = vec.reset(
                seed=[int(seeds[b, e]) for b, e in zip(job_b, job_e, strict=True)]
            )
        t = np.zeros(n_envs, np.int64)  # step index within the current episode
        self._check_finite("observation", observations, np.arange(n_envs), params, job_b, t)
        buffers.observations[job_b, job_e, 0] = observations
        active = np.ones(n_envs, np.bool_)
        rows = np.arange(n_envs)
        memory = getattr(policy, "reset_memory", None)
        starting = np.ones(n_envs, np.bool_)

        while active.any():
            if memory is not None and starting.any():
                memory(torch.tensor(starting, device=self.device))
            actions, extras = self._policy_step(policy, observations, generator)
            stepped = actions if self._clip is None else np.clip(actions, *self._clip)
            with self._shape_errors(params, job_b):
                observations, rewards, terminations, truncations, infos = vec.step(stepped)
            if infos:
                extras = {**extras, **infos}

            live = rows[active]
            b, e, s = job_b[live], job_e[live], t[live]
            self._check_finite("reward", rewards, live, params, job_b, t)
            self._check_finite("observation", observations, live, params, job_b, t)
            if s.max() >= buffers.capacity:
                if s.max() >= MAX_UNLIMITED_STEPS:
                    raise RuntimeError(
                        f"{self.name}: an episode ran {MAX_UNLIMITED_STEPS} steps without ending; "
                        "give the environment a step limit (max_episode_steps)"
                    )
                buffers.grow(int(s.max()) + 1)
            if extras:
                buffers.add_extras(extras)
                for name, value in extras.items():
                    buffers.extras[name][b, e, s] = value[live]
            buffers.actions[b, e, s] = actions[live]
            buffers.rewards[b, e, s] = rewards[live]
            buffers.terminated[b, e, s] = terminations[live]
            ended = terminations[live] | truncations[live]
            buffers.dones[b, e, s] = ended
            buffers.observations[b, e, s + 1] = observations[live]
            t[live] += 1

            starting[:] = False
            if not ended.any():
                continue
            finished = live[ended]
            lengths[job_b[finished], job_e[finished]] = t[finished]
            restart = []
            for i in finished:
                cursor[i] += 1
                if cursor[i] < len(queues[i]):
                    job_b[i], job_e[i] = queues[i][cursor[i]]
                    t[i] = 0
                    self._set_task(inners[i], params, job_b[i], task_of, i)
                    restart.append(i)
                else:
                    active[i] = False
            if restart:
                # Reset now (not at the vector env's next step): the next step is a real step.
                mask = np.zeros(n_envs, np.bool_)
                mask[restart] = True
                reset_seeds: list[int | None] = [None] * n_envs
                for i in restart:
                    reset_seeds[i] = int(seeds[job_b[i], job_e[i]])
                with self._shape_errors(params, job_b):
                    observations, _ = vec.reset(seed=reset_seeds, options={"reset_mask": mask})
                self._check_finite("observation", observations, np.array(restart), params, job_b, t)
                buffers.observations[job_b[restart], job_e[restart], 0] = observations[restart]
                starting[restart] = not trials

        steps = int(lengths.max())
        mask = np.arange(steps)[None, None, :] < lengths[:, :, None]
        return Episodes(
            observations=torch.from_numpy(buffers.observations[:, :, : steps + 1].copy()),
            actions=torch.from_numpy(buffers.actions[:, :, :steps].copy()),
            rewards=torch.from_numpy(buffers.rewards[:, :, :steps].copy()),
            dones=torch.from_numpy(buffers.dones[:, :, :steps].copy()),
            terminated=torch.from_numpy(buffers.terminated[:, :, :steps].copy()),
            mask=torch.from_numpy(mask.astype(np.float32)),
            lengths=torch.from_numpy(lengths),
            tasks=tuple(params),
            seeds=torch.from_numpy(seeds),
            extras={k: torch.from_numpy(v[:, :, :steps].copy()) for k, v in buffers.extras.items()},
        )

    @contextlib.contextmanager
    def _shape_errors(self, params, job_b):
        """Name an observation that does not fit the observation space (a shape that changes
        with the task) instead of numpy's "Output array is the wrong shape"."""
        try:
            yield
        except ValueError as error:
            if "shape" not in str(error):
                raise
            tasks = sorted({json.dumps(params[b], sort_keys=True) for b in job_b})
            raise ValueError(
                f"{self.name} returned an observation that does not fit its observation space "
                f"{self._obs_spec[0]} under one of the tasks {', '.join(tasks[:4])} ({error}): "
                "the spaces must not depend on the task"
            ) from None

    def _check_finite(self, what, values, live, params, job_b, t) -> None:
        """Raise a ValueError naming the environment, task, step and value when the environment
        returned a NaN or infinite ``what`` (reward or observation) on a live row."""
        array = np.asarray(values)
        if not np.issubdtype(array.dtype, np.floating) or np.isfinite(array).all():
            return  # the common case, checked without copying the live rows
        flat = array[live].reshape(len(live), -1)
        bad = ~np.isfinite(flat).all(axis=1)
        if bad.any():
            row = int(live[np.argmax(bad)])
            raise ValueError(
                f"{self.name} returned a non-finite {what} {array[row].tolist()!r} at step "
                f"{int(t[row])} of task {params[job_b[row]]!r}; the environment must return "
                "finite rewards and observations"
            )

    @staticmethod
    def _set_task(inner: Any, params: list[dict[str, Any]], b: int, task_of: list[int], i: int):
        if task_of[i] != b:
            inner.set_task(params[b])
            task_of[i] = int(b)


def _task_params(task: Any) -> dict[str, Any]:
    if isinstance(task, Mapping):
        return dict(task)
    params = getattr(task, "params", None)
    if isinstance(params, Mapping):
        return dict(params)
    raise TypeError(f"a task is a dict or has a params dict (RLTask); got {task!r:.200}")


def collect_episodes(
    env: EnvLike,
    policy: Policy,
    tasks: Sequence[Mapping[str, Any] | Any],
    episodes_per_task: int,
    *,
    seed: int,
    trials: bool = False,
    env_kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
    max_envs: int | None = None,
) -> Episodes:
    """One-off :meth:`EpisodeSampler.sample` (builds the environments, then closes them)."""
    with EpisodeSampler(
        env, env_kwargs=env_kwargs, max_episode_steps=max_episode_steps, max_envs=max_envs
    ) as sampler:
        return sampler.sample(policy, tasks, episodes_per_task, seed=seed, trials=trials)
