"""Per-task score records: the evaluation stream's prefix property, the file's round trip, and
the summary rows recomputed from the records."""

import gzip
import json
import math

import pytest
import torch

from metagym import domains
from metagym.evaluate import evaluate
from metagym.results import read_json
from metagym.scores import (
    check_summary,
    merge_scores,
    read_scores,
    summarize,
    write_scores,
)
from metagym.seeding import TASK_BLOCK, eval_task_stream
from metagym.tasks import SinusoidTasks
from metagym.tasks.base import Examples, SupervisedTask, TaskDistribution


def _params(tasks):
    return [t.params for t in tasks]


@pytest.mark.parametrize("n", [1, TASK_BLOCK - 1, TASK_BLOCK, TASK_BLOCK + 7])
def test_the_first_tasks_of_a_longer_stream_are_those_of_a_shorter_one(n):
    tasks = SinusoidTasks(shots=5)
    long = eval_task_stream(tasks, "test", 3, 3 * TASK_BLOCK + 5)
    short = eval_task_stream(tasks, "test", 3, n)
    assert _params(long[:n]) == _params(short)
    for a, b in zip(long[:n], short, strict=True):
        assert torch.equal(a.support.x, b.support.x) and torch.equal(a.query.y, b.query.y)
    # a stream can start anywhere, and other seeds and splits give other tasks
    assert _params(eval_task_stream(tasks, "test", 3, 3 * TASK_BLOCK + 5, start=n)) == _params(
        long[n:]
    )
    assert _params(eval_task_stream(tasks, "test", 4, n)) != _params(short)
    assert _params(eval_task_stream(tasks, "val", 3, n)) != _params(short)


def test_the_stream_refuses_bad_counts():
    tasks = SinusoidTasks(shots=5)
    with pytest.raises(ValueError, match="positive int"):
        eval_task_stream(tasks, "test", 0, 0)
    with pytest.raises(ValueError, match="start"):
        eval_task_stream(tasks, "test", 0, 5, start=6)


def test_the_rl_stream_keeps_its_prefix():
    from metagym.tasks.gym import GymTaskDistribution

    tasks = GymTaskDistribution("metagym/Navigation2D-v0", max_episode_steps=5)
    try:
        long = eval_task_stream(tasks, "test", 0, TASK_BLOCK + 3)
        short = eval_task_stream(tasks, "test", 0, 4)
        assert [(t.params, t.seed, t.eval_seed) for t in long[:4]] == [
            (t.params, t.seed, t.eval_seed) for t in short
        ]
    finally:
        tasks.close()


def _record(task, score, **fields):
    base = {
        "learner": "maml",
        "split": "test",
        "task": task,
        "steps": 1,
        "metric": "mse",
        "score": score,
        "diverged": not math.isfinite(score),
        "group": None,
        "env_steps": None,
        "iteration": None,
        "params": {"amplitude": 0.1 * task, "ids": [task, 2]},
    }
    return {**base, **fields}


def test_scores_round_trip_bit_for_bit(tmp_path):
    records = [
        _record(0, 0.1 + 0.2),
        _record(1, math.nan),
        _record(2, 1e-300, steps=None, group="reach-v3", env_steps=200, iteration=5),
        _record(3, -math.inf, params=None),
    ]
    path = write_scores(tmp_path / "scores.csv.gz", records)
    back = read_scores(path)
    assert len(back) == len(records)
    for a, b in zip(records, back, strict=True):
        assert a["score"].hex() == b["score"].hex() or (
            math.isnan(a["score"]) and math.isnan(b["score"])
        )
        assert {k: v for k, v in a.items() if k != "score"} == {
            k: v for k, v in b.items() if k != "score"
        }
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file


def test_a_damaged_scores_file_is_named(tmp_path):
    path = tmp_path / "scores.csv.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="scores.csv.gz is not a readable scores file"):
        read_scores(path)
    with gzip.open(path, "wt") as f:
        f.write("learner,score\nmaml,1\n")
    with pytest.raises(ValueError, match="columns"):
        read_scores(path)


def test_merge_checks_the_records_it_already_has():
    old = [_record(0, 1.0), _record(1, 2.0)]
    same, report = merge_scores(old, [_record(1, 2.0), _record(2, 3.0)])
    assert [r["task"] for r in same] == [0, 1, 2]
    assert report == {"added": 1, "checked": 1, "identical": 1, "max_abs_difference": 0.0,
                      "finiteness_changed": 0}  # fmt: skip
    _, report = merge_scores(old, [_record(0, 1.0 + 2e-16), _record(1, 2.5)])
    assert (report["checked"], report["identical"]) == (2, 0)
    assert report["max_abs_difference"] == pytest.approx(0.5)
    # a score that turned non-finite is counted, and the report stays JSON (no infinity)
    _, report = merge_scores(old, [_record(0, math.nan), _record(1, 2.5)])
    assert report["finiteness_changed"] == 1 and report["max_abs_difference"] == 0.5
    json.dumps(report, allow_nan=False)


def test_summary_rows_are_the_records_summary():
    tasks = SinusoidTasks(shots=5)
    context = domains.get("sinusoid").context("tiny", distributions={"tasks": tasks})
    learner = context.recipe("maml").build(context)
    records = []
    rows = evaluate(
        learner, tasks, "test", eval_task_stream(tasks, "test", 0, 12), (0, 1, 3), records=records
    )
    assert len(records) == 12 * 3 and [r["task"] for r in records[:3]] == [0, 0, 0]
    assert check_summary(rows, records) == []
    # a changed score shows in the check
    records[0] = {**records[0], "score": records[0]["score"] + 1.0}
    assert check_summary(rows, records) != []


class _Grouped(TaskDistribution):
    """Two metrics and two task groups (Meta-World's shape of results), one task diverging."""

    domain = "toy"
    splits = ("test",)
    metric = "success"
    metrics = ("success", "return")
    lower_is_better = False

    def _sample(self, n, split, generator):
        x = torch.zeros(1, 1)
        return [
            SupervisedTask(Examples(x, x), Examples(x, x), {"i": i, "env": f"e{i % 2}"})
            for i in range(n)
        ]

    def task_group(self, task):
        return task.params["env"]

    def score(self, predictor, task):
        i = task.params["i"]
        return {"success": float(i % 3 == 0), "return": math.nan if i == 4 else float(i)}


def test_groups_metrics_and_divergence_are_recomputed():
    from gymnasium.spaces import Discrete

    from metagym.rl.sb3_learners import RandomLearner

    distribution = _Grouped()
    learner = RandomLearner(Discrete(2))
    records = []
    tasks = distribution.sample(6, "test", torch.Generator())
    rows = evaluate(learner, distribution, "test", tasks, records=records, progress=False)
    assert {(r["group"], r["metric"]) for r in rows} == {
        (g, m) for g in ("all", "e0", "e1") for m in ("success", "return")
    }
    diverged = {(r["group"], r["metric"]) for r in rows if r["diverged"]}
    assert diverged == {("all", "return"), ("e0", "return")}
    assert check_summary(rows, records) == []
    assert summarize(records)[0]["mean"] == pytest.approx(2 / 6)
    assert all(r["env_steps"] == 0 and r["scored_on"] == "episode" for r in rows)


def test_a_run_writes_records_its_rows_summarize(tmp_path):
    from metagym.experiment import run

    run("sinusoid", "tiny", ["maml", "oracle"], out_dir=tmp_path, progress=False, jobs=1)
    for name in ("maml", "oracle"):
        records = read_scores(tmp_path / "runs" / name / "scores.csv.gz")
        rows = read_json(tmp_path / "runs" / name / "rows.json")["rows"]
        assert records and check_summary(rows, records) == []
        assert {r["learner"] for r in records} == {name}
    results = read_json(tmp_path / "results.json")
    assert results["config"]["task_stream"].startswith(f"blocks of {TASK_BLOCK}")
