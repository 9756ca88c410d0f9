"""Multi-process meta-training: 2 gloo CPU processes under torchrun reach the weights of a
single-process run with the same seed (the meta-batch is split across ranks, gradients all-reduced).

This file is also the torchrun worker: ``torchrun --nproc-per-node 2 tests/test_distributed.py OUT``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metagym.checkpoint import load_checkpoint
from metagym.distributed import is_main_process, shard_bounds
from metagym.learners import MAML
from metagym.nets import mlp
from metagym.seeding import build_seeded
from metagym.tasks import SinusoidTasks
from metagym.train import TrainConfig, train
from tests.torchrun import metrics_rows, one_thread_env, torchrun_two

# meta-batch 5 on 2 ranks: shares of 2 and 3 tasks, so the gradient weighting matters.
CONFIG = dict(meta_batch=5, seed=3, log_every=2, checkpoint_every=2)
ITERATIONS = 4
LEARNERS = {
    "maml-vmap": dict(train_steps=2, backend="vmap"),
    "meta-sgd-higher": dict(train_steps=1, meta_sgd=True, backend="higher"),
}


def _learner(name: str) -> MAML:
    return build_seeded(lambda: MAML(mlp(1, [16, 16], 1), meta_lr=1e-2, **LEARNERS[name]), 0)


def _run(out: Path, name: str, iterations: int, resume: bool = False) -> Path:
    return train(
        _learner(name),
        SinusoidTasks(5),
        TrainConfig(iterations, **CONFIG),
        out / name,
        resume=resume,
        progress=False,
    )


class _ManualUpdate(MAML):
    """Updates its weights without its optimizer (as a TRPO step does): not all-reducible."""

    def meta_train_step(self, tasks):
        self.zero_grad()
        self.compute_meta_gradients(tasks)
        with torch.no_grad():
            for p in self.parameters():
                p -= 1e-3 * p.grad
        return {}


def _worker(out: Path) -> None:
    """What each torchrun process runs: both learners, a resumed run, a refused learner."""
    torch.set_num_threads(1)
    for name in LEARNERS:
        _run(out, name, ITERATIONS)
    _run(out / "resume", "maml-vmap", ITERATIONS - 2)
    _run(out / "resume", "maml-vmap", ITERATIONS, resume=True)
    manual = build_seeded(lambda: _ManualUpdate(mlp(1, [4], 1)), 0)
    try:
        train(manual, SinusoidTasks(5), TrainConfig(2, **CONFIG), out / "manual", progress=False)
    except RuntimeError as error:
        refused = "without a step of its optimizer" in str(error)
    else:
        refused = False
    if is_main_process():
        (out / "done").write_text("refused" if refused else "not refused")


def test_shard_bounds_cover_the_meta_batch_exactly():
    for n in (2, 5, 25, 32):
        for world in (1, 2, 3, 4):
            if n < world:
                continue
            bounds = [shard_bounds(n, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1
    with pytest.raises(ValueError):
        shard_bounds(4, 2, 2)


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(checkpoint)["learner"]["model"]


def test_two_gloo_processes_match_a_single_process_run(tmp_path):
    torchrun_two(__file__, str(tmp_path / "multi"))
    # A learner that bypasses its optimizer is refused instead of drifting apart across ranks.
    assert (tmp_path / "multi" / "done").read_text() == "refused"

    for name in LEARNERS:
        single = _run(tmp_path / "single", name, ITERATIONS)
        multi = tmp_path / "multi" / name / "checkpoint.pt"
        want, got = _weights(single), _weights(multi)
        assert want.keys() == got.keys()
        changed = False
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=key)
            changed |= not torch.equal(want[key], _learner(name).state_dict()[key])
        assert changed, "training did not move the weights"
        # Only rank 0 wrote the metrics; they are the whole meta-batch's averages.
        rows_single = metrics_rows(tmp_path / "single" / name / "metrics.csv")
        rows_multi = metrics_rows(tmp_path / "multi" / name / "metrics.csv")
        assert [r["iteration"] for r in rows_multi] == [r["iteration"] for r in rows_single]
        for a, b in zip(rows_single, rows_multi, strict=True):
            key = "losses/query_after_adaptation"
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-5)

    # Stopped after 2 iterations and resumed under torchrun: same weights again.
    resumed = _weights(tmp_path / "multi" / "resume" / "maml-vmap" / "checkpoint.pt")
    want = _weights(tmp_path / "single" / "maml-vmap" / "checkpoint.pt")
    for key in want:
        torch.testing.assert_close(resumed[key], want[key], rtol=1e-5, atol=1e-6, msg=key)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))


def test_the_metagym_command_under_torchrun_matches_one_process(tmp_path):
    """``torchrun -m metagym run ...``: rank 0 writes and prints; the numbers are those of one
    process up to the order of the all-reduced sums."""
    args = ["run", "sinusoid", "--profile", "tiny", "--learners", "maml,oracle", "--no-progress"]
    multi, single = tmp_path / "multi", tmp_path / "single"
    done = torchrun_two("-m", "metagym", *args, "--out", str(multi), timeout=300)
    assert done.stdout.count("table: ") == 1  # printed by rank 0 only
    one = [sys.executable, "-m", "metagym", *args, "--jobs", "1", "--threads", "1"]
    subprocess.run(
        [*one, "--out", str(single)], env=one_thread_env(), check=True, capture_output=True
    )
    rows = {
        path: {
            (r["learner"], r["split"], r["steps"]): r["mean"]
            for r in json.loads((path / "results.json").read_text())["rows"]
        }
        for path in (multi, single)
    }
    assert rows[multi].keys() == rows[single].keys()
    for key, mean in rows[single].items():
        assert rows[multi][key] == pytest.approx(mean, rel=1e-5), key
