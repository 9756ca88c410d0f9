"""Launch two gloo CPU processes under torchrun for the distributed tests, and read what they log."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


def one_thread_env() -> dict[str, str]:
    """The environment of a test's subprocess: one thread, this checkout on the path."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}


def torchrun_two(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``torchrun --nproc-per-node=2 ARGS`` in :func:`one_thread_env` and fail the test
    with the tail of its output if it does not exit 0."""
    done = subprocess.run(
        [*TORCHRUN, *args], env=one_thread_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def metrics_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a run's ``metrics.csv``, as strings."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
