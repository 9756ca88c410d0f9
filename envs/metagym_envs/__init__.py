"""Parameterized Gymnasium environments for meta-learning.

Importing this package registers every environment as ``metagym/<Name>-v0``. It does not import
metagym, so any Gymnasium user (Stable-Baselines3 included) can use the environments; without a
prior import, ``gymnasium.make("metagym_envs:metagym/Navigation2D-v0")`` imports it first.

Every environment follows the task protocol of :mod:`metagym_envs.core`: ``task_splits``,
``sample_tasks(n, split="train")``, ``set_task(task)``, ``reset(options={"task": task})`` and
``info["task"]``. :func:`check_task_env` checks that an environment (yours too) follows it.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from metagym_envs.checker import TaskProtocolError, check_task_env

__all__ = ["ENV_IDS", "TaskProtocolError", "check_task_env"]

# (name, entry point, max_episode_steps); entry points are strings, imported lazily by make().
_ENVS = (
    ("Navigation2D", "metagym_envs.navigation:Navigation2DEnv", 100),
    ("HalfCheetahVel", "metagym_envs.half_cheetah_vel:HalfCheetahVelEnv", 200),
    ("HalfCheetahDir", "metagym_envs.half_cheetah_dir:HalfCheetahDirEnv", 200),
    ("AntDir", "metagym_envs.ant_dir:AntDirEnv", 200),
    ("Bandit", "metagym_envs.bandit:BanditEnv", None),
    ("TabularMDP", "metagym_envs.tabular_mdp:TabularMDPEnv", 10),
    ("PendulumParams", "metagym_envs.pendulum:PendulumParamsEnv", 200),
    ("CartPoleParams", "metagym_envs.cartpole:CartPoleParamsEnv", 200),
)

#: The ids of all environments this package registers.
ENV_IDS: tuple[str, ...] = tuple(f"metagym/{name}-v0" for name, _, _ in _ENVS)

for _name, _entry_point, _steps in _ENVS:
    _id = f"metagym/{_name}-v0"
    if _id not in registry:  # re-importing (e.g. importlib.reload) must not warn
        register(id=_id, entry_point=_entry_point, max_episode_steps=_steps)
