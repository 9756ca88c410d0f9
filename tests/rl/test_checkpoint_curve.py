"""MAML-RL's one-step gain against meta-training time: ``metagym run rl --keep-checkpoints`` then
``metagym evaluate --checkpoints`` on the cheetah profile at a tiny size."""

import pytest

from metagym.cli import main
from metagym.domains.rl import PROFILES
from metagym.plots.curve import sample_efficiency_curves
from metagym.rescore import training_seconds
from metagym.results import read_json
from metagym.scores import read_scores, task_scores


def test_cheetah_profile_validates():
    profile = PROFILES["cheetah"].validate()
    assert profile.env == "metagym/HalfCheetahVel-v0"
    assert profile.default_learners == ("maml", "random")
    assert profile.maml_steps == (0, 1)


def test_training_seconds_from_the_logged_rates(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "iteration,charts/iterations_per_second\n"
        "5,0.5\n"  # 5 iterations at 0.5/s: 10 s
        "10,0.25\n"  # 5 more at 0.25/s: 20 s
        "12,1.0\n"  # the last, partial row: 2 at 1/s
    )
    assert training_seconds(path) == {5: 10.0, 10: 30.0, 12: 32.0}
    assert training_seconds(tmp_path / "missing.csv") == {}


TINY = [
    "--profile", "cheetah", "--learners", "maml", "--meta-batch", "2", "--fast-batch", "2",
    "--max-episode-steps", "10", "--eval-tasks", "3", "--eval-episodes", "1",
    "--checkpoint-every", "1", "--log-every", "1", "--threads", "1", "--no-progress",
]  # fmt: skip


def _train_and_score_checkpoints(run, iterations: int):
    """A tiny cheetah MAML-RL run keeping a checkpoint per meta-update, each then scored."""
    args = ["run", "rl", *TINY, "--iterations", str(iterations), "--keep-checkpoints"]
    assert main([*args, "--out", str(run)]) == 0
    assert main(["evaluate", str(run), "--learners", "maml", "--checkpoints", "--splits", "test",
                 "--no-progress"]) == 0  # fmt: skip
    return run


def test_cheetah_tiny_gain_curve(tmp_path):
    run = _train_and_score_checkpoints(tmp_path / "run", iterations=2)
    maml = run / "runs" / "maml"
    curve = read_json(maml / "curve.json")
    assert [(p["iteration"], p["steps"]) for p in curve["points"]] == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    seconds = [p["seconds"] for p in curve["points"]]
    assert seconds[0] == seconds[1] < seconds[2] == seconds[3]
    # the last checkpoint is the final learner: the same returns as the run's, task by task
    records = read_scores(maml / "checkpoint_scores.csv.gz")
    final = read_scores(maml / "scores.csv.gz")
    for steps in (0, 1):
        mine = {
            r["task"]: r["score"] for r in records if r["iteration"] == 2 and r["steps"] == steps
        }
        assert mine == task_scores(final, "test", steps, "return")
    before = task_scores([r for r in records if r["iteration"] == 2], "test", 0, "return")
    after = task_scores([r for r in records if r["iteration"] == 2], "test", 1, "return")
    point = curve["points"][3]
    assert point["gain"] == pytest.approx(sum(after[t] - before[t] for t in before) / len(before))
    assert (maml / "curve.png").read_bytes()[:4] == b"\x89PNG"
    # Meta-training samples behind each checkpoint: 2 tasks x (2 support + 2 query episodes) x
    # 10 steps per meta-update.
    assert [p["train_env_steps"] for p in curve["points"]] == [80, 80, 160, 160]
    assert (run / "sample_efficiency.png").read_bytes()[:4] == b"\x89PNG"
    # A shorter run beside it: one curve through both runs' checkpoints; another env is refused.
    short = _train_and_score_checkpoints(tmp_path / "short", iterations=1)
    ((pooled, points),) = sample_efficiency_curves(run, [short])
    assert pooled["learner"] == "maml"
    assert sorted(p["train_env_steps"] for p in points) == [80, 80, 80, 80, 160, 160]
    assert main(["plot", str(run), "--beside", str(short)]) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text('{"profile": {"env": "metagym/Navigation2D-v0"}}')
    assert main(["plot", str(run), "--beside", str(other)]) == 2
