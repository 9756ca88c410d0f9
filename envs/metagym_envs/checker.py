"""``check_task_env``: check that an environment follows the task protocol of :mod:`metagym_envs.core`.

Modeled on Gymnasium's :func:`gymnasium.utils.env_checker.check_env` (which it runs first) and on
Stable-Baselines3's ``common/env_checker.py``: call it once on a freshly made environment, in a test
or in continuous integration::

    import gymnasium as gym
    from metagym_envs import check_task_env

    check_task_env(gym.make("my_package:MyTaskEnv-v0"))

Each task-protocol check is one function below (``_check_<name>``); a failure raises
:class:`TaskProtocolError` whose message names the environment, the check and how to fix it.
"""

from __future__ import annotations

import inspect
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from metagym_envs.core import json_copy

__all__ = ["CHECKS", "TaskProtocolError", "check_task_env"]

#: The task-protocol checks, in the order they run (after Gymnasium's ``check_env``); a
#: :class:`TaskProtocolError` names one of them in its ``check`` attribute.
CHECKS = (
    "methods",
    "sample_tasks",
    "determinism",
    "splits",
    "reset_option",
    "persistence",
    "invalid_tasks",
    "spaces",
    "stepping",
)

#: Tasks drawn per ``sample_tasks`` call, and steps taken per task by the ``stepping`` check.
_N_TASKS = 3
_STEPS = 5
#: A split name no environment declares, to check that unknown splits are refused.
_UNKNOWN_SPLIT = "no-such-split"
_JSON_FIX = (
    "return plain Python types (dict with str keys, list, str, int, float, bool, None): convert "
    "numpy values with .item() / .tolist() (metagym_envs.core.json_copy does both) and tuples "
    "with list()"
)


class TaskProtocolError(TypeError):
    """An environment does not follow the task protocol.

    A ``TypeError`` (the environment does not implement the interface a task environment needs),
    like metagym's own ``ProtocolError``. ``check`` is the name of the failed check (one of
    :data:`CHECKS`) and ``env`` the environment's name; the message also says how to fix it.
    """

    def __init__(self, message: str, check: str = "", env: str = ""):
        super().__init__(message, check, env)
        self.check = check
        self.env = env

    def __str__(self) -> str:
        return str(self.args[0])


def check_task_env(env: gym.Env, *, skip_render_check: bool = True, seed: int = 0) -> None:
    """Check that ``env`` is a Gymnasium environment that follows the task protocol.

    Runs Gymnasium's ``check_env`` on ``env.unwrapped`` (its failures propagate unchanged, as
    Gymnasium raises them), then the task-protocol checks of :data:`CHECKS`: the protocol methods
    exist; ``sample_tasks(n)`` returns ``n`` JSON dicts; the same seed gives the same tasks,
    whatever the global random state; every declared split can be sampled; ``reset(options=
    {"task": t})`` sets ``t`` and ``info["task"]`` reports it; the task persists across
    ``reset()``; invalid tasks are refused; the spaces do not depend on the task; and observations
    stay in the observation space under every task.

    The protocol methods are looked up on ``env.unwrapped``; ``reset``, ``step`` and the spaces are
    ``env``'s own (its wrappers included). The checks reset and step ``env`` and leave it with one
    of its sampled tasks set: make a fresh environment for real use. Numpy's and Python's global
    random states are restored.

    Args:
        env: the environment, e.g. ``gymnasium.make(env_id)``.
        skip_render_check: passed to Gymnasium's ``check_env``.
        seed: seeds the resets, the task draws and the random actions of the checks.

    Raises:
        TaskProtocolError: the first task-protocol check that fails.
    """
    check_env(env.unwrapped, skip_render_check=skip_render_check)
    subject = _Subject(env, env.unwrapped, _env_name(env), int(seed))
    _check_methods(subject)
    _check_sample_tasks(subject)
    _check_determinism(subject)
    _check_splits(subject)
    tasks = _probe_tasks(subject)
    _check_reset_option(subject, tasks)
    _check_persistence(subject, tasks)
    _check_invalid_tasks(subject, tasks)
    _check_spaces(subject, tasks)
    _check_stepping(subject, tasks)


# -- the environment under check ----------------------------------------------------------------
@dataclass
class _Subject:
    """The environment under check: ``env`` for reset, step and spaces, ``inner`` for the
    protocol methods."""

    env: gym.Env
    inner: Any
    name: str
    seed: int
    #: ``{(holder, space name): space}`` as the checker got the environment, holder ``env`` or
    #: ``env.unwrapped``.
    spaces: dict[tuple[str, str], gym.Space] = field(init=False)

    def __post_init__(self) -> None:
        self.spaces = {
            (holder, space): getattr(self.env if holder == "env" else self.inner, space)
            for holder in ("env", "env.unwrapped")
            for space in ("observation_space", "action_space")
        }

    def error(self, check: str, problem: str, fix: str) -> TaskProtocolError:
        return TaskProtocolError(
            f"{self.name} fails the task-protocol check {check!r}: {problem}. How to fix: {fix}.",
            check,
            self.name,
        )

    def call(self, check: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        """``fn(*args, **kwargs)``, an exception it raises reported as a failure of ``check``."""
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            raise self.error(
                check,
                f"{what} raised {type(error).__name__}: {error}",
                "make this call succeed: its arguments are valid (a declared split, a task the "
                "environment sampled itself, an action from its action space)",
            ) from error

    @property
    def takes_split(self) -> bool:
        try:
            parameters = inspect.signature(self.inner.sample_tasks).parameters.values()
        except (TypeError, ValueError):
            return False
        return any(p.name == "split" or p.kind is p.VAR_KEYWORD for p in parameters)

    @property
    def splits(self) -> tuple[str, ...] | None:
        """The declared ``task_splits`` (None if there are none; checked by ``_check_splits``)."""
        declared = getattr(self.inner, "task_splits", None)
        return None if declared is None else tuple(declared)

    def sample(self, check: str, n: int, split: str | None = None) -> list[dict[str, Any]]:
        """``sample_tasks(n)`` (or ``sample_tasks(n, split=split)``), checked to be ``n`` JSON dicts."""
        what = f"sample_tasks({n})" if split is None else f"sample_tasks({n}, split={split!r})"
        kwargs = {} if split is None else {"split": split}
        tasks = self.call(check, what, self.inner.sample_tasks, n, **kwargs)
        if not isinstance(tasks, list) or len(tasks) != n:
            raise self.error(
                check,
                f"{what} returned {_short(tasks)}, not a list of {n} task dicts",
                "return a list with exactly n dicts, one per task",
            )
        for index, task in enumerate(tasks):
            if not isinstance(task, dict):
                raise self.error(
                    check,
                    f"{what}[{index}] is {type(task).__name__} {_short(task)}, not a dict",
                    "return each task as a dict of its parameters, e.g. {'goal': [0.1, 0.2]}",
                )
            problem = _json_problem(task, "task")
            if problem is None and json.loads(json.dumps(task)) != task:
                problem = "the task changes in a JSON round trip"
            if problem is not None:
                raise self.error(check, f"{what}[{index}] = {_short(task)}: {problem}", _JSON_FIX)
        return tasks

    def set_task(self, check: str, task: dict[str, Any]) -> None:
        self.call(check, f"set_task({_short(task)})", self.inner.set_task, task)

    def reset(self, check: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        what = "reset(" + ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items()) + ")"
        return self.call(check, what, self.env.reset, **kwargs)

    def expect_task(self, check: str, task: dict[str, Any], after: str, fix: str, info=None):
        """Fail ``check`` unless ``get_task()`` (if the env has it) and ``info["task"]`` (if given)
        equal ``task``."""
        if info is not None and "task" not in info:
            raise self.error(
                check,
                f"after {after}, reset returned no info['task']",
                "add the current task to the info dict of reset (and step): "
                "info['task'] = a fresh copy of the task dict",
            )
        reports = [] if info is None else [("info['task']", info["task"])]
        if callable(getattr(self.inner, "get_task", None)):
            reports.append(("get_task()", self.call(check, "get_task()", self.inner.get_task)))
        for source, reported in reports:
            if not _same_task(reported, task):
                raise self.error(
                    check, f"after {after}, {source} is {_short(reported)}, not {_short(task)}", fix
                )


def _env_name(env: gym.Env) -> str:
    inner = env.unwrapped
    spec = getattr(env, "spec", None) or getattr(inner, "spec", None)
    kind = type(inner).__name__
    return f"{spec.id} ({kind})" if spec is not None else kind


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _json_problem(value: Any, path: str) -> str | None:
    """What keeps ``value`` from being plain JSON (``path`` names it), or None."""
    if isinstance(value, (np.ndarray, np.generic)):
        return f"{path} is a numpy {type(value).__name__} ({_short(value)})"
    if value is None or type(value) in (bool, int, str):
        return None
    if type(value) is float:
        return None if math.isfinite(value) else f"{path} is {value}, which JSON cannot represent"
    if type(value) is list:
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"{path} has the key {key!r}, not a str"
            problem = _json_problem(item, f"{path}[{key!r}]")
            if problem is not None:
                return problem
        return None
    return f"{path} is a {type(value).__name__} ({_short(value)}), not a JSON type"


def _same_task(a: Any, b: Any) -> bool:
    return json_copy(a) == json_copy(b)


def _probe_tasks(subject: _Subject) -> list[dict[str, Any]]:
    """Distinct tasks for the later checks: four of the default split and two of every declared
    split (a single task if the environment has only one)."""
    subject.reset("sample_tasks", seed=subject.seed)
    drawn = subject.sample("sample_tasks", 4)
    if subject.splits is not None and subject.takes_split:
        for split in subject.splits:
            drawn += subject.sample("splits", 2, split)
    distinct: list[dict[str, Any]] = []
    for task in drawn:
        if not any(_same_task(task, seen) for seen in distinct):
            distinct.append(task)
    return distinct


def _pair(tasks: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return tasks[0], tasks[1] if len(tasks) > 1 else tasks[0]


# -- the checks ---------------------------------------------------------------------------------
def _check_methods(subject: _Subject) -> None:
    """``sample_tasks`` and ``set_task`` are callable, and so is ``get_task`` if present."""
    inner = subject.inner
    for method in ("sample_tasks", "set_task", "get_task"):
        present = hasattr(inner, method)
        if (present or method != "get_task") and not callable(getattr(inner, method, None)):
            raise subject.error(
                "methods",
                f"{type(inner).__name__}.{method} is "
                + (f"{_short(getattr(inner, method))}, not callable" if present else "missing"),
                "define the task protocol on the environment class: sample_tasks(n, "
                "split='train') -> list[dict] drawn from self.np_random, set_task(task) and "
                "optionally get_task() (metagym_envs.core.TaskEnvMixin provides them)",
            )


def _check_sample_tasks(subject: _Subject) -> None:
    """``sample_tasks(n)`` returns ``n`` dicts that survive a JSON round trip, each accepted by
    ``set_task``."""
    subject.reset("sample_tasks", seed=subject.seed)
    for n in (1, _N_TASKS):
        for task in subject.sample("sample_tasks", n):
            subject.set_task("sample_tasks", task)


def _check_determinism(subject: _Subject) -> None:
    """The same seed gives the same tasks, whatever numpy's and Python's global random states
    (which are perturbed between the draws, then restored)."""

    def draw(global_seed: int, how: str) -> list[dict[str, Any]]:
        np.random.seed(global_seed)
        random.seed(global_seed)
        if how == "reset":
            subject.reset("determinism", seed=subject.seed)
        else:
            rng = np.random.default_rng(subject.seed)
            subject.call(
                "determinism",
                "env.unwrapped.np_random = ...",
                setattr,
                subject.inner,
                "np_random",
                rng,
            )
        return subject.sample("determinism", _N_TASKS)

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        for how, seeding in (
            ("reset", f"env.reset(seed={subject.seed})"),
            ("assign", f"env.unwrapped.np_random = np.random.default_rng({subject.seed})"),
        ):
            first, second = draw(1, how), draw(2, how)
            if _same_task(first, second):
                continue
            if _same_task(first, draw(1, how)):
                problem = (
                    f"after {seeding}, sample_tasks({_N_TASKS}) depends on numpy's or Python's "
                    "global random state (np.random.*, random.*)"
                )
            else:
                problem = f"{seeding} twice gave different tasks from sample_tasks({_N_TASKS})"
            raise subject.error(
                "determinism",
                problem,
                "draw every random number of sample_tasks from self.np_random (the environment's "
                "own generator, seeded by reset(seed=...)), never from np.random.*, random.* or a "
                "generator of its own",
            )
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def _check_splits(subject: _Subject) -> None:
    """If ``task_splits`` is declared: it names ``train``, every split samples valid tasks
    reproducibly, and an unknown split is refused."""
    declared = getattr(subject.inner, "task_splits", None)
    if declared is None:
        return
    if (
        not isinstance(declared, (tuple, list))
        or not declared
        or not all(isinstance(s, str) for s in declared)
    ):
        raise subject.error(
            "splits",
            f"task_splits is {_short(declared)}, not a tuple of split names",
            "declare task_splits = ('train', 'test', 'ood-...') as a class attribute",
        )
    splits = tuple(declared)
    if "train" not in splits:
        raise subject.error(
            "splits",
            f"task_splits {splits!r} has no 'train' split (the default of sample_tasks)",
            "name the default split 'train'",
        )
    if not subject.takes_split:
        raise subject.error(
            "splits",
            f"task_splits is {splits!r} but sample_tasks takes no split argument",
            "define sample_tasks(self, n, split='train')",
        )
    for split in splits:
        subject.reset("splits", seed=subject.seed)
        tasks = subject.sample("splits", 2, split)
        for task in tasks:
            subject.set_task("splits", task)
        subject.reset("splits", seed=subject.seed)
        if not _same_task(subject.sample("splits", 2, split), tasks):
            raise subject.error(
                "splits",
                f"after reset(seed={subject.seed}), sample_tasks(2, split={split!r}) gave "
                "different tasks twice",
                "draw the tasks of every split from self.np_random",
            )
    try:
        subject.inner.sample_tasks(1, split=_UNKNOWN_SPLIT)
    except Exception:
        return
    raise subject.error(
        "splits",
        f"sample_tasks(1, split={_UNKNOWN_SPLIT!r}) returned tasks for a split not in "
        f"task_splits {splits!r}",
        "raise ValueError for a split not in task_splits (a typo must not silently give "
        "training tasks)",
    )


def _check_reset_option(subject: _Subject, tasks: list[dict[str, Any]]) -> None:
    """``reset(options={"task": t})`` sets ``t``, and ``info["task"]`` reports it."""
    first, second = _pair(tasks)
    subject.set_task("reset_option", first)
    _, info = subject.reset("reset_option", seed=subject.seed, options={"task": second})
    subject.expect_task(
        "reset_option",
        second,
        f"set_task({_short(first)}) then reset(options={{'task': {_short(second)}}})",
        "in reset, call self.set_task(options['task']) before resetting when options has a "
        "'task', and report the current task in info['task']",
        info,
    )


def _check_persistence(subject: _Subject, tasks: list[dict[str, Any]]) -> None:
    """A task set by ``set_task`` stays set across ``reset()`` (with and without a seed)."""
    fix = (
        "keep the task in an attribute that only set_task (and reset's 'task' option) changes: "
        "reset() must neither restore a default task nor draw a new one"
    )
    for task in _pair(tasks):
        subject.set_task("persistence", task)
        subject.expect_task("persistence", task, f"set_task({_short(task)})", fix)
        for label, kwargs in ((f"seed={subject.seed + 1}", {"seed": subject.seed + 1}), ("", {})):
            _, info = subject.reset("persistence", **kwargs)
            after = f"set_task({_short(task)}) then reset({label})"
            subject.expect_task("persistence", task, after, fix, info)


def _check_invalid_tasks(subject: _Subject, tasks: list[dict[str, Any]]) -> None:
    """``set_task`` refuses an empty task, a task with a renamed key and one with an extra key,
    leaving the current task unchanged."""
    task = tasks[0]
    invalid = [("an extra key", {**task, "not_a_task_key": 0.0})]
    if task:
        key = next(iter(task))
        renamed = {(f"{k}_typo" if k == key else k): v for k, v in task.items()}
        invalid = [("no keys", {}), (f"{key!r} renamed", renamed), *invalid]
    for label, bad in invalid:
        subject.set_task("invalid_tasks", task)
        try:
            subject.inner.set_task(bad)
        except Exception:
            pass
        else:
            raise subject.error(
                "invalid_tasks",
                f"set_task({_short(bad)}) (a task with {label}) was accepted",
                f"validate the task in set_task: raise ValueError for a missing or unknown key "
                f"(a task here has exactly the keys {list(task)}) and TypeError for a value of "
                "the wrong type, before changing any state",
            )
        _, info = subject.reset("invalid_tasks")
        subject.expect_task(
            "invalid_tasks",
            task,
            f"set_task({_short(task)}) then the refused set_task({_short(bad)})",
            "validate the whole task before changing any state, so a refused task leaves the "
            "current one set",
            info,
        )


def _check_spaces(subject: _Subject, tasks: list[dict[str, Any]]) -> None:
    """The observation and action spaces under every task (after ``set_task`` and after
    ``reset``) are those the environment had when the checker got it."""

    def compare(after: str) -> None:
        for (holder, space), before in subject.spaces.items():
            now = getattr(subject.env if holder == "env" else subject.inner, space)
            if now != before:
                raise subject.error(
                    "spaces",
                    f"after {after}, {holder}.{space} is {_short(now)}, not {_short(before)}",
                    "build the spaces once in __init__ from the constructor arguments, never "
                    "from the task (bound them by the widest task): one policy must serve "
                    "every task",
                )

    for task in tasks:
        subject.set_task("spaces", task)
        compare(f"set_task({_short(task)})")
        subject.reset("spaces", seed=subject.seed)
        compare(f"set_task({_short(task)}) then reset()")


def _check_stepping(subject: _Subject, tasks: list[dict[str, Any]]) -> None:
    """A few random steps under each task give observations in the observation space (and
    ``info["task"]``, where step reports it, is the task)."""
    env = subject.env
    space = env.observation_space
    fix = (
        "bound the observation space by what any valid task can produce (or clip the "
        "observations), since the spaces must not depend on the task"
    )
    for task in tasks:
        subject.set_task("stepping", task)
        observation, _ = subject.reset("stepping", seed=subject.seed)
        where = f"reset() under the task {_short(task)}"
        env.action_space.seed(subject.seed)
        for step in range(_STEPS + 1):
            if not space.contains(observation):
                raise subject.error(
                    "stepping",
                    f"{where} gave the observation {_short(observation)}, outside {space}",
                    fix,
                )
            if step == _STEPS:
                break
            where = f"step {step + 1} under the task {_short(task)}"
            observation, _, terminated, truncated, info = subject.call(
                "stepping", where, env.step, env.action_space.sample()
            )
            if "task" in info and not _same_task(info["task"], task):
                raise subject.error(
                    "stepping",
                    f"{where} reported info['task'] = {_short(info['task'])}",
                    "report the current task in the info of step, and never change it there",
                )
            if terminated or truncated:
                observation, _ = subject.reset("stepping")
                where = f"reset() after step {step + 1} under the task {_short(task)}"
