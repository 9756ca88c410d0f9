"""Parameterized Gymnasium environments for meta-learning.

Importing this package registers every environment as ``metagym/<Name>-v0``. It does not import
metagym, so any Gymnasium user (Stable-Baselines3 included) can use the environments; without a
prior import, ``gymnasium.make("metagym_envs:metagym/Navigation2D-v0")`` imports it first.

Every environment follows the task protocol of :mod:`metagym_envs.core`: ``task_splits``,
``sample_tasks(n, split="train")``, ``set_task(task)``, ``reset(options={"task": task})`` and
``info["task"]``. :func:`check_task_env` checks that an environment (yours too) follows it.

It also registers Meta-World's meta-learning benchmarks (:mod:`metagym_envs.metaworld`, which
needs the optional ``metaworld`` package only when one is made): ``metaworld/ML1-<env>-v3`` for
every v3 env (``metaworld/ML1-reach-v3``, ...), ``metaworld/ML10`` and ``metaworld/ML45``.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from metagym_envs.checker import TaskProtocolError, check_task_env

__all__ = ["ENV_IDS", "METAWORLD_IDS", "TaskProtocolError", "check_task_env"]

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

#: Meta-World's v3 environment names (registered as ``metaworld/ML1-<name>``), listed here so that
#: registering them needs no ``metaworld`` import.
METAWORLD_V3_ENVS = (
    "assembly-v3 basketball-v3 bin-picking-v3 box-close-v3 button-press-topdown-v3 "
    "button-press-topdown-wall-v3 button-press-v3 button-press-wall-v3 coffee-button-v3 "
    "coffee-pull-v3 coffee-push-v3 dial-turn-v3 disassemble-v3 door-close-v3 door-lock-v3 "
    "door-open-v3 door-unlock-v3 hand-insert-v3 drawer-close-v3 drawer-open-v3 faucet-open-v3 "
    "faucet-close-v3 hammer-v3 handle-press-side-v3 handle-press-v3 handle-pull-side-v3 "
    "handle-pull-v3 lever-pull-v3 pick-place-wall-v3 pick-out-of-hole-v3 pick-place-v3 "
    "plate-slide-v3 plate-slide-side-v3 plate-slide-back-v3 plate-slide-back-side-v3 peg-insert-side-v3 "
    "peg-unplug-side-v3 soccer-v3 stick-push-v3 stick-pull-v3 push-v3 push-wall-v3 push-back-v3 "
    "reach-v3 reach-wall-v3 shelf-place-v3 sweep-into-v3 sweep-v3 window-open-v3 window-close-v3"
).split()
_METAWORLD = "metagym_envs.metaworld:MetaWorldEnv"
#: The ids of the Meta-World benchmarks this package registers.
METAWORLD_IDS: tuple[str, ...] = (
    *(f"metaworld/ML1-{name}" for name in METAWORLD_V3_ENVS),
    "metaworld/ML10",
    "metaworld/ML45",
)
for _id in METAWORLD_IDS:
    if _id not in registry:
        _bench = _id.split("/")[1].split("-", 1)
        _kwargs = {"benchmark": _bench[0]} | ({"env_name": _bench[1]} if len(_bench) > 1 else {})
        register(id=_id, entry_point=_METAWORLD, max_episode_steps=500, kwargs=_kwargs)
