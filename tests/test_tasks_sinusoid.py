import math

import pytest
import torch

from metagym.tasks import SinusoidTasks, UnknownSplitError, make_generator
from metagym.tasks.sinusoid import sinusoid


def _draw(split="train", seed=0, n=8, shots=5):
    return SinusoidTasks(shots=shots).sample(n, split, make_generator(seed))


def test_same_seed_same_tasks():
    a, b = _draw(seed=3), _draw(seed=3)
    for ta, tb in zip(a, b, strict=True):
        assert torch.equal(ta.support.x, tb.support.x)
        assert torch.equal(ta.query.y, tb.query.y)
        assert ta.params == tb.params


def test_different_seeds_and_splits_differ():
    assert not torch.equal(_draw(seed=0)[0].support.x, _draw(seed=1)[0].support.x)
    train = _draw("train")[0].params
    ood = _draw("ood-amplitude")[0].params
    assert train != ood


@pytest.mark.parametrize("shots", [5, 10, 20])
def test_shapes_and_targets_follow_the_sinusoid(shots):
    for task in _draw(shots=shots, n=4):
        assert task.support.x.shape == (shots, 1) and task.support.y.shape == (shots, 1)
        assert task.query.x.shape == (10, 1)
        expected = sinusoid(task.query.x, task.params["amplitude"], task.params["phase"])
        assert torch.allclose(task.query.y, expected, atol=1e-5)


def test_support_and_query_are_disjoint():
    for task in _draw(n=20):
        support = set(task.support.x.flatten().tolist())
        assert not support & set(task.query.x.flatten().tolist())


@pytest.mark.parametrize(
    "split, amp, phase",
    [
        ("test", (0.1, 5.0), (0.0, math.pi)),
        ("ood-amplitude", (5.0, 10.0), (0.0, math.pi)),
        ("ood-phase", (0.1, 5.0), (math.pi, 2 * math.pi)),
    ],
)
def test_split_parameter_ranges(split, amp, phase):
    for task in _draw(split, n=200):
        assert amp[0] <= task.params["amplitude"] <= amp[1]
        assert phase[0] <= task.params["phase"] <= phase[1]


def test_extrapolation_queries_lie_outside_the_support_range():
    for task in _draw("ood-extrapolate", n=50):
        assert task.support.x.max() <= 0.0 <= task.query.x.min()


def test_bad_input_is_refused_with_accepted_values():
    with pytest.raises(UnknownSplitError, match="ood-phase"):
        _draw("nope")
    with pytest.raises(ValueError, match="shots"):
        SinusoidTasks(shots=0)
    with pytest.raises(TypeError, match="Generator"):
        SinusoidTasks().sample(2, "train", None)
    with pytest.raises(ValueError, match="positive"):
        SinusoidTasks().sample(0, "train", make_generator(0))
