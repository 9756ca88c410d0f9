"""Meta-World ML1 / ML10 / ML45: goals as Meta-World makes them, JSON-safe tasks, determinism
whatever the global numpy state, success-rate rows, profiles, and clear errors.

ML10 / ML45 build 750 / 2500 goals with MuJoCo resets (tens of seconds on 2 cores): those tests
are marked slow."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("metaworld")

from metagym import domains  # noqa: E402
from metagym.cli import main  # noqa: E402
from metagym.rl.sampler import random_policy  # noqa: E402
from metagym.seeding import make_generator  # noqa: E402
from metagym.tasks.metaworld import (  # noqa: E402
    MeanAction,
    MetaWorldTaskDistribution,
    check_metaworld_env,
)

FAST = ["metaworld/ML1-reach-v3", "metaworld/ML1-pick-place-v3"]
SLOW = [pytest.param(name, marks=pytest.mark.slow) for name in ("metaworld/ML10", "metaworld/ML45")]


def _rand_vecs(tasks):
    return [pickle.loads(t.data)["rand_vec"].tolist() for t in tasks]


def test_ml1_goals_are_metaworlds_own():
    import metaworld
    from metagym_envs.metaworld import goals

    reference = metaworld.ML1("reach-v3", seed=3)
    assert goals("ML1", "reach-v3", "train", 3)["reach-v3"] == _rand_vecs(reference.train_tasks)
    assert goals("ML1", "reach-v3", "test", 3)["reach-v3"] == _rand_vecs(reference.test_tasks)
    assert goals("ML1", "reach-v3", "train", 3) != goals("ML1", "reach-v3", "train", 4)


@pytest.mark.slow
def test_ml10_goals_are_metaworlds_own():
    import metaworld
    from metagym_envs.metaworld import goals

    reference = metaworld.ML10(seed=0)
    train, held_out = goals("ML10", None, "train", 0), goals("ML10", None, "ood-heldout", 0)
    for name, vectors in train.items():
        assert vectors == _rand_vecs(t for t in reference.train_tasks if t.env_name == name)
    for name, vectors in held_out.items():
        assert vectors == _rand_vecs(t for t in reference.test_tasks if t.env_name == name)
    assert set(held_out).isdisjoint(train)


def _draw_and_step(env: str):
    """Tasks of every split and the first observations and rewards of an episode on each split's
    first task, with the global numpy state scrambled between calls."""
    distribution = MetaWorldTaskDistribution(env, max_episode_steps=5, eval_episodes=1)
    try:
        out = {}
        for split in distribution.splits:
            np.random.seed(np.random.randint(2**31 - 1) if split != "val" else 7)
            tasks = distribution.sample(4, split, make_generator(11))
            episodes = distribution.sampler.sample(
                random_policy(distribution.action_space), tasks[:1], 1, seed=5
            )
            out[split] = (
                [t.params for t in tasks],
                [(t.seed, t.eval_seed) for t in tasks],
                episodes.observations[0, 0, :3].tolist(),
                episodes.rewards[0, 0].tolist(),
            )
        return out
    finally:
        distribution.close()


@pytest.mark.parametrize("env", FAST + SLOW)
def test_same_seed_same_tasks_and_observations_whatever_the_global_numpy_state(env):
    np.random.seed(0)
    first = _draw_and_step(env)
    np.random.seed(12345)
    np.random.rand(17)
    second = _draw_and_step(env)
    assert first == second
    splits = set(first)
    expected = {"train", "val", "test"} | ({"ood-heldout"} if "ML1-" not in env else set())
    assert splits == expected
    # Different splits hold different goals; tasks are JSON-safe handles.
    assert first["train"][0] != first["test"][0]
    for params, *_ in first.values():
        for task in params:
            assert set(task) == {"env_name", "rand_vec"}
            assert json.loads(json.dumps(task, allow_nan=False)) == task


@pytest.mark.slow
def test_ml10_draws_are_stratified_over_envs():
    distribution = MetaWorldTaskDistribution("metaworld/ML10", max_episode_steps=5)
    try:
        for split, n_envs in (("train", 10), ("test", 10), ("ood-heldout", 5)):
            tasks = distribution.sample(23, split, make_generator(0))
            counts = np.unique([t.params["env_name"] for t in tasks], return_counts=True)[1]
            assert len(counts) == n_envs and counts.max() - counts.min() <= 1
    finally:
        distribution.close()


def _reacher(goal):
    """A policy that moves the hand straight to ``goal`` (it knows the hidden goal)."""
    target = torch.tensor(goal, dtype=torch.float32)

    def policy(observations):
        move = ((target - observations[:, :3]) * 50).clamp(-1, 1)
        return torch.nn.functional.pad(move, (0, 1))  # gripper action 0

    return policy


def test_success_is_scored_beside_return():
    distribution = MetaWorldTaskDistribution(
        "metaworld/ML1-reach-v3", max_episode_steps=100, eval_episodes=2
    )
    try:
        task = distribution.sample(1, "test", make_generator(0))[0]
        solved = distribution.score(_reacher(task.params["rand_vec"][3:6]), task)
        away = distribution.score(_reacher([0.0, 0.4, 0.3]), task)
        assert solved["success"] == 1.0 and away["success"] == 0.0
        assert solved["return"] > away["return"]
        assert distribution.task_group(task) == "reach-v3"
    finally:
        distribution.close()


def test_scored_episodes_act_with_the_gaussian_mean():
    from torch.distributions import Independent, Normal, Uniform

    mean = torch.full((3, 4), 0.25)
    gaussian = MeanAction(lambda obs: Independent(Normal(mean, torch.ones(3, 4)), 1))
    assert torch.equal(gaussian(torch.zeros(3, 39)), mean)
    uniform = MeanAction(lambda obs: Uniform(-torch.ones(3, 4), torch.ones(3, 4)))
    assert isinstance(uniform(torch.zeros(3, 39)), Uniform)


def test_quick_and_paper_presets_follow_the_environment_family():
    domain = domains.get("rl")
    quick = domain.profile("quick").replace(env="metaworld/ML1-reach-v3")
    assert quick == domain.profile("metaworld-quick")
    tiny = domain.profile("tiny").replace(env="metaworld/ML10", iterations=3)
    assert tiny.fast_batch == domain.profile("metaworld-tiny").fast_batch and tiny.iterations == 3
    assert tiny.env == "metaworld/ML10"
    back = domain.profile("metaworld-paper").replace(env="metagym/Navigation2D-v0")
    assert back == domain.profile("paper")
    ml1 = domain.profile("metaworld-ml1").validate()
    assert ml1.max_episode_steps is None  # Meta-World's own 500 steps
    assert {"maml", "rl2", "pearl"} <= set(ml1.default_learners)
    for name in ("metaworld-tiny", "metaworld-quick", "metaworld-ml1", "metaworld-paper"):
        profile = domain.profile(name)
        assert profile.fast_batch == 10 or name == "metaworld-tiny"
        assert max(profile.policy_hidden) <= 512 and len(profile.policy_hidden) <= 2


@pytest.mark.parametrize(
    "env, message",
    [
        ("metaworld/ML1-reachh-v3", "unknown Meta-World benchmark 'metaworld/ML1-reachh-v3'"),
        ("metaworld/ML20", "unknown Meta-World benchmark"),
    ],
)
def test_unknown_benchmark_is_one_error_line(env, message, capsys, tmp_path):
    assert main(["run", "rl", "--env", env, "--profile", "tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_missing_extra_is_a_clear_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_metaworld(name, *args, **kwargs):
        if name == "metaworld" or name.startswith("metaworld."):
            raise ImportError("No module named 'metaworld'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_metaworld)
    with pytest.raises(ValueError, match=r"pip install 'metagym-lab\[metaworld\]'"):
        check_metaworld_env("metaworld/ML10")


def _rows(out_dir):
    return json.loads((out_dir / "results.json").read_text())["rows"]


def test_tiny_ml1_run_writes_success_and_return_rows(tmp_path):
    out = tmp_path / "ml1"
    argv = ["run", "rl", "--env", "metaworld/ML1-reach-v3", "--profile", "tiny"]
    assert main([*argv, "--out", str(out), "--jobs", "1", "--no-progress"]) == 0
    rows = _rows(out)
    keys = {(r["learner"], r["split"], r["metric"], r["steps"]) for r in rows}
    for split in ("train", "test"):
        for metric in ("success", "return"):
            assert {("maml", split, metric, 0), ("maml", split, metric, 1)} <= keys
            assert ("random", split, metric, None) in keys
    assert all(0.0 <= r["mean"] <= 1.0 for r in rows if r["metric"] == "success")
    assert not any("group" in r for r in rows)  # one env: no per-env rows
    text = (out / "runs" / "maml" / "rows.json").read_bytes()
    assert b"data" not in text and b"\\x80" not in text  # no pickled Meta-World tasks
    state = torch.load(out / "runs" / "maml" / "learner.pt", weights_only=True)
    assert state


@pytest.mark.slow
def test_tiny_ml10_run_has_rows_per_env_and_overall(tmp_path):
    out = tmp_path / "ml10"
    argv = ["run", "rl", "--env", "metaworld/ML10", "--profile", "tiny", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    rows = _rows(out)
    for split, n_envs in (("train", 10), ("test", 10), ("ood-heldout", 5)):
        for metric in ("success", "return"):
            mine = [r for r in rows if r["split"] == split and r["metric"] == metric]
            groups = {r["group"] for r in mine if r["learner"] == "maml"}
            assert "all" in groups and len(groups - {"all"}) == n_envs
            overall = [r for r in mine if r["group"] == "all" and r["learner"] == "maml"]
            assert {r["steps"] for r in overall} == {0, 1}
            assert all(r["n_tasks"] == 10 for r in overall)
