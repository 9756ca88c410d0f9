"""Meta-World (v3) ML1 / ML10 / ML45 as one task-protocol environment with JSON-safe tasks.

``MetaWorldEnv(benchmark="ML1", env_name="reach-v3")``, ``MetaWorldEnv(benchmark="ML10")`` and
``MetaWorldEnv(benchmark="ML45")`` are plain Gymnasium environments (registered as
``metaworld/ML1-<env>-v3``, ``metaworld/ML10`` and ``metaworld/ML45``) following the task protocol
of :mod:`metagym_envs.core`. Needs the optional ``metaworld`` package (``pip install
metagym-lab[metaworld]``); its MuJoCo assets ship in the wheel, nothing is downloaded.

Splits (``task_splits``), 50 goals per environment each, as Meta-World builds them:

- ML1: ``train`` = ``metaworld.ML1(env, seed).train_tasks``, ``test`` = its ``test_tasks``;
- ML10 / ML45: ``train`` = ``metaworld.ML10(seed).train_tasks`` (the training envs), ``test`` = new
  goals of the training envs (drawn as ML1 draws its test goals: Meta-World's goal sampler seeded
  ``seed + 1``), ``ood-heldout`` = ``ML10(seed).test_tasks`` (the held-out envs: new task families).

A task is ``{"env_name": "reach-v3", "rand_vec": [floats]}``: the environment and its goal vector
(Meta-World's ``rand_vec``, 3 or 6 numbers). Meta-World's own tasks are an env name plus pickled
bytes; those bytes are made here, inside ``set_task``, and never leave this module.
``sample_tasks`` draws from the environment's ``np_random`` only, stratified over the split's
envs (task ``i`` of a draw is env ``perm[i % K]`` of a random permutation of the ``K`` envs), so
that every env gets ``n // K`` or ``n // K + 1`` tasks. Goals are made with Meta-World's sampler
under its benchmark seed, with numpy's global state saved and restored: the same seed gives the
same goals whatever the global numpy state.

Observations are Meta-World's 39 numbers (hand, gripper, two object poses, the previous frame,
and the goal, which is zeroed: the ML benchmarks hide it); actions are 4 numbers in [-1, 1].
``info["success"]`` is 1.0 at a step where the task is solved. Episodes last 500 steps
(Meta-World's ``max_path_length``; the registered time limit).

Sawyer environments are expensive to build (about 0.3 s and 25 MB each): every
:class:`MetaWorldEnv` of a process draws them from one shared pool, by env name, and gives them
back when it switches env or closes; a task switch always needs a ``reset()`` before stepping.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metagym_envs.core import TaskEnvMixin

__all__ = ["BENCHMARKS", "MAX_PATH_LENGTH", "MetaWorldEnv", "benchmark_envs", "goals"]

#: The benchmarks this module exposes.
BENCHMARKS = ("ML1", "ML10", "ML45")
#: Meta-World's episode length (its environments refuse a step past it).
MAX_PATH_LENGTH = 500
_N_GOALS = 50
_OBS_DIM = 39


def _metaworld():
    try:
        import metaworld
    except ImportError as error:
        raise ImportError(
            "Meta-World environments need the metaworld package: pip install 'metagym-lab[metaworld]' "
            f"(or pip install metaworld) ({error})"
        ) from None
    return metaworld


def v3_env_names() -> list[str]:
    """Every Meta-World v3 environment name (``reach-v3``, ``push-v3``, ...)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    _metaworld()
    return list(ALL_V3_ENVIRONMENTS)


def benchmark_envs(benchmark: str, env_name: str | None = None) -> dict[str, list[str]]:
    """The env names of each split of ``benchmark`` (``ML1`` needs ``env_name``)."""
    _metaworld()
    from metaworld import env_dict

    if benchmark == "ML1":
        if env_name not in env_dict.ALL_V3_ENVIRONMENTS:
            names = ", ".join(env_dict.ALL_V3_ENVIRONMENTS)
            raise ValueError(f"unknown Meta-World v3 environment {env_name!r}; accepted: {names}")
        return {"train": [env_name], "test": [env_name]}
    if benchmark in ("ML10", "ML45"):
        if env_name is not None:
            raise ValueError(f"{benchmark} takes no env_name (got {env_name!r}); ML1 does")
        classes = env_dict.ML10_V3 if benchmark == "ML10" else env_dict.ML45_V3
        train, held_out = list(classes["train"]), list(classes["test"])
        return {"train": train, "test": train, "ood-heldout": held_out}
    raise ValueError(
        f"unknown Meta-World benchmark {benchmark!r}; accepted: {', '.join(BENCHMARKS)}"
    )


# -- goals ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _goal_table(names: tuple[str, ...], seed: int) -> dict[str, tuple[tuple[float, ...], ...]]:
    """``_N_GOALS`` goal vectors per env of ``names``, exactly as ``metaworld._make_tasks`` draws
    them with ``seed`` (numpy's global generator seeded once, envs in order, 50 resets each),
    with the global state restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    table: dict[str, tuple[tuple[float, ...], ...]] = {}
    try:
        for name in names:
            env = _POOL.take(name)
            try:
                # As _make_tasks: its task kwargs hold only task_id, which it deletes.
                env._freeze_rand_vec = False
                env._set_task_called = True
                env._set_task_inner()
                vectors = []
                for _ in range(_N_GOALS):
                    env.reset()
                    vectors.append(tuple(float(v) for v in env._last_rand_vec))
                table[name] = tuple(vectors)
            finally:
                env._freeze_rand_vec = True
                _POOL.give(name, env)
    finally:
        np.random.set_state(state)
    return table


def goals(benchmark: str, env_name: str | None, split: str, seed: int = 0) -> dict[str, list]:
    """``{env: [goal vectors]}`` of ``split`` of ``benchmark`` under the benchmark ``seed``
    (the same goals as ``metaworld.ML1(env_name, seed)`` / ``ML10(seed)`` / ``ML45(seed)``)."""
    splits = benchmark_envs(benchmark, env_name)
    if split not in splits:
        raise ValueError(
            f"Meta-World {benchmark} has no split {split!r}; accepted: {', '.join(splits)}"
        )
    names = splits[split]
    # ML1's test goals and the ML10/ML45 training envs' new goals: Meta-World's ML1 convention.
    table_seed = seed + 1 if split == "test" else seed
    if benchmark == "ML1" or split == "test":
        # ML1 builds each env's goals alone; so do the new goals of ML10/ML45's training envs.
        table = {}
        for name in names:
            table.update(_goal_table((name,), table_seed))
    else:
        table = _goal_table(tuple(names), table_seed)
    return {name: [list(v) for v in table[name]] for name in names}


# -- the shared pool of Sawyer environments ----------------------------------------------------------
class _SawyerPool:
    """Free Sawyer environments by env name, shared by the :class:`MetaWorldEnv` of a process."""

    def __init__(self):
        self.free: dict[str, list[Any]] = {}
        self.made = 0

    def take(self, name: str) -> Any:
        free = self.free.get(name)
        if free:
            return free.pop()
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        env = ALL_V3_ENVIRONMENTS[name]()
        env.max_path_length = MAX_PATH_LENGTH
        self.made += 1
        return env

    def give(self, name: str, env: Any) -> None:
        self.free.setdefault(name, []).append(env)


_POOL = _SawyerPool()


class MetaWorldEnv(TaskEnvMixin, gym.Env):
    """One Meta-World benchmark as a task-protocol environment (see the module docstring).

    Args:
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        env_name: the v3 environment of ML1 (e.g. ``"reach-v3"``).
        benchmark_seed: the seed of Meta-World's goal sampler (the benchmark's goals; 0 by default).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    task_keys: ClassVar[tuple[str, ...]] = ("env_name", "rand_vec")

    def __init__(
        self, benchmark: str = "ML1", env_name: str | None = None, benchmark_seed: int = 0
    ):
        _metaworld()
        if isinstance(benchmark_seed, bool) or not isinstance(benchmark_seed, int):
            raise TypeError(f"benchmark_seed must be an int, got {benchmark_seed!r}")
        self.benchmark, self.env_name, self.benchmark_seed = benchmark, env_name, benchmark_seed
        self.split_envs = benchmark_envs(benchmark, env_name)
        self.task_splits = tuple(self.split_envs)
        self.env_names = list(dict.fromkeys(n for names in self.split_envs.values() for n in names))
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(_OBS_DIM,), dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.max_episode_steps = MAX_PATH_LENGTH
        self._sawyer: Any = None
        self._sawyer_name: str | None = None
        self._needs_reset = True
        first = self.split_envs["train"][0]
        self._init_task(
            {
                "env_name": first,
                "rand_vec": goals(benchmark, env_name, "train", benchmark_seed)[first][0],
            }
        )

    @property
    def name(self) -> str:
        return f"ML1-{self.env_name}" if self.benchmark == "ML1" else self.benchmark

    # -- the task protocol ---------------------------------------------------------------------
    def _sample_task(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError  # sample_tasks draws a whole stratified batch

    def sample_tasks(self, n: int, split: str = "train") -> list[dict[str, Any]]:
        """``n`` tasks of ``split`` from ``np_random``, stratified over the split's envs."""
        if split not in self.task_splits:
            raise ValueError(
                f"Meta-World {self.name}: unknown split {split!r}; accepted: {', '.join(self.task_splits)}"
            )
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"Meta-World {self.name}: n must be an int >= 0, got {n!r}")
        table = goals(self.benchmark, self.env_name, split, self.benchmark_seed)
        names = self.split_envs[split]
        rng = self.np_random
        order = rng.permutation(len(names))
        picks = rng.integers(_N_GOALS, size=int(n))
        return [
            {
                "env_name": names[order[i % len(names)]],
                "rand_vec": list(table[names[order[i % len(names)]]][picks[i]]),
            }
            for i in range(int(n))
        ]

    def _validate_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        name = task.get("env_name")
        if name not in self.env_names:
            raise ValueError(
                f"Meta-World {self.name}: the task's env_name {name!r} is not one of its envs "
                f"({', '.join(self.env_names)})"
            )
        vector = task.get("rand_vec")
        if not isinstance(vector, (list, tuple, np.ndarray)):
            raise TypeError(
                f"Meta-World {self.name}: rand_vec must be a list of numbers, got {vector!r:.80}"
            )
        array = np.asarray(vector, dtype=np.float64).reshape(-1)
        if array.size not in (3, 6) or not np.isfinite(array).all():
            raise ValueError(
                f"Meta-World {self.name}: rand_vec must be 3 or 6 finite numbers, got {vector!r:.80}"
            )
        return {"env_name": str(name), "rand_vec": array.tolist()}

    def _apply_task(self, task: dict[str, Any]) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
        from metaworld.types import Task

        name = task["env_name"]
        if self._sawyer_name != name:
            if self._sawyer is not None:
                _POOL.give(self._sawyer_name, self._sawyer)
            self._sawyer, self._sawyer_name = _POOL.take(name), name
        data = {
            "rand_vec": np.asarray(task["rand_vec"], dtype=np.float64),
            "env_cls": ALL_V3_ENVIRONMENTS[name],
            "partially_observable": True,
        }
        expected = self._sawyer._random_reset_space.low.size
        if data["rand_vec"].size != expected:
            raise ValueError(
                f"Meta-World {name}: rand_vec has {data['rand_vec'].size} numbers, the env takes {expected}"
            )
        # The pickled bytes Meta-World's set_task wants: made here, used at once, never kept.
        self._sawyer.set_task(Task(env_name=name, data=pickle.dumps(data)))
        self._needs_reset = True

    def task_features(self, task: Mapping[str, Any]) -> np.ndarray:
        """A fixed-size vector of ``task`` (float32): a one-hot of its env among this benchmark's
        envs, then its goal padded with zeros to 6 numbers (the oracle baseline's input)."""
        features = np.zeros(len(self.env_names) + 6, np.float32)
        features[self.env_names.index(task["env_name"])] = 1.0
        vector = np.asarray(task["rand_vec"], np.float32)
        features[len(self.env_names) : len(self.env_names) + vector.size] = vector
        return features

    # -- Gymnasium -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)  # seeds np_random (task draws); Meta-World's resets are seedless
        self._reset_task_option(options)
        observation, info = self._sawyer.reset()
        self._needs_reset = False
        return observation, self._with_task(dict(info))

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError(
                f"Meta-World {self.name}: call reset() after set_task, before step()"
            )
        observation, reward, terminated, truncated, info = self._sawyer.step(
            np.asarray(action, dtype=np.float32)
        )
        info = dict(info)
        info["success"] = float(info.get("success", 0.0))
        return observation, float(reward), bool(terminated), bool(truncated), self._with_task(info)

    def close(self) -> None:
        if self._sawyer is not None:
            _POOL.give(self._sawyer_name, self._sawyer)
            self._sawyer, self._sawyer_name = None, None
