"""Every registered metagym/* environment: seeded rollouts, splits, task errors and dynamics.

Gymnasium's checker and the task-protocol checks run in test_check_task_env.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import gymnasium as gym
import metagym_envs
import numpy as np
import pytest

ENV_IDS = metagym_envs.ENV_IDS

# Two tasks per environment that must give different returns for the same actions.
DIFFERENT_TASKS = {
    "metagym/Navigation2D-v0": ({"goal": [0.5, 0.5]}, {"goal": [-0.5, -0.2]}),
    "metagym/HalfCheetahVel-v0": ({"velocity": 0.0}, {"velocity": 2.0}),
    "metagym/HalfCheetahDir-v0": (
        {"direction": 1, "mass_scale": 1.0},
        {"direction": -1, "mass_scale": 1.0},
    ),
    "metagym/AntDir-v0": ({"angle": 0.0}, {"angle": math.pi / 2}),
    "metagym/Bandit-v0": ({"means": [0.0] * 5}, {"means": [1.0] * 5}),
    "metagym/TabularMDP-v0": (
        {"reward_means": [[0.0] * 5] * 10, "transitions": [[[0.1] * 10] * 5] * 10},
        {"reward_means": [[3.0] * 5] * 10, "transitions": [[[0.1] * 10] * 5] * 10},
    ),
    "metagym/PendulumParams-v0": (
        {"gravity": 10.0, "mass": 1.0, "length": 1.0},
        {"gravity": 10.0, "mass": 2.0, "length": 0.5},
    ),
    "metagym/CartPoleParams-v0": (
        {"gravity": 9.8, "masscart": 1.0, "masspole": 0.1, "length": 0.25},
        {"gravity": 9.8, "masscart": 1.0, "masspole": 0.1, "length": 1.5},
    ),
}

# Per environment: a key and a value outside its physically valid range.
OUT_OF_RANGE = {
    "metagym/Navigation2D-v0": ("goal", [0.0, 1e3]),
    "metagym/HalfCheetahVel-v0": ("velocity", 100.0),
    "metagym/HalfCheetahDir-v0": ("mass_scale", 0.0),
    "metagym/AntDir-v0": ("angle", 10.0),
    "metagym/Bandit-v0": ("means", [0.5, 0.5, 0.5, 0.5, 1.5]),
    "metagym/TabularMDP-v0": ("transitions", [[[0.5] * 10] * 5] * 10),
    "metagym/PendulumParams-v0": ("mass", -1.0),
    "metagym/CartPoleParams-v0": ("length", 0.0),
}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(env_id, disable_env_checker=True, **kwargs)


def _task(env_id: str, split: str = "train", seed: int = 0) -> dict:
    env = _make(env_id)
    env.reset(seed=seed)
    return env.unwrapped.sample_tasks(1, split)[0]


def _rollout(env: gym.Env, seed: int, task: dict, steps: int):
    """Observations, rewards and end flags of ``steps`` steps with seeded random actions."""
    observation, info = env.reset(seed=seed, options={"task": task})
    env.action_space.seed(seed)
    trace = [(np.asarray(observation).copy(), info["task"])]
    for _ in range(steps):
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace.append((np.asarray(observation).copy(), reward, terminated, truncated, info["task"]))
        if terminated or truncated:
            observation, info = env.reset()
            trace.append((np.asarray(observation).copy(), info["task"]))
    return trace


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_all_environments_are_registered():
    assert len(ENV_IDS) == 8
    for env_id in ENV_IDS:
        assert env_id in gym.registry


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_rollout_is_deterministic(env_id):
    task = _task(env_id, seed=3)
    first = _rollout(_make(env_id), seed=7, task=task, steps=25)
    second = _rollout(_make(env_id), seed=7, task=task, steps=25)
    assert all(_same(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_splits_include_an_ood_one_that_differs_from_train(env_id):
    # JSON tasks, seeded draws of every split, persistence and spaces: test_check_task_env.py.
    env = _make(env_id)
    inner = env.unwrapped
    splits = inner.task_splits
    assert {"train", "test"} <= set(splits) and any(s.startswith("ood-") for s in splits)
    ood = next(s for s in splits if s.startswith("ood-"))
    drawn = {}
    for split in ("train", ood):
        env.reset(seed=11)
        drawn[split] = inner.sample_tasks(3, split)
    assert drawn[ood] != drawn["train"]
    with pytest.raises(ValueError, match="unknown split"):
        inner.sample_tasks(1, "nope")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_info_task_is_a_fresh_copy(env_id):
    env = _make(env_id)
    task = _task(env_id, "test", seed=5)
    _, info = env.reset(seed=0, options={"task": task})
    info["task"][next(iter(task))] = "tampered"
    _, _, _, _, step_info = env.step(env.action_space.sample())
    assert step_info["task"] == task  # the env's task was not changed through the info dict
    assert step_info["task"] is not info["task"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_malformed_tasks_get_clear_errors(env_id):
    env = _make(env_id)
    inner = env.unwrapped
    task = _task(env_id)
    key = next(iter(task))
    with pytest.raises(ValueError, match=repr(key)):  # missing key
        inner.set_task({k: v for k, v in task.items() if k != key})
    with pytest.raises(TypeError, match=repr(key)):  # wrong type
        inner.set_task({**task, key: "fast"})
    with pytest.raises(ValueError, match="unexpected"):
        inner.set_task({**task, "typo": 1.0})
    with pytest.raises(TypeError, match="dict"):
        inner.set_task([1.0, 2.0])
    bad_key, bad_value = OUT_OF_RANGE[env_id]
    with pytest.raises(ValueError, match=repr(bad_key)):  # outside the valid range
        inner.set_task({**task, bad_key: bad_value})
    with pytest.raises(ValueError, match=repr(bad_key)):  # also through reset
        env.reset(options={"task": {**task, bad_key: bad_value}})
    inner.set_task(task)  # still usable, with its task unchanged by the failed attempts
    assert inner.get_task() == task


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_the_task_changes_dynamics_or_reward(env_id):
    def episode_return(task: dict) -> float:
        env = _make(env_id)
        env.reset(seed=0, options={"task": task})
        env.action_space.seed(0)
        total = 0.0
        for _ in range(60):
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            if terminated or truncated:
                break
        return total

    first, second = DIFFERENT_TASKS[env_id]
    assert episode_return(first) != pytest.approx(episode_return(second), rel=1e-6, abs=1e-9)


def test_cartpole_recomputes_derived_quantities():
    inner = _make("metagym/CartPoleParams-v0").unwrapped
    inner.set_task({"gravity": 9.0, "masscart": 2.0, "masspole": 0.5, "length": 1.2})
    assert inner.total_mass == pytest.approx(2.5)
    assert inner.polemass_length == pytest.approx(0.6)
    assert inner.gravity == 9.0 and inner.length == 1.2


def test_constructor_arguments_pass_through_make():
    env = _make("metagym/Bandit-v0", k=3)
    assert env.action_space == gym.spaces.Discrete(3)
    env.reset(seed=0)
    assert len(env.unwrapped.sample_tasks(1, "ood-skewed")[0]["means"]) == 3
    with pytest.raises(ValueError, match="k"):
        _make("metagym/Bandit-v0", k=1)
    mdp = _make("metagym/TabularMDP-v0", n_states=4, n_actions=2)
    assert mdp.observation_space == gym.spaces.Discrete(4)


def test_navigation_follows_maml():
    env = _make("metagym/Navigation2D-v0")
    observation, _ = env.reset(seed=0, options={"task": {"goal": [0.25, 0.0]}})
    assert np.array_equal(observation, [0.0, 0.0])
    observation, reward, terminated, _, _ = env.step(np.array([1.0, 0.0], np.float32))
    assert observation == pytest.approx([0.1, 0.0])  # the velocity is clipped to 0.1
    assert reward == pytest.approx(-0.15)
    assert not terminated
    env.step(np.array([0.1, 0.0], np.float32))
    _, _, terminated, _, _ = env.step(np.array([0.05, 0.0], np.float32))
    assert terminated  # within 0.01 of the goal
    env.reset()
    ends = [env.step(np.zeros(2, np.float32))[3] for _ in range(100)]
    assert ends == [False] * 99 + [True]  # truncated after 100 steps


def test_module_prefixed_id_works_in_a_fresh_interpreter():
    code = (
        "import sys, gymnasium\n"
        "assert 'metagym_envs' not in sys.modules\n"
        "env = gymnasium.make('metagym_envs:metagym/Navigation2D-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(type(env.unwrapped).__name__, info['task'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Navigation2DEnv")


def test_half_cheetah_model_matches_gymnasium_without_the_mujoco_warning(tmp_path, monkeypatch):
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    from metagym_envs.half_cheetah_vel import HalfCheetahVelEnv

    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warnings to ./MUJOCO_LOG.TXT
    ours = HalfCheetahVelEnv().model
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    theirs = HalfCheetahEnv().model  # compiled with the deprecated settotalmass
    for name in dir(theirs):
        value = getattr(theirs, name)
        if not name.startswith("_") and isinstance(value, np.ndarray):
            assert np.array_equal(value, getattr(ours, name)), name
    for name in ("meaninertia", "meanmass", "meansize", "extent"):
        assert getattr(ours.stat, name) == getattr(theirs.stat, name), name
