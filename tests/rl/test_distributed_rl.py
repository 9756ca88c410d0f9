"""MAML-RL under torchrun: 2 gloo CPU processes, each collecting and adapting to its share of the
meta-batch, with TRPO's gradient, Fisher-vector products and line search averaged across them, reach
the weights of a single-process run with the same seed (MAML and the pretrained baseline).

This file is also the torchrun worker: ``torchrun --nproc-per-node 2 tests/rl/test_distributed_rl.py
OUT``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from metagym.checkpoint import load_checkpoint
from metagym.distributed import is_main_process
from metagym.rl.maml_rl import MAMLRL
from metagym.rl.policies import make_policy
from metagym.seeding import build_seeded
from metagym.tasks.gym import GymTaskDistribution
from metagym.train import TrainConfig, train
from tests.torchrun import metrics_rows, torchrun_two

NAV = "metagym/Navigation2D-v0"
# meta-batch 3 on 2 ranks: shares of 1 and 2 tasks, so the weighting of the averages matters.
CONFIG = dict(meta_batch=3, seed=7, log_every=1, checkpoint_every=2)
ITERATIONS = 2
TRAIN_STEPS = {"maml": 1, "pretrain-pg": 0}
# On a budget this small, the paper's damping (1e-5) leaves conjugate gradient so ill-conditioned
# that the rounding of the reordered sums (1e-16) grows to 1e-4 in the weights even in float64
# (measured), and a wrong reduction could hide in it. With 0.1 and a float64 policy the two runs
# agree to about 1e-11, and a 1e-7 relative error in the averaged numbers moves the weights by 1e-5.
CG_DAMPING = 0.1


def _run(out: Path, name: str) -> Path:
    distribution = GymTaskDistribution(NAV, max_episode_steps=10, eval_episodes=2)

    def build() -> MAMLRL:
        policy = make_policy(distribution.observation_space, distribution.action_space, (16,))
        policy.double()
        return MAMLRL(
            policy,
            distribution.sampler,
            fast_batch=3,
            train_steps=TRAIN_STEPS[name],
            cg_damping=CG_DAMPING,
            name=name,
        )

    learner = build_seeded(build, 0)
    try:
        return train(learner, distribution, TrainConfig(ITERATIONS, **CONFIG), out / name)
    finally:
        distribution.close()


def _worker(out: Path) -> None:
    torch.set_num_threads(1)
    for name in TRAIN_STEPS:
        _run(out, name)
    if is_main_process():
        (out / "done").write_text("done")


def test_two_gloo_processes_give_the_single_process_weights(tmp_path):
    torchrun_two(__file__, str(tmp_path / "multi"))
    assert (tmp_path / "multi" / "done").exists()

    for name in TRAIN_STEPS:
        single = load_checkpoint(_run(tmp_path / "single", name))["learner"]["model"]
        multi = load_checkpoint(tmp_path / "multi" / name / "checkpoint.pt")["learner"]["model"]
        assert single.keys() == multi.keys()
        for key in single:
            torch.testing.assert_close(multi[key], single[key], rtol=1e-9, atol=1e-9, msg=key)
        # Only rank 0 wrote metrics: the whole meta-batch's, and every TRPO step was taken.
        rows_single = metrics_rows(tmp_path / "single" / name / "metrics.csv")
        rows_multi = metrics_rows(tmp_path / "multi" / name / "metrics.csv")
        assert len(rows_multi) == len(rows_single) == ITERATIONS
        for a, b in zip(rows_single, rows_multi, strict=True):
            assert float(a["trpo/step_fraction"]) > 0, f"{name}: no step was accepted"
            for key in (
                "charts/return_before_adaptation",
                "charts/return_after_adaptation",
                "losses/surrogate_before",
                "trpo/kl",
            ):
                # returns are float32 means, averaged across ranks in float64
                assert abs(float(b[key]) - float(a[key])) <= 1e-6 * (1 + abs(float(a[key]))), key


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
