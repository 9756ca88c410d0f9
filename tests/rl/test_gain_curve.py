"""experiments/rl_gain_curve.py: paired gains by hand, the training curve's clock, and the cheetah
profile end to end at a tiny size (watch, evaluate against rows.json, plot)."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from metagym.checkpoint import save_atomic
from metagym.cli import main
from metagym.domains.rl import PROFILES
from metagym.results import read_json, write_json_atomic

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "rl_gain_curve.py"


@pytest.fixture(scope="module")
def curve_module():
    spec = importlib.util.spec_from_file_location("rl_gain_curve", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["rl_gain_curve"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("rl_gain_curve", None)


def test_paired_gain_by_hand(curve_module):
    point = curve_module.paired_gain([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])
    # differences 1, 0, 2: mean 1, sample std 1
    assert point["gain"] == pytest.approx(1.0)
    assert point["gain_ci95"] == pytest.approx(1.96 / math.sqrt(3))
    assert (point["before"], point["after"]) == (pytest.approx(2.0), pytest.approx(3.0))
    assert (point["improved"], point["n_tasks"]) == (2, 3)
    with pytest.raises(ValueError):
        curve_module.paired_gain([1.0], [1.0, 2.0])


def test_training_curve_clock(curve_module, tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "iteration,charts/return_before_adaptation,charts/return_after_adaptation,"
        "charts/iterations_per_second\n"
        "5,-10,-8,0.5\n"  # 5 iterations at 0.5/s: 10 s
        "10,-9,-9.5,0.25\n"  # 5 more at 0.25/s: 20 s
        "12,-7,-6,1.0\n"  # the last, partial row: 2 at 1/s
    )
    rows = curve_module.training_curve(path)
    assert [r["seconds"] for r in rows] == [10.0, 30.0, 32.0]
    assert [r["gain"] for r in rows] == [2.0, -0.5, 1.0]


def test_watch_keeps_each_checkpoint(curve_module, tmp_path):
    learner_dir, keep = tmp_path / "maml", tmp_path / "keep"
    save_atomic({"iteration": 7, "learner": {}}, learner_dir / "checkpoint.pt")
    write_json_atomic({}, learner_dir / "rows.json")  # finished: watch copies once and returns
    curve_module.watch(learner_dir, keep, poll=0.01)
    assert sorted(p.name for p in keep.iterdir()) == ["iter-00007.pt"]


def test_cheetah_profile_validates():
    profile = PROFILES["cheetah"].validate()
    assert profile.env == "metagym/HalfCheetahVel-v0"
    assert profile.default_learners == ("maml", "random")
    assert profile.maml_steps == (0, 1)


TINY = [
    "--profile", "cheetah", "--learners", "maml", "--meta-batch", "2", "--fast-batch", "2",
    "--max-episode-steps", "10", "--eval-tasks", "3", "--eval-episodes", "1",
    "--checkpoint-every", "1", "--log-every", "1", "--threads", "1", "--no-progress",
]  # fmt: skip


def test_cheetah_tiny_run_gain_curve(curve_module, tmp_path):
    # A run stopped after 1 iteration gives the checkpoint that a watcher keeps from a 2-iteration
    # run with the same seed (the task generator's state is part of the checkpoint).
    short, run, keep = tmp_path / "short", tmp_path / "run", tmp_path / "keep"
    assert main(["run", "rl", *TINY, "--iterations", "1", "--out", str(short)]) == 0
    curve_module.watch(short / "runs" / "maml", keep, poll=0.01)
    assert main(["run", "rl", *TINY, "--iterations", "2", "--out", str(run)]) == 0

    curve = curve_module.evaluate_run(run, keep, ["test"], tolerance=1e-6)
    points = [(p["iteration"], p["split"]) for p in curve["points"]]
    assert points == [(1, "test"), (2, "test"), (2, "ood-fast")]
    assert [r["iteration"] for r in curve["training"]] == [1, 2]
    rows = read_json(run / "runs" / "maml" / "rows.json")["rows"]
    means = {(r["split"], r["steps"]): r["mean"] for r in rows}
    for point in curve["points"][1:]:
        assert point["before"] == pytest.approx(means[(point["split"], 0)])
        assert point["after"] == pytest.approx(means[(point["split"], 1)])
        assert point["gain"] == pytest.approx(point["after"] - point["before"])

    png = curve_module.plot(curve, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # scoring another learner than the run's is refused, not reported
    (run / "runs" / "maml" / "learner.pt").replace(tmp_path / "final.pt")
    (keep / "iter-00001.pt").rename(keep / "moved.pt")
    save_atomic(
        {**_learner_file(tmp_path / "final.pt", keep / "moved.pt")},
        run / "runs" / "maml" / "learner.pt",
    )
    with pytest.raises(RuntimeError, match="differ from the run's"):
        curve_module.evaluate_run(run, None, ["test"], tolerance=1e-6)


def _learner_file(final: Path, checkpoint: Path) -> dict:
    """The final learner file with the weights of an earlier checkpoint."""
    from metagym.checkpoint import load_checkpoint

    state = load_checkpoint(final)
    earlier = load_checkpoint(checkpoint)["learner"]
    return {**state, "model": earlier["model"], "optimizer": earlier["optimizer"]}
