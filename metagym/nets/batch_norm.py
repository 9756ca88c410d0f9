"""BatchNorm with batch statistics whose second derivatives keep the channels-last layout.

torch's BatchNorm backward (``native_batch_norm_backward``) is fast, but its own derivative
(``batchnorm_double_backward``, what second-order MAML takes through every BatchNorm of the
support pass) builds NCHW tensors from channels-last ones, and element-wise kernels on mixed
layouts (ReLU's backward, BatchNorm's backward) run many times slower. :func:`batch_norm` runs
torch's kernels forward and, when nothing differentiates the backward pass, backward too; when
the backward pass must itself be differentiable (``create_graph=True``), it writes that pass from
plain tensor operations, which keep the layout of their inputs. Conv4 second-order MAML steps on
the loop backend, side by side on one thread: 1,500 -> 1,344 ms on NCHW images, 1,539 -> 1,311 ms
on channels-last ones (docs/performance.md). Float64 meta-gradients equal higher's to 1e-10
(``tests/test_maml_backends.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, weight, mean, invstd = ctx.saved_tensors
        wants = ctx.needs_input_grad
        if not torch.is_grad_enabled():  # a plain backward pass: torch's kernel
            mask = [wants[0], ctx.has_weight and wants[1], ctx.has_bias and wants[2]]
            grads = torch.ops.aten.native_batch_norm_backward(
                grad_y, x, weight, None, None, mean, invstd, True, ctx.eps, mask
            )
            return grads[0], grads[1], grads[2], None
        # A differentiable backward pass (second order): plain operations, the statistics
        # recomputed from x so that their dependence on x is differentiated too. Sums, not
        # means: mean's backward materializes an NCHW gradient, sum's is a broadcast view.
        dims = (0, *range(2, x.dim()))
        per_channel = (1, -1) + (1,) * (x.dim() - 2)
        count = x.numel() // x.shape[1]
        centered = x - x.sum(dims, keepdim=True) / count
        inv_std = torch.rsqrt(centered.square().sum(dims, keepdim=True) / count + ctx.eps)
        normalized = centered * inv_std
        grad_bias = grad_y.sum(dims)
        grad_weight = (grad_y * normalized).sum(dims)
        scale = inv_std if weight is None else weight.reshape(per_channel) * inv_std
        mean_grad = grad_bias.reshape(per_channel) + normalized * grad_weight.reshape(per_channel)
        grad_x = scale * (grad_y - mean_grad / count)
        return (
            grad_x,
            grad_weight if ctx.has_weight else None,
            grad_bias if ctx.has_bias else None,
            None,
        )


def batch_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """``F.batch_norm`` with batch statistics (no running statistics): ``x`` ``(N, C, *spatial)``
    normalized per channel over ``N`` and the spatial dimensions, then scaled and shifted by
    ``weight`` and ``bias`` ``(C,)`` (None: no affine step). Same values and derivatives; not for
    use under ``vmap``."""
    if x.numel() // x.shape[1] <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}"
        )
    return _BatchNorm.apply(x, weight, bias, eps)
