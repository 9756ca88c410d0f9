"""The memory layout of image batches: channels-last on the CPU.

torch's CPU kernels for 2x2 max-pooling, BatchNorm and convolutions run 7-9x, 2-3x and 1.05-1.2x
faster on channels-last (NHWC) tensors than on NCHW ones at conv4's shapes (``python -m
benchmarks.kernels``, docs/performance.md), with the same values. A convolution returns the
layout of its input, so an image batch laid out channels-last keeps the whole net there.
"""

from __future__ import annotations

import torch
from torch import Tensor


def channels_last(x: Tensor) -> Tensor:
    """``x`` ``(N, C, H, W)`` with channels-last strides ``(C*H*W, 1, W*C, C)``, also for ``C = 1``,
    where ``x.contiguous(memory_format=torch.channels_last)`` keeps the NCHW strides (both
    layouts are contiguous) and torch's convolution then returns an NCHW output. A view when
    ``C = 1`` or ``x`` is already channels-last, else a copy; differentiable."""
    n, c, h, w = x.shape
    if c == 1:
        return x.reshape(n, h, w, 1).permute(0, 3, 1, 2)
    return x.contiguous(memory_format=torch.channels_last)


def cpu_layout(x: Tensor) -> Tensor:
    """``x`` channels-last if it is an image batch (4 dimensions) on the CPU, else ``x``."""
    if x.dim() == 4 and x.device.type == "cpu":
        return channels_last(x)
    return x
