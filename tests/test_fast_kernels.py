"""The loop backend's CPU kernels compute what torch's layers compute: max_pool2x2 against
F.max_pool2d (values, gradients and second derivatives exactly, ties included), the native
single-channel conv2d against F.conv2d (float32 rounding)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from metagym.learners.maml_batched import plain_chain
from metagym.nets.native_conv import conv2d
from metagym.nets.pooling import max_pool2x2


def _derivatives(pool, x, grad_out, grad_grad):
    """Output, input gradient, and the derivative of <input gradient, grad_grad> with respect
    to grad_out (what MAML's second order takes through a pooling layer)."""
    out = pool(x)
    (grad_x,) = torch.autograd.grad(out, x, grad_out, create_graph=True)
    (second,) = torch.autograd.grad(grad_x, grad_out, grad_grad)
    return out, grad_x, second


@pytest.mark.parametrize("shape", [(3, 4, 28, 28), (2, 3, 7, 7), (1, 2, 5, 6), (2, 1, 3, 2)])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_max_pool2x2_equals_max_pool2d(shape, ties):
    generator = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    if ties:  # ReLU zeros and repeated values: the first maximum in scan order takes the gradient
        x = torch.relu(x).round()
    x.requires_grad_()
    out_shape = (*shape[:2], shape[2] // 2, shape[3] // 2)
    grad_out = torch.randn(out_shape, generator=generator, dtype=torch.float64).requires_grad_()
    grad_grad = torch.randn(shape, generator=generator, dtype=torch.float64)
    want = _derivatives(lambda t: F.max_pool2d(t, 2), x, grad_out, grad_grad)
    got = _derivatives(max_pool2x2, x, grad_out, grad_grad)
    for g, w, label in zip(got, want, ("values", "gradients", "second derivatives"), strict=True):
        assert torch.equal(g, w), label
    with torch.no_grad():
        assert torch.equal(max_pool2x2(x), F.max_pool2d(x, 2))


def test_native_conv2d_equals_conv2d_with_second_derivatives():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 28, 28, generator=generator)
    weight = (0.3 * torch.randn(8, 1, 3, 3, generator=generator)).requires_grad_()
    bias = torch.randn(8, generator=generator).requires_grad_()

    def meta_gradient(conv):
        out = conv(x, weight, bias, 1, 1)
        grads = torch.autograd.grad(out.square().mean(), (weight, bias), create_graph=True)
        # One SGD step, then a loss at the stepped weights: second order through the conv.
        stepped = conv(x, weight - 0.1 * grads[0], bias - 0.1 * grads[1], 1, 1)
        return (out, *grads, *torch.autograd.grad(stepped.tanh().sum(), (weight, bias)))

    for got, want in zip(meta_gradient(conv2d), meta_gradient(F.conv2d), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch._C._get_mkldnn_enabled() == torch.backends.mkldnn.is_available()


def test_plain_chains_mark_the_pools_max_pool2x2_computes():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.MaxPool2d(3), nn.MaxPool2d(2, 1))
    kinds = [kind for kind, _, _ in plain_chain(net)]
    assert kinds == ["conv2d", "pool", "call", "call"]
