"""``metagym evaluate RUN``: re-scoring a finished run without training, extending its tasks bit
for bit, adding steps, refusing what it cannot honour, and the checkpoint curve."""

import shutil

import pytest

from metagym.cli import main
from metagym.results import read_json, write_json_atomic
from metagym.scores import check_summary, read_scores, task_scores

LEARNERS = "maml,oracle,pretrain"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny sinusoid run (8 tasks per split) with kept checkpoints, copied for each test."""
    out = tmp_path_factory.mktemp("run") / "run"
    args = ["run", "sinusoid", "--profile", "tiny", "--learners", LEARNERS, "--out", str(out)]
    assert (
        main([*args, "--jobs", "1", "--threads", "1", "--no-progress", "--keep-checkpoints"]) == 0
    )
    return out


@pytest.fixture
def run_dir(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def _scores(run, learner):
    return read_scores(run / "runs" / learner / "scores.csv.gz")


def test_more_tasks_extend_the_run_bit_for_bit(run_dir, capsys):
    before = {n: _scores(run_dir, n) for n in LEARNERS.split(",")}
    assert main(["evaluate", str(run_dir), "--eval-tasks", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "maml: 360 records added; of the 240 the run had, 240 identical" in out
    for name, old in before.items():
        new = _scores(run_dir, name)
        for split in ("test", "ood-phase"):
            steps = old[0]["steps"]
            first, later = (
                task_scores(old, split, steps, "mse"),
                task_scores(new, split, steps, "mse"),
            )
            assert sorted(later) == list(range(20))
            assert all(later[t].hex() == first[t].hex() for t in first)  # bit for bit
        record = read_json(run_dir / "runs" / name / "rows.json")
        assert {r["n_tasks"] for r in record["rows"]} == {20}
        assert check_summary(record["rows"], new) == []
        assert record["rescored"][-1]["identical"] == record["rescored"][-1]["checked"]
    results = read_json(run_dir / "results.json")
    assert {r["n_tasks"] for r in results["rows"]} == {20}
    assert "20 tasks" in (run_dir / "results.md").read_text()


def test_other_steps_and_splits_are_added(run_dir):
    assert main(["evaluate", str(run_dir), "--learners", "maml", "--steps", "0,7",
                 "--splits", "test", "--no-progress"]) == 0  # fmt: skip
    rows = read_json(run_dir / "runs" / "maml" / "rows.json")["rows"]
    test_steps = sorted(r["steps"] for r in rows if r["split"] == "test")
    assert 7 in test_steps and 0 in test_steps
    assert {r["split"] for r in rows} >= {"test", "ood-phase"}  # the other splits are kept


def test_a_changed_record_is_reported_not_hidden(run_dir, capsys):
    path = run_dir / "runs" / "oracle" / "scores.csv.gz"
    from metagym.scores import write_scores

    records = read_scores(path)
    records[0] = {**records[0], "score": records[0]["score"] + 0.25}
    write_scores(path, records)
    assert main(["evaluate", str(run_dir), "--learners", "oracle", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "of the 48 the run had, 47 identical (largest difference 0.25)" in out


def _define(run, **changes):
    write_json_atomic({**read_json(run / "run.json"), **changes}, run / "run.json")


@pytest.mark.parametrize(
    "change, args, message",
    [
        (lambda run: _define(run, task_stream=None), [], "another task stream"),
        (lambda run: _define(run, metagym_version="0.0.1"), [], "made by metagym 0.0.1"),
        (None, ["--splits", "nowhere"], "unknown split 'nowhere'"),
        (None, ["--learners", "blackbox"], "no finished learner ['blackbox']"),
        (None, ["--shift", "scale=0.5"], "has no graded shifts"),
        (None, ["--shift", "scale"], "give KIND=LEVEL"),
        (None, ["--eval-tasks", "0"], "--eval-tasks must be between 1"),
        (None, ["--steps", "1,x"], "comma-separated integers"),
        (None, ["--checkpoints"], "give --learners NAME"),
        (
            lambda run: shutil.rmtree(run / "runs" / "oracle" / "checkpoints"),
            ["--checkpoints", "--learners", "oracle"],
            "kept no checkpoints",
        ),
    ],
)
def test_what_cannot_be_honoured_is_refused_before_scoring(run_dir, capsys, change, args, message):
    if change is not None:
        change(run_dir)
    stamp = (run_dir / "runs" / "maml" / "scores.csv.gz").stat().st_mtime_ns
    assert main(["evaluate", str(run_dir), *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert (run_dir / "runs" / "maml" / "scores.csv.gz").stat().st_mtime_ns == stamp


def test_a_folder_without_a_run_is_refused(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "holds no run" in capsys.readouterr().err


def test_a_learner_whose_saved_settings_differ_is_refused(run_dir, capsys):
    shutil.copyfile(
        run_dir / "runs" / "oracle" / "learner.pt", run_dir / "runs" / "maml" / "learner.pt"
    )
    assert main(["evaluate", str(run_dir), "--learners", "maml", "--no-progress"]) == 2
    assert "holds a 'oracle' learner" in capsys.readouterr().err


def test_checkpoints_give_the_score_against_training_time(run_dir):
    kept = sorted(p.name for p in (run_dir / "runs" / "maml" / "checkpoints").iterdir())
    assert kept == ["iter-000010.pt", "iter-000020.pt"]  # tiny: checkpoint every 10 of 20
    assert main(["evaluate", str(run_dir), "--learners", "maml", "--checkpoints",
                 "--splits", "test", "--steps", "0,1", "--no-progress"]) == 0  # fmt: skip
    curve = read_json(run_dir / "runs" / "maml" / "curve.json")
    points = [(p["iteration"], p["steps"]) for p in curve["points"]]
    assert points == [(10, 0), (10, 1), (20, 0), (20, 1)]
    assert all(p["seconds"] is not None and p["seconds"] > 0 for p in curve["points"])
    # the last checkpoint is the final learner: its scores are the run's own
    records = read_scores(run_dir / "runs" / "maml" / "checkpoint_scores.csv.gz")
    final = task_scores(_scores(run_dir, "maml"), "test", 1, "mse")
    last = {r["task"]: r["score"] for r in records if r["iteration"] == 20 and r["steps"] == 1}
    assert last == final
    one = next(p for p in curve["points"] if p["iteration"] == 20 and p["steps"] == 1)
    zero = next(p for p in curve["points"] if p["iteration"] == 20 and p["steps"] == 0)
    assert one["gain"] == pytest.approx(one["mean"] - zero["mean"])
    assert (run_dir / "runs" / "maml" / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_damaged_later_learner_leaves_every_learner_as_it_was(run_dir, capsys):
    # learners are scored in order maml, oracle, pretrain: pretrain's file is read before any
    # learner is scored, so maml's records are not rewritten while results.json stays stale
    before = {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    (run_dir / "runs" / "pretrain" / "learner.pt").write_bytes(b"truncated")
    assert main(["evaluate", str(run_dir), "--eval-tasks", "12", "--no-progress"]) == 2
    assert "learner.pt" in capsys.readouterr().err
    after = {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    changed = [p.name for p in before if before[p] != after.get(p) and p.name != "learner.pt"]
    assert changed == []


def test_a_learner_left_from_a_run_of_other_settings_is_refused(run_dir, capsys):
    record = read_json(run_dir / "runs" / "maml" / "rows.json")
    record["definition"]["seed"] = 7  # as if left by an earlier run with seed 7
    write_json_atomic(record, run_dir / "runs" / "maml" / "rows.json")
    assert main(["evaluate", str(run_dir), "--eval-tasks", "12", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not this run's learner" in err and "seed: 7 -> 0" in err


def test_a_run_scored_by_other_code_is_said_so(run_dir, capsys):
    record = read_json(run_dir / "runs" / "oracle" / "rows.json")
    write_json_atomic(
        {**record, "code": "0123456789abcdef"}, run_dir / "runs" / "oracle" / "rows.json"
    )
    assert main(["evaluate", str(run_dir), "--learners", "oracle", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "identical; the run was scored by other metagym code" in out
