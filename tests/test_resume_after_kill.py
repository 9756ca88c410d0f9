"""A multi-learner run killed in the middle and run again with ``--resume`` keeps the learners that
had finished and gives the results of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "run",
    "sinusoid",
    "--profile",
    "tiny",
    "--learners",
    "maml,blackbox,oracle",
    "--iterations",
    "maml=20,blackbox=600,oracle=20",
    "--checkpoint-every",
    "20",
    "--jobs",
    "1",
    "--threads",
    "1",
    "--no-progress",
]


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "metagym", *ARGS, "--out", str(out), *extra]


def _rows(out: Path) -> dict:
    rows = json.loads((out / "results.json").read_text())["rows"]
    return {(r["learner"], r["split"], r["steps"]): (r["mean"], r["ci95"]) for r in rows}


def test_killed_run_resumes_to_the_uninterrupted_results(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(_command(whole), cwd=ROOT, check=True, capture_output=True, timeout=600)

    process = subprocess.Popen(_command(broken), cwd=ROOT, stderr=subprocess.PIPE)
    checkpoint = broken / "runs" / "blackbox" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():  # maml has finished; blackbox is half-way
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (broken / "runs" / "maml" / "rows.json").is_file()
    assert not (broken / "runs" / "blackbox" / "rows.json").exists()
    assert not (broken / "results.json").exists()
    finished = (broken / "runs" / "maml" / "rows.json").stat().st_mtime_ns

    done = subprocess.run(
        _command(broken, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (broken / "runs" / "maml" / "rows.json").stat().st_mtime_ns == finished  # kept
    assert _rows(broken) == _rows(whole)


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    subprocess.run(_command(out), cwd=ROOT, check=True, capture_output=True, timeout=600)
    done = subprocess.run(
        _command(out, "--resume", "--seed", "7"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2
    assert "other settings" in done.stderr and "seed: 0 -> 7" in done.stderr


SHARED_DATA = ROOT.parent / "shared" / "data" / "omniglot"
#: (command, the learner whose rows mark the kill point, the results folder) per domain.
OTHER_DOMAINS = {
    "rl": (
        ["run", "rl", "--env", "metagym/Navigation2D-v0", "--profile", "tiny"]
        + ["--learners", "maml,pretrain,scratch,random", "--iterations", "6"],
        "maml",
        "",
    ),
    "omniglot": (
        ["run", "omniglot", "--profile", "tiny", "--data-root", str(SHARED_DATA)]
        + ["--learners", "protonet,maml,blackbox", "--iterations", "40"],
        "protonet",
        "5way-1shot",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("domain", sorted(OTHER_DOMAINS))
def test_killed_run_resumes_in_every_domain(domain, tmp_path):
    args, first, sub = OTHER_DOMAINS[domain]
    if domain == "omniglot" and not SHARED_DATA.is_dir():
        pytest.skip("no Omniglot data")
    common = [sys.executable, "-m", "metagym", *args, "--jobs", "1", "--threads", "1"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run([*common, "--out", str(whole)], cwd=ROOT, check=True, capture_output=True)
    process = subprocess.Popen([*common, "--out", str(broken)], cwd=ROOT, stderr=subprocess.PIPE)
    marker = broken / sub / "runs" / first / "rows.json"
    while not marker.exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    time.sleep(0.5)  # into the next learner
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    subprocess.run(
        [*common, "--out", str(broken), "--resume"], cwd=ROOT, check=True, capture_output=True
    )
    assert _rows(broken / sub) == _rows(whole / sub)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_at_a_random_moment_resumes_to_the_same_results(seed, tmp_path):
    """SIGKILL at a random moment (start-up, training, evaluation or writing), then resume."""
    import random

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    start = time.monotonic()
    subprocess.run(_command(whole), cwd=ROOT, check=True, capture_output=True, timeout=600)
    duration = time.monotonic() - start
    process = subprocess.Popen(_command(broken), cwd=ROOT, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(seed).uniform(0.2, 0.9) * duration)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = subprocess.run(
        _command(broken, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _rows(broken) == _rows(whole)


def _children(pid: int) -> set[int]:
    """The child processes of ``pid`` (Linux: /proc/<pid>/task/*/children)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text()
        found |= {int(c) for c in text.split()}
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_workers_end_when_the_runner_is_killed(tmp_path):
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "metagym",
        "run",
        "sinusoid",
        "--profile",
        "tiny",
        "--learners",
        "maml,blackbox",
        "--iterations",
        "100000",
        "--jobs",
        "2",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not all((out / "runs" / n / "metrics.csv").exists() for n in ("maml", "blackbox")):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = _children(process.pid)
    assert workers
    os.kill(process.pid, signal.SIGKILL)  # the runner only, not its process group
    process.wait()
    deadline = time.monotonic() + 30
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = {w for w in alive if Path(f"/proc/{w}").exists() and _not_zombie(w)}
    for worker in alive:  # do not leave them running if the test fails
        os.kill(worker, signal.SIGKILL)
    assert not alive, f"workers {sorted(alive)} outlived the killed runner"


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
