"""metagym run rl end to end at a tiny size, on an environment defined here (not registered)."""

import csv
import json
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from metagym.cli import main

TOY_ENV = textwrap.dedent(
    '''
    import gymnasium as gym
    import numpy as np


    class ToyTargetEnv(gym.Env):
        """Move a point on a line to a target; 10 steps."""

        max_episode_steps = 10
        task_splits = ("train", "test", "ood-far")

        def __init__(self):
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
            self.target, self.x = 0.0, 0.0

        def sample_tasks(self, n, split="train"):
            scale = 3.0 if split == "ood-far" else 1.0
            return [{"target": float(self.np_random.uniform(-scale, scale))} for _ in range(n)]

        def set_task(self, task):
            self.target = float(task["target"])

        def get_task(self):
            return {"target": self.target}

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.x = 0.0
            return np.zeros(1, np.float32), {"task": self.get_task()}

        def step(self, action):
            self.x += float(np.clip(action[0], -1, 1)) * 0.3
            reward = -abs(self.x - self.target)
            return np.array([self.x], np.float32), reward, False, False, {}
    '''
)


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    (tmp_path / "toy_rl_env.py").write_text(TOY_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "toy_rl_env:ToyTargetEnv"
    sys.modules.pop("toy_rl_env", None)


def _run(args):
    """``metagym run rl ARGS``: the results, read from the folder."""
    assert main(["run", "rl", "--jobs", "1", *args]) == 0
    out = args[args.index("--out") + 1]
    return json.loads((Path(out) / "results.json").read_text())


def test_run_end_to_end_on_a_custom_env(tmp_path, toy_module, monkeypatch):
    out = tmp_path / "run"
    scratch_dir = tmp_path / "tmp"
    scratch_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_dir))
    args = ["--env", toy_module, "--profile", "tiny", "--out", str(out), "--no-progress"]
    learners = "maml,pretrain-pg,pretrain,scratch,oracle,random,rl2,pearl"
    results = _run([*args, "--learners", learners])
    rows = results["rows"]
    assert {r["split"] for r in rows} == {"test", "ood-far"}
    assert {r["learner"] for r in rows} == set(learners.split(","))
    assert {r["steps"] for r in rows if r["learner"] == "pearl"} == {0, 1}  # context episodes
    assert {r["steps"] for r in rows if r["learner"] == "maml"} == {0, 1}
    assert {r["steps"] for r in rows if r["learner"] == "rl2"} == {0, 1}  # episodes before
    assert {r["steps"] for r in rows if r["learner"] == "scratch"} == {0, 4 * 10}
    # env_steps: maml 4 episodes of 10 steps per inner step; rl2 one earlier episode.
    env_steps = {(r["learner"], r["steps"]): r["env_steps"] for r in rows}
    assert env_steps[("maml", 1)] == 40 and env_steps[("rl2", 1)] == 10
    assert env_steps[("pearl", 1)] == 10
    # Meta-training's environment steps, for return against samples: 2 tasks x 2 iterations x
    # (4 support + 4 query episodes) x 10 steps for maml; 2 x 2 x (1 + 1) episodes x 10 for pearl.
    for learner, total in (("maml", 320), ("pearl", 80)):
        with open(out / "runs" / learner / "metrics.csv") as f:
            last = list(csv.DictReader(f))[-1]
        assert float(last["charts/env_steps"]) == total, learner
    assert env_steps[("scratch", 40)] == 40 and env_steps[("oracle", None)] == 0
    assert {r["scored_on"] for r in rows} == {"episode"}
    assert all(r["mean"] is not None and r["metric"] == "return" for r in rows)
    assert all(r["n_tasks"] == 2 for r in rows)
    for name in ("results.json", "results.md", "return_vs_adaptation.png", "training_curves.png"):
        assert (out / name).exists(), name
    assert (out / "runs" / "maml" / "checkpoint.pt").exists()
    # SB3's default logger leaves an empty SB3-<date> folder in the temporary directory per learn.
    assert not list(scratch_dir.glob("SB3-*"))
    assert results["config"]["profile"]["meta_batch"] == 2
    # Resume: nothing left to train, the same evaluation; the other learners' rows are kept.
    again = _run([*args, "--learners", "maml", "--resume"])
    key = lambda r: (r["learner"], r["split"], r["steps"])  # noqa: E731
    assert sorted(map(key, again["rows"])) == sorted(map(key, rows))
    before = {key(r): r["mean"] for r in rows}
    assert all(before[key(r)] == r["mean"] for r in again["rows"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--learners", "maml,nope"], "unknown learner"),
        (["--env", "metagym/Nope-v0"], "no environment registered"),
        (["--learners", "ucb1", "--profile", "tiny"], "bandit"),
    ],
)
def test_run_refuses_bad_arguments(tmp_path, toy_module, capsys, args, message):
    args = ["--env", toy_module, *args] if args[0] != "--env" else args
    assert main(["run", "rl", *args, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_resume_refuses_learners_that_change_how_the_run_is_scored(tmp_path, capsys):
    # a bandit learner makes the whole run scored on trials of 10 episodes: adding one on
    # --resume would score it differently from the learners already there
    out = tmp_path / "bandit"
    args = ["--env", "metagym/Bandit-v0", "--profile", "tiny", "--out", str(out), "--no-progress"]
    _run([*args, "--learners", "random"])
    assert main(["run", "rl", "--jobs", "1", *args, "--learners", "ucb1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "derived.trial_total: False -> True" in err and len(err.strip().splitlines()) == 1
    definition = json.loads((out / "run.json").read_text())
    assert definition["derived"] == {"trial_total": False, "episodes_per_trial": 2}
