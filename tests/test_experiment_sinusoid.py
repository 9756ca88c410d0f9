"""The sinusoid experiment script, end to end at a tiny size, in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

from metagym.results import REQUIRED_ROW_KEYS

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "experiments/sinusoid.py", "--no-progress", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_script_writes_results_in_the_schema(tmp_path):
    out = tmp_path / "out"
    result = _run(
        "--profile", "tiny", "--learners", "maml,blackbox", "--out", str(out), "--seed", "3"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["seed"] == 3 and list(data["config"]["learners"]) == ["maml", "blackbox"]
    assert data["config"]["families"] == {"maml": "gradient", "blackbox": "black-box"}
    rows = data["rows"]
    splits = {"train", "val", "test", "ood-amplitude", "ood-phase", "ood-extrapolate"}
    assert {r["split"] for r in rows} == splits
    for row in rows:
        assert set(REQUIRED_ROW_KEYS) <= set(row)
        assert row["domain"] == "sinusoid" and row["metric"] == "mse" and row["shots"] == 5
        assert row["n_tasks"] == 8
        assert row["family"] == {"maml": "gradient", "blackbox": "black-box"}[row["learner"]]
    maml_steps = sorted(r["steps"] for r in rows if r["learner"] == "maml" and r["split"] == "test")
    assert maml_steps == [0, 1, 2, 5, 10]
    assert [r["steps"] for r in rows if r["learner"] == "blackbox" and r["split"] == "test"] == [
        None
    ]
    for name in ("results.md", "metric_vs_steps.png", "examples.png", "training_curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert "| maml |" in (out / "results.md").read_text()
    assert (out / "runs" / "maml" / "metrics.csv").exists()
    assert (
        json.loads((out / "runs" / "blackbox" / "rows.json").read_text())["learner"] == "blackbox"
    )
    assert set(data["config"]["timings"]) == {"maml", "blackbox"}
    assert str(out / "results.md") in result.stdout


def test_bad_arguments_fail_before_training(tmp_path):
    result = _run("--learners", "maml,reptil", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "reptil" in result.stderr and "accepted" in result.stderr
    assert not (tmp_path / "o").exists()
    result = _run("--shots", "0", "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "shots" in result.stderr
    (tmp_path / "file").write_text("")
    result = _run("--out", str(tmp_path / "file"))
    assert result.returncode != 0 and "is a file" in result.stderr


def test_a_resumed_learner_runs_with_the_threads_of_the_whole_run(tmp_path, monkeypatch):
    # The default --jobs 0 splits the cores between the run's learners; a resume with one
    # learner left used to give it every core, and CPU scores differ with the thread count.
    import os
    import shutil

    from metagym.cli import main

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    out = tmp_path / "run"
    args = ["run", "sinusoid", "--profile", "tiny", "--learners", "oracle,pretrain"]
    assert main([*args, "--jobs", "0", "--no-progress", "--out", str(out)]) == 0
    first = json.loads((out / "results.json").read_text())["config"]
    assert (first["jobs"], first["threads"]) == (2, 2)
    shutil.rmtree(out / "runs" / "pretrain")  # as if killed before pretrain finished
    assert main([*args, "--no-progress", "--out", str(out), "--resume"]) == 0
    again = json.loads((out / "results.json").read_text())["config"]
    assert (again["jobs"], again["threads"]) == (1, 2)
    record = json.loads((out / "runs" / "pretrain" / "rows.json").read_text())
    assert record["threads"] == 2


def test_resume_checks_the_saved_learners_of_finished_learners(tmp_path, capsys):
    from metagym.cli import main

    out = tmp_path / "run"
    args = ["run", "sinusoid", "--profile", "tiny", "--learners", "maml", "--jobs", "1"]
    args += ["--threads", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    saved = out / "runs" / "maml" / "learner.pt"
    intact = saved.read_bytes()
    saved.write_bytes(intact[: len(intact) // 2])  # truncated
    assert main([*args, "--resume"]) == 2
    assert "learner.pt" in capsys.readouterr().err
    saved.unlink()  # gone: the learner is rerun from its last checkpoint, to the same results
    assert main([*args, "--resume"]) == 0
    assert saved.is_file()
    assert json.loads((out / "results.json").read_text())["rows"] == rows
