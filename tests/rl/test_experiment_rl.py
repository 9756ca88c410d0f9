"""experiments/rl.py end to end at a tiny size, on an environment defined here (not registered)."""

import json
import sys
import textwrap

import pytest

from experiments import rl as script

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


def test_script_end_to_end_on_a_custom_env(tmp_path, toy_module):
    out = tmp_path / "run"
    args = ["--env", toy_module, "--profile", "tiny", "--out", str(out), "--no-progress"]
    results = script.main(
        [*args, "--learners", "maml,pretrain-pg,pretrain,scratch,oracle,random,rl2"]
    )
    rows = results["rows"]
    assert {r["split"] for r in rows} == {"test", "ood-far"}
    learners = {r["learner"] for r in rows}
    assert learners == {"maml", "pretrain-pg", "pretrain", "scratch", "oracle", "random", "rl2"}
    assert {r["steps"] for r in rows if r["learner"] == "maml"} == {0, 1}
    assert {r["steps"] for r in rows if r["learner"] == "rl2"} == {0, 1}  # episodes before
    assert {r["steps"] for r in rows if r["learner"] == "scratch"} == {0, 4 * 10}
    assert all(r["mean"] is not None and r["metric"] == "return" for r in rows)
    assert all(r["n_tasks"] == 2 for r in rows)
    for name in ("results.json", "results.md", "return_vs_adaptation.png", "training_curves.png"):
        assert (out / name).exists(), name
    assert (out / "runs" / "maml" / "checkpoint.pt").exists()
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["profile"]["meta_batch"] == 2
    # Resume: nothing left to train, the same evaluation.
    # The other learners' rows are kept.
    again = script.main([*args, "--learners", "maml", "--resume"])
    key = lambda r: (r["learner"], r["split"], r["steps"])  # noqa: E731
    assert sorted(map(key, again["rows"])) == sorted(map(key, rows))
    before = {key(r): r["mean"] for r in rows}
    assert all(before[key(r)] == r["mean"] for r in again["rows"])


def test_script_refuses_bad_arguments(tmp_path, toy_module):
    with pytest.raises(ValueError, match="unknown learner"):
        script.main(["--env", toy_module, "--learners", "maml,nope", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="no environment registered"):
        script.main(["--env", "metagym/Nope-v0", "--out", str(tmp_path / "y")])
    with pytest.raises(ValueError, match="bandit"):
        script.main(
            [
                "--env",
                toy_module,
                "--learners",
                "ucb1",
                "--profile",
                "tiny",
                "--out",
                str(tmp_path / "z"),
            ]
        )
