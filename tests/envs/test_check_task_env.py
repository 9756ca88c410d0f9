"""metagym_envs.check_task_env: every registered environment passes; each check refuses an
environment that breaks it, with a message naming the environment, the check and the fix."""

from __future__ import annotations

import pickle
import random

import gymnasium as gym
import metagym_envs
import numpy as np
import pytest
from gymnasium import spaces
from metagym_envs import TaskProtocolError, check_task_env
from metagym_envs.checker import CHECKS

REGISTERED = sorted(env_id for env_id in gym.registry if env_id.startswith("metagym/"))


def test_every_bundled_environment_is_checked():
    assert set(REGISTERED) == set(metagym_envs.ENV_IDS)


@pytest.mark.filterwarnings("ignore")  # Gymnasium's advice about unbounded Box spaces
@pytest.mark.parametrize("env_id", REGISTERED)
def test_registered_environments_pass(env_id):
    env = gym.make(env_id)
    assert check_task_env(env) is None
    env.close()


class GoodEnv(gym.Env):
    """A valid task environment: a point on a line, rewarded for reaching ``task["target"]``."""

    metadata = {"render_modes": []}
    task_splits = ("train", "test", "ood-far")

    def __init__(self):
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._x = 0.0
        self._task = {"target": 0.0}

    def _range(self, split: str) -> tuple[float, float]:
        return (2.0, 3.0) if split == "ood-far" else (-1.0, 1.0)

    def _draw(self, split: str) -> float:
        return float(self.np_random.uniform(*self._range(split)))

    def sample_tasks(self, n, split="train"):
        if split not in self.task_splits:
            raise ValueError(f"unknown split {split!r}")
        return [{"target": self._draw(split)} for _ in range(n)]

    def validate(self, task) -> dict:
        if not isinstance(task, dict) or set(task) != {"target"}:
            raise ValueError(f"a task is {{'target': float}}, got {task!r}")
        return {"target": float(task["target"])}

    def set_task(self, task):
        self._task = self.validate(task)

    def get_task(self):
        return dict(self._task)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._x = 0.0
        return self._observation(), self._info()

    def step(self, action):
        self._x = float(np.clip(self._x + float(action[0]), -5.0, 5.0))
        reward = -abs(self._x - self._task["target"])
        return self._observation(), reward, False, False, self._info()

    def _observation(self):
        return np.array([self._x - self._task["target"]], dtype=np.float32)

    def _info(self):
        return {"task": dict(self._task)}


def test_a_valid_environment_passes_wrapped_or_not_and_keeps_the_global_random_state():
    numpy_state, python_state = np.random.get_state(), random.getstate()
    assert check_task_env(GoodEnv()) is None
    assert check_task_env(gym.wrappers.TimeLimit(GoodEnv(), 20), seed=123) is None
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]
    assert random.getstate() == python_state


def test_gymnasium_check_env_runs_first_and_its_errors_propagate():
    class WrongObservationShape(GoodEnv):
        def _observation(self):
            return np.zeros(2, dtype=np.float32)

    with pytest.raises(AssertionError, match="observation space"):
        check_task_env(WrongObservationShape())


def test_task_protocol_error_is_a_type_error_that_pickles():
    error = TaskProtocolError("GoodEnv fails ...", "spaces", "GoodEnv")
    assert isinstance(error, TypeError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.check, copy.env) == ("GoodEnv fails ...", "spaces", "GoodEnv")


# -- one broken environment per violation: each breaks exactly one check ------------------------
class NotCallableSetTask(GoodEnv):
    set_task = None


class NotCallableGetTask(GoodEnv):
    get_task = "target"


class NumpyTasks(GoodEnv):
    def sample_tasks(self, n, split="train"):
        return [{"target": np.float64(t["target"])} for t in super().sample_tasks(n, split)]


class TupleOfTasks(GoodEnv):
    def sample_tasks(self, n, split="train"):
        return tuple(super().sample_tasks(n, split))


class OneTaskTooFew(GoodEnv):
    def sample_tasks(self, n, split="train"):
        return super().sample_tasks(n, split)[1:]


class GlobalNumpyRandom(GoodEnv):
    def _draw(self, split):
        return float(np.random.uniform(*self._range(split)))


class GlobalPythonRandom(GoodEnv):
    def _draw(self, split):
        return random.uniform(*self._range(split))


class OwnGenerator(GoodEnv):
    def __init__(self):
        super().__init__()
        self._rng = np.random.default_rng(0)

    def _draw(self, split):
        return float(self._rng.uniform(*self._range(split)))


class OwnGeneratorSeededByReset(OwnGenerator):
    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        return super().reset(seed=seed, options=options)


class OodSplitFails(GoodEnv):
    def sample_tasks(self, n, split="train"):
        if split == "ood-far":
            raise NotImplementedError("ood-far is not written yet")
        return super().sample_tasks(n, split)


class UnknownSplitGivesTrainTasks(GoodEnv):
    def sample_tasks(self, n, split="train"):
        return super().sample_tasks(n, split if split in self.task_splits else "train")


class NoTrainSplit(GoodEnv):
    task_splits = ("test", "ood-far")

    def sample_tasks(self, n, split="test"):
        return super().sample_tasks(n, split)


class SplitsButNoSplitArgument(GoodEnv):
    def sample_tasks(self, n):
        return super().sample_tasks(n)


class IgnoresResetTaskOption(GoodEnv):
    def reset(self, *, seed=None, options=None):
        return super().reset(seed=seed)


class NoInfoTask(GoodEnv):
    def _info(self):
        return {}


class ResetRestoresDefaultTask(GoodEnv):
    def reset(self, *, seed=None, options=None):
        self._task = {"target": 0.0}
        return super().reset(seed=seed, options=options)


class AcceptsAnyDict(GoodEnv):
    def validate(self, task):
        return {"target": float(task.get("target", 0.0))}


class AcceptsExtraKeys(GoodEnv):
    def validate(self, task):
        return {"target": float(task["target"])}


class RefusesTooLate(GoodEnv):
    def set_task(self, task):
        self._task = {"target": 0.0}  # changes state before validating
        super().set_task(task)


class TaskDependentSpace(GoodEnv):
    def set_task(self, task):
        super().set_task(task)
        bound = 10.0 + abs(self._task["target"])
        self.observation_space = spaces.Box(-bound, bound, shape=(1,), dtype=np.float32)


class ObservationOutsideTheSpace(GoodEnv):
    def _observation(self):
        return np.array([self._x - 100.0 * self._task["target"]], dtype=np.float32)


class StepReportsAStaleTask(GoodEnv):
    def step(self, action):
        observation, reward, terminated, truncated, _ = super().step(action)
        return observation, reward, terminated, truncated, {"task": {"target": 0.0}}


BROKEN = [
    # (environment factory, the check that must refuse it, a fragment of the message)
    (lambda: gym.make("CartPole-v1"), "methods", "CartPoleEnv.sample_tasks is missing"),
    (NotCallableSetTask, "methods", "set_task is None, not callable"),
    (NotCallableGetTask, "methods", "get_task is 'target', not callable"),
    (NumpyTasks, "sample_tasks", "task['target'] is a numpy float64"),
    (TupleOfTasks, "sample_tasks", "not a list of 1 task dicts"),
    (OneTaskTooFew, "sample_tasks", "returned [], not a list of 1 task dicts"),
    (GlobalNumpyRandom, "determinism", "global random state"),
    (GlobalPythonRandom, "determinism", "global random state"),
    (OwnGenerator, "determinism", "env.reset(seed=0) twice gave different tasks"),
    (OwnGeneratorSeededByReset, "determinism", "np_random = np.random.default_rng(0) twice"),
    (OodSplitFails, "splits", "split='ood-far') raised NotImplementedError"),
    (UnknownSplitGivesTrainTasks, "splits", "for a split not in task_splits"),
    (NoTrainSplit, "splits", "has no 'train' split"),
    (SplitsButNoSplitArgument, "splits", "sample_tasks takes no split argument"),
    (IgnoresResetTaskOption, "reset_option", "info['task'] is"),
    (NoInfoTask, "reset_option", "returned no info['task']"),
    (
        ResetRestoresDefaultTask,
        "persistence",
        "then reset(seed=1), info['task'] is {'target': 0.0}",
    ),
    (AcceptsAnyDict, "invalid_tasks", "set_task({}) (a task with no keys) was accepted"),
    (AcceptsExtraKeys, "invalid_tasks", "(a task with an extra key) was accepted"),
    (RefusesTooLate, "invalid_tasks", "then the refused set_task"),
    (TaskDependentSpace, "spaces", "env.observation_space is Box("),
    (ObservationOutsideTheSpace, "stepping", "outside Box(-10.0, 10.0"),
    (StepReportsAStaleTask, "stepping", "reported info['task'] = {'target': 0.0}"),
]


def _name(factory) -> str:
    return getattr(factory, "__name__", "factory").replace("<lambda>", "CartPole")


@pytest.mark.filterwarnings("ignore:.*Box observation space")  # CartPole-v1's unbounded space
@pytest.mark.parametrize(
    ("factory", "check", "fragment"), BROKEN, ids=[_name(b[0]) for b in BROKEN]
)
def test_a_broken_environment_is_refused_by_its_check(factory, check, fragment):
    env = factory()
    with pytest.raises(TaskProtocolError) as caught:
        check_task_env(env)
    error, message = caught.value, str(caught.value)
    assert error.check == check, message
    assert type(env.unwrapped).__name__ in error.env  # "CartPole-v1 (CartPoleEnv)", "GoodEnv"
    assert message.startswith(f"{error.env} fails the task-protocol check {check!r}: ")
    assert fragment in message
    assert "How to fix: " in message


def test_every_check_has_a_broken_environment():
    assert [check for check in CHECKS if check not in {b[1] for b in BROKEN}] == []
