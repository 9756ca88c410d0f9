"""CPU kernels of conv4's layers on NCHW and on channels-last tensors: why the loop backend runs
images channels-last on the CPU (docs/performance.md).

    python -m benchmarks.kernels [--calls 100] [--threads 1]

For each kernel and shape, the median thread CPU time of one call (forward and backward, or the
forward pass alone), in microseconds, on NCHW tensors and on the same values channels-last.
A measurement, never a test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from metagym.learners.maml_batched import channels_last


def _median_us(call: Callable[[], object], calls: int) -> float:
    call()
    samples = []
    for _ in range(calls):
        start = time.thread_time()
        call()
        samples.append(time.thread_time() - start)
    return statistics.median(samples) * 1e6


def _backward(output: Callable[[], torch.Tensor], inputs: list[torch.Tensor]):
    """A call running ``output()`` and its backward pass into ``inputs``, with an output gradient
    in the output's own layout (as the layer above would pass it)."""
    grad_output = torch.ones_like(output())
    return lambda: torch.autograd.grad(output(), inputs, grad_output)


def _conv(in_channels: int, backward: bool) -> Callable[[torch.Tensor], Callable[[], object]]:
    """A 3x3 convolution to 64 channels (padding 1). With ``backward``, as in MAML's inner step:
    the weight is a fast weight (it needs its gradient), the input needs one past the first
    layer (``in_channels > 1``)."""
    weight = torch.randn(64, in_channels, 3, 3, generator=torch.Generator().manual_seed(1))

    def build(x: torch.Tensor) -> Callable[[], object]:
        w = channels_last(weight) if x.stride(1) == 1 else weight
        if not backward:
            return lambda: F.conv2d(x, w, padding=1)
        w.requires_grad_()
        inputs = [w]
        if in_channels > 1:
            inputs.append(x.requires_grad_())
        return _backward(lambda: F.conv2d(x, w, padding=1), inputs)

    return build


def _with_backward(op: Callable[[torch.Tensor], torch.Tensor]):
    def build(x: torch.Tensor) -> Callable[[], object]:
        x.requires_grad_()
        return _backward(lambda: op(x), [x])

    return build


#: (label, input shape, builder(x) -> call).
CASES = [
    ("max_pool2d 2x2, fwd+bwd", (5, 64, 28, 28), _with_backward(lambda x: F.max_pool2d(x, 2))),
    ("max_pool2d 2x2, fwd+bwd", (25, 64, 28, 28), _with_backward(lambda x: F.max_pool2d(x, 2))),
    (
        "batch_norm (batch statistics), fwd+bwd",
        (5, 64, 28, 28),
        _with_backward(lambda x: F.batch_norm(x, None, None, training=True)),
    ),
    (
        "batch_norm (batch statistics), fwd+bwd",
        (25, 64, 28, 28),
        _with_backward(lambda x: F.batch_norm(x, None, None, training=True)),
    ),
    ("conv 3x3, 1 -> 64 channels, fwd", (5, 1, 28, 28), _conv(1, backward=False)),
    ("conv 3x3, 1 -> 64 channels, fwd+bwd", (5, 1, 28, 28), _conv(1, backward=True)),
    ("conv 3x3, 64 -> 64 channels, fwd+bwd", (5, 64, 14, 14), _conv(64, backward=True)),
]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    rows = []
    print("| kernel | shape | NCHW us | channels-last us | NCHW / channels-last |")
    print("|---|---|---:|---:|---:|")
    for label, shape, build in CASES:
        x = torch.randn(shape, generator=generator)
        nchw = _median_us(build(x.clone()), args.calls)
        nhwc = _median_us(build(channels_last(x.clone())), args.calls)
        rows.append({"kernel": label, "shape": shape, "nchw_us": nchw, "channels_last_us": nhwc})
        size = " x ".join(map(str, shape))
        print(f"| {label} | {size} | {nchw:,.0f} | {nhwc:,.0f} | {nchw / nhwc:.2f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
