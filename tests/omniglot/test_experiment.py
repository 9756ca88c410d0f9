"""experiments/omniglot.py (= metagym run omniglot) end to end at a tiny size, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metagym import domains

ROOT = Path(__file__).resolve().parents[2]
LEARNERS = list(domains.get("omniglot").recipes)


def _run(*args: str, root: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "METAGYM_DATA": str(root), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "omniglot.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def test_script_end_to_end_tiny(omniglot_root, tmp_path):
    out = tmp_path / "out"
    done = _run(
        "--profile",
        "tiny",
        "--learners",
        ",".join(LEARNERS),
        "--jobs",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
        root=omniglot_root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = out / "5way-1shot"
    results = json.loads((folder / "results.json").read_text())
    splits = {"test", "test-alphabets", "ood-shear-0.5", "ood-scale-0.5"}
    for name in LEARNERS:
        mine = [r for r in results["rows"] if r["learner"] == name]
        assert {r["split"] for r in mine} == splits, name
        assert all(r["n_tasks"] == 4 and r["metric"] == "accuracy" and r["ways"] == 5 for r in mine)
        assert all(r["mean"] is None or 0.0 <= r["mean"] <= 1.0 for r in mine)
    assert {r["steps"] for r in results["rows"] if r["learner"] == "maml"} == {0, 1, 3}
    sweep = json.loads((folder / "steps_sweep.json").read_text())
    assert {r["steps"] for r in sweep["rows"]} == set(range(11))
    for plot in ("accuracy_by_split", "accuracy_vs_shift", "accuracy_vs_steps", "task_grid"):
        assert (folder / f"{plot}.png").stat().st_size > 1000, plot
    examples = json.loads((folder / "examples.json").read_text())
    assert set(examples["predictions"]) == set(LEARNERS)
    assert "| protonet |" in (folder / "results.md").read_text()
    assert (folder / "runs" / "maml" / "checkpoint.pt").is_file()
    families = {r["learner"]: r["family"] for r in results["rows"]}
    assert families["protonet"] == "non-parametric" and families["maml"] == "gradient"
    assert {r["family"] for r in sweep["rows"]} == {"gradient"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--learners", "protonet,nope"), "unknown learner ['nope']"),
        (("--ways", "500"), "500-way tasks need 500 classes"),
        (("--shots", "1", "--ways", "x"), "--ways: cannot read 'x'"),
    ],
)
def test_script_refuses_bad_arguments(omniglot_root, tmp_path, args, message):
    done = _run(*args, "--out", str(tmp_path / "out"), root=omniglot_root, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_evaluate_reads_the_data_where_the_run_did(omniglot_root, tmp_path, monkeypatch, capsys):
    from metagym.cli import main

    monkeypatch.delenv("METAGYM_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no cached copy to fall back on
    out = tmp_path / "run"
    args = ["run", "omniglot", "--profile", "tiny", "--learners", "protonet", "--jobs", "1"]
    assert main([*args, "--data-root", str(omniglot_root), "--out", str(out), "--no-progress"]) == 0
    folder = out / "5way-1shot"
    recorded = json.loads((folder / "results.json").read_text())["config"]["data_root"]
    assert recorded == str(Path(omniglot_root).resolve())
    assert (
        main(["evaluate", str(out), "--eval-tasks", "6", "--splits", "test", "--no-progress"]) == 0
    )
    assert "of the 4 the run had, 4 identical" in capsys.readouterr().out
