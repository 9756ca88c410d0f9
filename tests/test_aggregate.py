"""Aggregating results over seeds: hand-computed intervals, divergence, errors, the CLI end to end."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from metagym.aggregate import aggregate, aggregate_rows, t_quantile_975
from metagym.results import write_results

ROOT = Path(__file__).resolve().parents[1]


def _row(learner="maml", split="test", steps=1, mean=0.5, n_tasks=10, **extra):
    return {
        "domain": "sinusoid",
        "learner": learner,
        "split": split,
        "shots": 5,
        "steps": steps,
        "metric": "mse",
        "mean": mean,
        "ci95": 0.01,
        "n_tasks": n_tasks,
        "diverged": False,
        "n_diverged": 0,
        "diverged_at_step": None,
        **extra,
    }


def _run(seed, rows):
    return {"seed": seed, "config": {}, "rows": rows}


def test_mean_and_student_interval_by_hand():
    runs = [_run(s, [_row(mean=m)]) for s, m in ((0, 0.5), (1, 0.6), (2, 0.7))]
    rows, missing = aggregate_rows(runs)
    assert missing == []
    (row,) = rows
    assert row["mean"] == pytest.approx(0.6)
    # std of (0.5, 0.6, 0.7) with n - 1 = 2 is 0.1; t(0.975, 2) = 4.303
    assert row["ci95"] == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert row["n_seeds"] == 3 and row["seeds"] == [0, 1, 2] and row["n_tasks"] == 30
    assert row["seed_means"] == [0.5, 0.6, 0.7]
    assert row["learner"] == "maml" and row["steps"] == 1 and row["shots"] == 5


def test_seeds_that_agree_by_chance_keep_their_tasks_interval():
    # two seeds with the same mean: the spread across seeds is 0, each seed's own interval not
    runs = [_run(s, [_row(mean=0.395, ci95=0.2)]) for s in (0, 1)]
    (row,) = aggregate_rows(runs)[0]
    se = 0.2 / 1.959964
    assert row["ci95"] == pytest.approx(12.706 * math.sqrt(2 * se**2) / 2)
    # seeds that disagree keep their spread (the floor never narrows)
    runs = [_run(s, [_row(mean=m, ci95=0.001)]) for s, m in ((0, 0.5), (1, 0.7))]
    assert aggregate_rows(runs)[0][0]["ci95"] == pytest.approx(12.706 * 0.1)


def test_t_quantile_table_and_expansion():
    assert t_quantile_975(1) == pytest.approx(12.706)
    assert t_quantile_975(30) == pytest.approx(2.042)
    assert t_quantile_975(40) == pytest.approx(2.021, abs=1e-3)
    assert t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_975(0)


def test_rows_are_matched_by_identity_not_position():
    a = [_row(steps=1, mean=1.0), _row(steps=5, mean=2.0)]
    b = [_row(steps=5, mean=4.0), _row(steps=1, mean=3.0)]
    rows, _ = aggregate_rows([_run(0, a), _run(1, b)])
    by_steps = {r["steps"]: r["mean"] for r in rows}
    assert by_steps == {1: pytest.approx(2.0), 5: pytest.approx(3.0)}


def test_a_row_diverged_in_one_seed_stays_diverged():
    bad = _row(mean=None, diverged=True, n_diverged=3, diverged_at_step=5)
    bad["ci95"] = None
    rows, _ = aggregate_rows([_run(0, [_row(mean=0.4)]), _run(1, [bad])])
    (row,) = rows
    assert row["diverged"] and row["mean"] is None and row["ci95"] is None
    assert row["n_diverged"] == 3 and row["diverged_at_step"] == 5 and row["n_diverged_seeds"] == 1


def test_rows_missing_from_a_run_are_left_out_and_reported():
    runs = [_run(0, [_row(), _row(learner="pretrain")]), _run(1, [_row()])]
    rows, missing = aggregate_rows(runs)
    assert [r["learner"] for r in rows] == ["maml"]
    assert [r["learner"] for r in missing] == ["pretrain"]


@pytest.mark.parametrize(
    "runs, message",
    [
        ([_run(0, [_row()])], "at least 2 seeds"),
        ([_run(0, [_row()]), _run(0, [_row()])], "different seeds"),
        ([_run(0, [_row()]), _run(1, [_row(learner="other")])], "no row in common"),
        ([_run(0, [_row()]), _run(1, [{**_row(), "domain": "omniglot"}])], "mix domains"),
    ],
)
def test_bad_input_is_refused(runs, message):
    with pytest.raises(ValueError, match=message):
        aggregate_rows(runs)


def test_missing_results_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        aggregate([tmp_path / "nowhere", tmp_path], tmp_path / "out")


def test_aggregate_writes_schema_files(tmp_path):
    for seed, mean in ((0, 1.0), (1, 3.0)):
        write_results(
            tmp_path / f"s{seed}" / "results.json", [_row(mean=mean)], config={}, seed=seed
        )
    results = aggregate([tmp_path / "s0", tmp_path / "s1" / "results.json"], tmp_path / "agg")
    assert results["seed"] == [0, 1]
    assert results["config"]["aggregate"]["seeds"] == [0, 1]
    assert results["rows"][0]["mean"] == pytest.approx(2.0)
    text = (tmp_path / "agg" / "results.md").read_text()
    assert "over 2 seeds" in text and "interval across 2 seeds, 20 tasks in all" in text


def test_cli_end_to_end_on_two_tiny_sinusoid_runs(tmp_path):
    for seed in (0, 1):
        result = subprocess.run(
            [sys.executable, "experiments/sinusoid.py", "--no-progress", "--profile", "tiny"]
            + [
                "--learners",
                "maml,pretrain",
                "--seed",
                str(seed),
                "--out",
                str(tmp_path / f"s{seed}"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    out = tmp_path / "agg"
    result = subprocess.run(
        [sys.executable, "-m", "metagym.aggregate", str(tmp_path / "s0"), str(tmp_path / "s1")]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "results.json").read_text())
    singles = [json.loads((tmp_path / f"s{s}" / "results.json").read_text()) for s in (0, 1)]
    assert len(data["rows"]) == len(singles[0]["rows"])
    row = next(r for r in data["rows"] if r["learner"] == "maml" and r["split"] == "test")
    seed_means = [
        next(
            r["mean"]
            for r in single["rows"]
            if r["learner"] == "maml" and r["split"] == "test" and r["steps"] == row["steps"]
        )
        for single in singles
    ]
    assert row["mean"] == pytest.approx(sum(seed_means) / 2)
    assert (out / "metric_vs_steps.png").stat().st_size > 0
    # the paired section: differences to the best meta-learner (maml; pretrain is a baseline)
    paired = [
        r for r in json.loads((out / "paired.json").read_text())["rows"] if r["split"] == "test"
    ]
    assert {r["best"] for r in paired} == {"maml"} and {r["pairing"] for r in paired} == {"seeds"}
    mean = {
        r["learner"]: next(
            x["mean"] for x in data["rows"]
            if x["learner"] == r["learner"] and x["split"] == "test" and x["steps"] == r["steps"]
        )
        for r in paired
    }  # fmt: skip
    other = next(r for r in paired if r["learner"] == "pretrain")
    assert other["difference"] == pytest.approx(mean["pretrain"] - mean["maml"])
    assert "### Paired differences to the best learner" in (out / "results.md").read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "metagym.aggregate", str(tmp_path / "s0"), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "at least 2 seeds" in bad.stderr
