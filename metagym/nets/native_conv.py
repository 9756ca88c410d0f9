"""``F.conv2d`` for single-channel inputs on the CPU through torch's native kernels, not oneDNN.

torch sends float32 convolutions on the CPU to oneDNN (mkldnn), which is slow for a first layer
with one input channel: measured with torch 2.13 on one thread, a ``(5, 1, 28, 28)`` batch through
conv4's first 3x3 convolution to 64 channels takes 2.4 ms forward and backward on oneDNN and
0.43 ms on torch's native kernels (the second layer, 64 to 64 channels, is faster on oneDNN:
2.7 ms against 4.0 ms). The backend is chosen again when the backward pass runs, so this
function switches oneDNN off in both passes; the backward pass is torch's own
``convolution_backward``, whose derivative torch defines, so second derivatives flow as through
``F.conv2d``. Same values up to float rounding (a different summation order).

Used by the per-task ``"loop"`` backend of MAML (:mod:`metagym.learners.maml_batched`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.nn import functional as F


@contextmanager
def _without_onednn() -> Iterator[None]:
    """oneDNN and NNPACK off (torch then takes its im2col kernel; NNPACK, its next choice for
    batches of 16 or more, is slower still: 3.5 ms for 25 images)."""
    # The private switches, because torch.backends.mkldnn.flags() also resets TF32 settings and
    # warns on every call.
    mkldnn, nnpack = torch._C._get_mkldnn_enabled(), torch._C._get_nnpack_enabled()
    torch._C._set_mkldnn_enabled(False)
    torch._C._set_nnpack_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(mkldnn)
        torch._C._set_nnpack_enabled(nnpack)


class _NativeConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        with _without_onednn():
            out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight)
        ctx.settings = (stride, padding, dilation, groups, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.settings
        wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        with _without_onednn():
            grad_x, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad,
                x,
                weight,
                [weight.shape[0]] if has_bias else None,
                stride,
                padding,
                dilation,
                False,
                [0, 0],
                groups,
                wanted,
            )
        return grad_x, grad_weight, grad_bias, None, None, None, None


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> Tensor:
    """``F.conv2d``, on torch's native kernels where oneDNN is slow (single-channel float32 inputs
    on the CPU) and as usual elsewhere. ``padding`` must be numbers (not ``"same"``)."""
    if (
        x.device.type != "cpu"
        or x.dtype != torch.float32
        or x.shape[-3] != 1
        or isinstance(padding, str)
    ):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return _NativeConv2d.apply(
        x, weight, bias, _pair(stride), _pair(padding), _pair(dilation), groups
    )
