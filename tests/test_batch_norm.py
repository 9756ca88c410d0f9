"""metagym.nets.batch_norm computes what F.batch_norm (batch statistics) computes, with first
and second derivatives, and keeps the channels-last layout in its second derivatives."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from metagym.nets.batch_norm import batch_norm
from metagym.nets.layout import channels_last
from metagym.tasks import make_generator


def _derivatives(norm, x, weight, bias, probe):
    """Output, its gradients (create_graph) and the gradient of a function of those gradients:
    what second-order MAML takes through a BatchNorm of the support pass."""
    inputs = [t for t in (x, weight, bias) if t is not None]
    out = norm(x, weight, bias)
    grads = torch.autograd.grad((out * probe).sum(), inputs, create_graph=True)
    second = torch.autograd.grad(
        sum((g.tanh() ** 2).sum() for g in grads), inputs, allow_unused=True
    )
    return [
        out,
        *grads,
        *(torch.zeros_like(t) if s is None else s for s, t in zip(second, inputs, strict=True)),
    ]


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((6, 3), "nchw"),
        ((4, 3, 5), "nchw"),
        ((3, 4, 5, 5), "nchw"),
        ((3, 4, 5, 5), "channels-last"),
    ],
)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_equals_torch_with_second_derivatives(shape, layout, affine):
    g = make_generator(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if layout == "channels-last":
        x = channels_last(x)
    x.requires_grad_()
    channels = shape[1]
    weight = (1 + torch.rand(channels, generator=g, dtype=torch.float64)).requires_grad_(affine)
    bias = torch.randn(channels, generator=g, dtype=torch.float64).requires_grad_(affine)
    weight, bias = (weight, bias) if affine else (None, None)
    probe = torch.randn(shape, generator=g, dtype=torch.float64)

    def torch_norm(x, w, b):
        return F.batch_norm(x, None, None, w, b, True, 0.0, 1e-5)

    def ours(x, w, b):
        return batch_norm(x, w, b, 1e-5)

    got = _derivatives(ours, x, weight, bias, probe)
    want = _derivatives(torch_norm, x, weight, bias, probe)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # A plain backward pass (no graph) also matches.
    plain = torch.autograd.grad((ours(x, weight, bias) * probe).sum(), x)[0]
    torch.testing.assert_close(plain, want[1], rtol=1e-10, atol=1e-10)


class _MixedLayouts(TorchDispatchMode):
    """Records the operations that see 4-dimensional tensors in both layouts (NCHW and
    channels-last), on which torch's element-wise CPU kernels are many times slower."""

    def __init__(self):
        super().__init__()
        self.mixed: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        layouts = set()
        for t in tree_leaves((args, kwargs, out)):
            if isinstance(t, torch.Tensor) and t.dim() == 4:
                nchw, nhwc = t.is_contiguous(), t.is_contiguous(memory_format=torch.channels_last)
                if nchw != nhwc:
                    layouts.add(nchw)
        if len(layouts) > 1:
            self.mixed.append(str(func))
        return out


def _mixed_layout_operations(norm) -> list[str]:
    g = make_generator(1)
    x = channels_last(torch.randn(4, 8, 6, 6, generator=g)).requires_grad_()
    weight = torch.rand(8, generator=g).requires_grad_()
    # The gradient from the layer above is channels-last, as a convolution's would be.
    above = channels_last(torch.randn(4, 8, 6, 6, generator=g))
    with _MixedLayouts() as mode:
        out = norm(x, weight, None)
        (grad_x,) = torch.autograd.grad((out.relu() * above).sum(), x, create_graph=True)
        torch.autograd.grad(grad_x.square().sum(), [x, weight])
    return mode.mixed


def test_second_derivatives_keep_channels_last():
    """No operation of the forward, backward and double-backward passes mixes the layouts of a
    channels-last input (torch's own BatchNorm does, in its double backward)."""
    assert _mixed_layout_operations(lambda x, w, b: batch_norm(x, w, b, 1e-5)) == []
    torch_norm = _mixed_layout_operations(
        lambda x, w, b: F.batch_norm(x, None, None, w, b, True, 0.0, 1e-5)
    )
    assert torch_norm  # what the module works around; if torch fixes it, this is moot


def test_one_value_per_channel_is_refused():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm(torch.randn(1, 3), None, None, 1e-5)
