"""Image batches are laid out channels-last on the CPU (metagym.nets.layout): the same values,
strides torch's convolutions keep through the whole net."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from metagym.learners.blackbox_classifier import BlackBoxClassifier
from metagym.learners.in_context import TransformerClassifier
from metagym.learners.protonet import PrototypicalNetwork
from metagym.nets.layout import channels_last
from metagym.tasks import make_generator
from metagym.tasks.base import Examples, SupervisedTask


def _is_nhwc(x: torch.Tensor) -> bool:
    n, c, h, w = x.shape
    return x.stride() == (c * h * w, 1, w * c, c)


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_last_keeps_values_and_convolutions_keep_the_layout(channels):
    x = torch.randn(4, channels, 6, 6, generator=make_generator(0))
    assert not _is_nhwc(x)
    y = channels_last(x)
    assert _is_nhwc(y) and torch.equal(y, x)
    weight = torch.randn(5, channels, 3, 3, generator=make_generator(1))
    out = F.conv2d(y, weight, padding=1)
    assert _is_nhwc(out)
    # Without it a single-channel batch stays NCHW through the convolution.
    if channels == 1:
        assert not _is_nhwc(F.conv2d(x.contiguous(memory_format=torch.channels_last), weight))


def test_tasks_moved_to_the_cpu_carry_channels_last_images_and_leave_other_inputs():
    g = make_generator(2)
    images = Examples(torch.rand(5, 1, 8, 8, generator=g), torch.arange(5))
    vectors = Examples(torch.rand(5, 3, generator=g), torch.rand(5, 1, generator=g))
    task = SupervisedTask(images, images).to("cpu")
    for moved in (task.support, task.query):
        assert _is_nhwc(moved.x) and torch.equal(moved.x, images.x)
        assert torch.equal(moved.y, images.y)
    moved = vectors.to("cpu")
    assert moved.x.stride() == vectors.x.stride() and torch.equal(moved.x, vectors.x)


class _LayoutProbe(nn.Module):
    """An embedding ``(n, 1, 8, 8) -> (n, 4)`` that records whether its input is channels-last."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 8)
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(_is_nhwc(x))
        return self.conv(x).flatten(1)


@pytest.mark.parametrize("learner", ["protonet", "blackbox", "transformer"])
def test_episodic_learners_embed_channels_last_batches(learner):
    """Stacking tasks and flattening episodes gives NCHW strides back; the episodic learners lay
    the flattened batch out channels-last again before their embedding."""
    g = make_generator(3)

    def task():
        y = torch.arange(3).repeat(2)
        return SupervisedTask(
            Examples(torch.rand(6, 1, 8, 8, generator=g), y),
            Examples(torch.rand(6, 1, 8, 8, generator=g), y),
        ).to("cpu")

    probe = _LayoutProbe()
    if learner == "protonet":
        model = PrototypicalNetwork(probe)
    elif learner == "blackbox":
        model = BlackBoxClassifier(probe, dim=4, ways=3, hidden=8, key_dim=4)
    else:
        model = TransformerClassifier(probe, dim=4, ways=3, d_model=8, heads=2, layers=1)
    model.meta_train_step([task(), task()])
    assert probe.seen and all(probe.seen)
