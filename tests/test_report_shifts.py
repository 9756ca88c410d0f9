"""The sinusoid's graded shifts (the report's degradation curves) and the runner's peak memory."""

import math

import pytest

from metagym import domains
from metagym.memory import PeakMemory
from metagym.tasks import SinusoidTasks, make_generator
from metagym.tasks.sinusoid import SHIFT_KINDS, shift_split


def _params(split, n=300, levels=3):
    tasks = SinusoidTasks(levels=levels).sample(n, split, make_generator(0))
    return tasks


def _phase_distance(phase: float) -> float:
    """Circular distance of ``phase`` from the training range [0, pi]."""
    phase %= 2 * math.pi
    return 0.0 if phase <= math.pi else min(phase - math.pi, 2 * math.pi - phase)


def test_graded_splits_exist_beside_the_single_ones():
    tasks = SinusoidTasks(levels=4)
    for name in ("test", "ood-amplitude", "ood-phase", "ood-extrapolate"):
        assert name in tasks.splits
    assert [s for s in tasks.splits if s.startswith("ood-phase-")] == [
        f"ood-phase-{k}" for k in range(1, 5)
    ]
    assert set(tasks.shifts) == {shift_split(k, i) for k in SHIFT_KINDS for i in range(1, 5)}
    assert not SinusoidTasks(levels=0).shifts


@pytest.mark.parametrize("level", [1, 2, 3])
def test_each_level_steps_out_from_the_training_range(level):
    lo, hi = (level - 1) / 3, level / 3
    for task in _params(f"ood-amplitude-{level}"):
        assert 5 + 5 * lo <= task.params["amplitude"] <= 5 + 5 * hi
    sides = set()
    for task in _params(f"ood-phase-{level}"):
        phase = task.params["phase"]
        assert math.pi <= phase <= 2 * math.pi
        assert lo * math.pi / 2 - 1e-6 <= _phase_distance(phase) <= hi * math.pi / 2 + 1e-6
        sides.add(phase > 1.5 * math.pi)
    assert sides == {True, False}  # both sides of the circle
    for task in _params(f"ood-extrapolate-{level}", n=50):
        assert task.support.x.max() <= 0.0
        assert 5 * lo <= task.query.x.min() and task.query.x.max() <= 5 * hi


def test_bad_levels_are_refused():
    for bad in (-1, True, 1.5, 101):
        with pytest.raises(ValueError, match="levels"):
            SinusoidTasks(levels=bad)


def test_the_domain_evaluates_graded_splits_only_when_asked():
    sinusoid = domains.get("sinusoid")
    plain = sinusoid.context("tiny")
    assert "ood-amplitude-1" not in sinusoid.eval_splits(plain)
    graded = sinusoid.context(sinusoid.profile("tiny").replace(shift_levels=2))
    splits = sinusoid.eval_splits(graded)
    assert "ood-amplitude-2" in splits and "ood-amplitude-3" not in splits
    assert "ood-amplitude" in splits


def test_peak_memory_sees_a_large_allocation():
    import torch

    with PeakMemory("cpu", interval=0.005) as peak:
        block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB
        block.add_(1)
        import time

        time.sleep(0.05)
        del block
    result = peak.result()
    assert result["growth_mb"] >= 50, result
    assert result["peak_mb"] >= result["start_mb"] + result["growth_mb"] - 0.2
