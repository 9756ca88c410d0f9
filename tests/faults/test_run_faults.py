"""Faults against the runner and its files: each case must end in a clear error before any work
(exit status 2, one line), or in a correct result, and nothing already written may be lost."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metagym.checkpoint import CheckpointError, load_checkpoint, save_atomic
from metagym.cli import main
from metagym.evaluate import evaluate
from metagym.learners.base import Learner
from metagym.metrics_log import read_metrics
from metagym.run_folder import FolderLock
from metagym.seeding import make_generator
from metagym.train import TrainConfig, TrainingDiverged, train
from tests.image_tasks import StripeTasks

TINY = ["run", "sinusoid", "--profile", "tiny", "--learners", "oracle,blackbox", "--jobs", "1"]


def _run(out, *extra, capsys=None) -> tuple[int, str]:
    status = main([*TINY, "--no-progress", "--out", str(out), *extra])
    err = capsys.readouterr().err if capsys else ""
    return status, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run (read only: tests copy it before changing anything)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main([*TINY, "--no-progress", "--out", str(out)]) == 0
    return out


def _snapshot(folder):
    return {
        p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"
    }


@pytest.mark.parametrize(
    ("extra", "difference"),
    [
        (["--shots", "10"], "profile.shots: 5 -> 10"),
        (["--seed", "3"], "seed: 0 -> 3"),
        (["--iterations", "7"], "profile.iterations.oracle: 20 -> 7"),
        (["--inner-lr", "0.5"], "profile.inner_lr: 0.01 -> 0.5"),
    ],
)
def test_resume_with_other_settings_is_refused_and_nothing_changes(
    finished, extra, difference, capsys
):
    before = _snapshot(finished)
    status, err = _run(finished, "--resume", *extra, capsys=capsys)
    assert status == 2 and difference in err and err.count("\n") == 1, err
    assert _snapshot(finished) == before


def test_resume_with_what_cannot_change_results_is_accepted(finished, tmp_path, capsys):
    out = tmp_path / "copy"
    os.system(f"cp -r {finished} {out}")
    status, err = _run(out, "--resume", "--threads", "1", "--jobs", "1", capsys=capsys)
    assert status == 0, err
    again = json.loads((out / "results.json").read_text())["rows"]
    first = json.loads((finished / "results.json").read_text())["rows"]
    assert [r["mean"] for r in again] == [r["mean"] for r in first]


def test_resume_with_fewer_learners_keeps_the_others_rows(finished, tmp_path, capsys):
    out = tmp_path / "copy"
    os.system(f"cp -r {finished} {out}")
    status = main([*TINY[:4], "--learners", "oracle", "--jobs", "1", "--out", str(out), "--resume"])
    assert status == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["learner"] for r in rows} == {"oracle", "blackbox"}


def test_a_finished_folder_is_not_overwritten_without_overwrite(finished, tmp_path, capsys):
    before = _snapshot(finished)
    status, err = _run(finished, capsys=capsys)
    assert status == 2 and "--resume" in err and "--overwrite" in err
    assert _snapshot(finished) == before
    out = tmp_path / "copy"
    os.system(f"cp -r {finished} {out}")
    assert _run(out, "--overwrite")[0] == 0
    status, err = _run(out, "--overwrite", "--resume", capsys=capsys)
    assert status == 2 and "exclude each other" in err


def test_overwrite_with_other_settings_leaves_no_learner_of_the_old_run(finished, tmp_path):
    # --overwrite with another seed and one learner: the other learner's folder is of the old
    # run; kept, a later --resume would continue or reuse it as if it were the new run's
    out = tmp_path / "copy"
    os.system(f"cp -r {finished} {out}")
    assert (out / "runs" / "blackbox").is_dir()
    one = ["run", "sinusoid", "--profile", "tiny", "--learners", "oracle", "--jobs", "1"]
    assert main([*one, "--no-progress", "--out", str(out), "--overwrite", "--seed", "3"]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["oracle"]
    # the same settings: --overwrite of one learner keeps the others
    assert main([*TINY, "--no-progress", "--out", str(out), "--overwrite", "--seed", "3"]) == 0
    before = (out / "runs" / "blackbox" / "learner.pt").read_bytes()
    assert main([*one, "--no-progress", "--out", str(out), "--overwrite", "--seed", "3"]) == 0
    assert (out / "runs" / "blackbox" / "learner.pt").read_bytes() == before


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "busy"
    with FolderLock(out):
        status, err = _run(out, capsys=capsys)
    assert status == 2 and f"process {os.getpid()}" in err
    assert not (out / "results.json").exists()


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif how == "flipped":  # one payload byte changed: still a valid torch file
        record = torch.load(path, weights_only=True)
        payload = bytearray(record["payload"].numpy().tobytes())
        payload[len(payload) // 2] ^= 0xFF
        record["payload"] = torch.frombuffer(payload, dtype=torch.uint8)
        torch.save(record, path)


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "flipped"])
def test_damaged_checkpoints_are_refused_naming_the_file(tmp_path, how):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"weights": torch.arange(1000.0), "iteration": 3}, path)
    assert load_checkpoint(path)["iteration"] == 3
    _damage(path, how)
    with pytest.raises(CheckpointError, match=f"{path}.*delete"):
        load_checkpoint(path)


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_resume_over_a_damaged_learner_checkpoint_is_one_clear_line(
    finished, tmp_path, capsys, how
):
    out = tmp_path / "copy"
    os.system(f"cp -r {finished} {out}")
    (out / "runs" / "blackbox" / "rows.json").unlink()  # as if killed before it finished
    _damage(out / "runs" / "blackbox" / "checkpoint.pt", how)
    status, err = _run(out, "--resume", capsys=capsys)
    assert status == 2 and "checkpoint.pt" in err and "delete" in err, err


class _NaNClassifier(Learner):
    """Predicts NaN logits: accuracy would read 1/ways (class 0), it must read diverged."""

    name = "nan"
    trainable = False

    def meta_train_step(self, tasks):
        return {}

    def adapt(self, task, steps=None):
        return lambda x: torch.full((x.shape[0], 3), math.nan)


def test_nan_predictions_are_diverged_in_classification():
    distribution = StripeTasks(ways=3)
    tasks = distribution.sample(4, "test", make_generator(0))
    (row,) = evaluate(_NaNClassifier(), distribution, "test", tasks, progress=False)
    assert row["diverged"] and row["mean"] is None and row["n_diverged"] == 4


def test_divergence_before_the_first_checkpoint_names_no_checkpoint(tmp_path):
    class Exploding(_NaNClassifier):
        trainable = True

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.optimizer = torch.optim.SGD(self.parameters(), lr=0.1)

        def meta_train_step(self, tasks):
            return {"losses/x": math.nan}

    config = TrainConfig(iterations=5, meta_batch=1, log_every=1, checkpoint_every=4)
    with pytest.raises(TrainingDiverged, match="no checkpoint was written before"):
        train(Exploding(), StripeTasks(), config, tmp_path, progress=False)


def test_a_truncated_metrics_row_is_skipped(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("iteration,losses/x,charts/y\n1,0.5,2\n2,0.25,3\n3,0.1")
    assert [r["iteration"] for r in read_metrics(path)] == [1.0, 2.0]


def test_aggregate_refuses_an_input_as_output_and_mixed_settings(finished, tmp_path, capsys):
    other = tmp_path / "seed1"
    assert main([*TINY, "--no-progress", "--seed", "1", "--out", str(other)]) == 0
    before = _snapshot(finished)
    assert main(["aggregate", str(finished), str(other), "--out", str(finished)]) == 2
    assert "is one of the runs" in capsys.readouterr().err
    assert _snapshot(finished) == before
    changed = tmp_path / "seed2"
    assert (
        main([*TINY, "--no-progress", "--seed", "2", "--iterations", "3", "--out", str(changed)])
        == 0
    )
    assert main(["aggregate", str(finished), str(changed), "--out", str(tmp_path / "agg")]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["aggregate", str(finished), str(other), "--out", str(tmp_path / "ok")]) == 0


BROKEN_ENV = '''
import gymnasium as gym
import numpy as np


class BrokenEnv(gym.Env):
    """Returns a {what} that is not finite at step 3."""

    max_episode_steps = 10
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def sample_tasks(self, n, split="train"):
        return [{{"target": float(t)}} for t in self.np_random.uniform(-1, 1, n)]

    def set_task(self, task):
        self.target = float(task["target"])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {{}}

    def step(self, action):
        self.t += 1
        bad = {value} if self.t == 3 else 0.0
        reward = bad if "{what}" == "reward" else 0.0
        obs = np.array([bad if "{what}" == "observation" else 0.0], np.float32)
        return obs, reward, False, False, {{}}
'''


@pytest.mark.parametrize(
    ("what", "value"), [("reward", "float('nan')"), ("observation", "float('inf')")]
)
def test_non_finite_environment_data_is_named(tmp_path, monkeypatch, capsys, what, value):
    module = f"broken_env_{what}"
    (tmp_path / f"{module}.py").write_text(BROKEN_ENV.format(what=what, value=value))
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["run", "rl", "--env", f"{module}:BrokenEnv", "--learners", "maml", "--profile", "tiny"]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"returned a non-finite {what}" in err and "at step 2 of task" in err, err


def test_results_and_checkpoints_follow_the_umask(finished):
    umask = os.umask(0)
    os.umask(umask)
    for name in (
        "results.json",
        "run.json",
        "runs/blackbox/checkpoint.pt",
        "runs/blackbox/learner.pt",
    ):
        assert (finished / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_learner_file_loads_only_into_a_learner_built_alike(tmp_path):
    from metagym import domains
    from metagym.seeding import build_seeded

    sinusoid = domains.get("sinusoid")
    context = sinusoid.context("tiny")
    maml = context.recipe("maml").build(context)
    maml.save(tmp_path / "maml.pt")
    other = sinusoid.context(sinusoid.profile("tiny").replace(inner_lr=0.5))
    with pytest.raises(ValueError, match="inner_lr: 0.01 .saved. vs 0.5"):
        other.recipe("maml").build(other).load(tmp_path / "maml.pt")
    pretrain = build_seeded(lambda: context.recipe("pretrain").build(context), 0)
    pretrain.set_fine_tune_lr(0.03)  # as tuned on val after training
    pretrain.save(tmp_path / "pretrain.pt")
    fresh = context.recipe("pretrain").build(context)
    fresh.load(tmp_path / "pretrain.pt")
    assert fresh.fine_tune_lr == 0.03


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: __import__("metagym").learners.MAML(torch.nn.Linear(1, 1), inner_lr=math.inf),
            "inner_lr",
        ),
        (
            lambda: __import__("metagym").learners.MAML(torch.nn.Linear(1, 1), train_steps=True),
            "train_steps",
        ),
        (lambda: __import__("metagym").tasks.SinusoidTasks(shots=5.0), "shots"),
        (
            lambda: (
                __import__("metagym").tasks.SinusoidTasks().sample(True, "train", make_generator(0))
            ),
            "number of tasks",
        ),
    ],
)
def test_api_refuses_values_that_only_look_right(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_an_empty_meta_batch_is_refused_by_both_backends():
    from metagym.learners import MAML

    for backend in ("higher", "vmap"):
        with pytest.raises(ValueError, match="at least one task"):
            MAML(torch.nn.Linear(1, 1), backend=backend).meta_train_step([])


def test_a_mistyped_data_root_creates_nothing(tmp_path, capsys):
    root = tmp_path / "typo" / "omniglot-data"
    args = ["run", "omniglot", "--profile", "tiny", "--learners", "protonet", "--jobs", "1"]
    assert main([*args, "--data-root", str(root), "--out", str(tmp_path / "out")]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists() and not (tmp_path / "out").exists()


def test_an_empty_checksum_sidecar_is_ignored(tmp_path):
    from metagym.data import omniglot as og

    path = tmp_path / og.npz_name("background")
    path.write_bytes(b"not omniglot")
    (tmp_path / (path.name + ".sha256")).write_text("")
    with pytest.raises(og.ChecksumError, match="corrupt"):
        og.verify_npz(path, "background")


SHAPE_ENV = '''
import gymnasium as gym
import numpy as np


class ShapeEnv(gym.Env):
    """Its observation has task["k"] entries: the shape changes with the task."""

    max_episode_steps = 5
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def sample_tasks(self, n, split="train"):
        return [{"k": int(k)} for k in self.np_random.integers(1, 3, n)]

    def set_task(self, task):
        self.k = int(task["k"])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.k, np.float32), {}

    def step(self, action):
        return np.zeros(self.k, np.float32), 0.0, False, False, {}
'''


def test_an_observation_shape_that_changes_with_the_task_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "shape_env.py").write_text(SHAPE_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["run", "rl", "--env", "shape_env:ShapeEnv", "--learners", "random", "--profile", "tiny"]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "does not fit its observation space" in err and "must not depend on the task" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no results.json in"),
        ("", "is not valid JSON"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds a JSON list, not an object"),
        ('{"rows": [3]}', "must be an object"),
        ('{"rows": []}', "has no rows"),
        ('{"rows": [{"learner": "x"}]}', "misses"),
    ],
)
def test_plot_on_a_missing_empty_or_malformed_folder_says_what_it_expected(
    tmp_path, capsys, content, message
):
    folder = tmp_path / "run"
    folder.mkdir()
    if content is not None:
        (folder / "results.json").write_text(content)
    assert main(["plot", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("args", "changed", "difference"),
    [
        (
            ["run", "rl", "--profile", "tiny", "--learners", "random"],
            ["--env", "metagym/CartPoleParams-v0"],
            "profile.env: 'metagym/Navigation2D-v0' -> 'metagym/CartPoleParams-v0'",
        ),
        (
            ["run", "omniglot", "--profile", "tiny", "--learners", "protonet"]
            + ["--data-root", str(Path(__file__).resolve().parents[3] / "shared" / "data")],
            ["--protocol", "alphabets"],
            "profile.protocol: 'standard' -> 'alphabets'",
        ),
    ],
)
def test_resume_with_another_env_or_protocol_is_refused(
    tmp_path, capsys, args, changed, difference
):
    if "omniglot" in args and not Path(args[-1]).is_dir():
        pytest.skip("no Omniglot data")
    out = ["--out", str(tmp_path / "run"), "--jobs", "1", "--no-progress"]
    assert main([*args, *out]) == 0
    before = _snapshot(tmp_path / "run")
    capsys.readouterr()
    assert main([*args, *changed, *out, "--resume"]) == 2
    assert difference in capsys.readouterr().err
    assert _snapshot(tmp_path / "run") == before


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
ANYTHING = JSON_LIKE | st.builds(object) | st.floats() | st.tuples(st.integers())


@settings(max_examples=100, deadline=None)
@given(task=st.dictionaries(st.text(max_size=6), ANYTHING, max_size=4) | ANYTHING)
def test_any_task_a_sampler_returns_is_accepted_as_json_or_refused(task):
    """A user's OOD sampler returning anything: the task is kept exactly as JSON, or refused
    with a ProtocolError; never another exception."""
    from metagym.tasks.environment import ProtocolError
    from metagym.tasks.gym import _check_tasks

    try:
        (checked,) = _check_tasks([task], 1, "the sampler")
    except ProtocolError:
        return
    assert json.loads(json.dumps(checked)) == checked
