"""The 4-block convolutional net of the few-shot literature (Vinyals et al. 2016; Snell et al.
2017; Finn et al. 2017): 4 x [3x3 conv, ``hidden`` channels, BatchNorm, ReLU, 2x2 max-pool].

On 28x28 Omniglot images the blocks give 14, 7, 3 and 1 pixels, so the embedding has ``hidden``
features. MAML needs ``track_running_stats=False`` (batch statistics in training and evaluation,
as in the MAML paper): higher never writes running statistics back to the model.
"""

from __future__ import annotations

from torch import nn


def conv_block(
    in_channels: int, out_channels: int, *, track_running_stats: bool = True
) -> nn.Sequential:
    """3x3 conv (padding 1), BatchNorm, ReLU, 2x2 max-pool: ``(n, in, H, W) -> (n, out, H/2, W/2)``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=track_running_stats),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def conv4(
    in_channels: int = 1,
    hidden: int = 64,
    out_features: int | None = None,
    *,
    track_running_stats: bool = True,
    image_size: tuple[int, int] = (28, 28),
) -> nn.Sequential:
    """Embedding ``(n, in_channels, H, W) -> (n, embedding_size(hidden, image_size))`` (``hidden``
    features for 28x28 images), or logits ``(n, out_features)`` when ``out_features`` is given (a
    linear layer on the embedding)."""
    if not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be a positive int, got {hidden!r}")
    layers: list[nn.Module] = []
    width = in_channels
    for _ in range(4):
        layers.append(conv_block(width, hidden, track_running_stats=track_running_stats))
        width = hidden
    layers.append(nn.Flatten())
    if out_features is not None:
        layers.append(nn.Linear(embedding_size(hidden, image_size), out_features))
    return nn.Sequential(*layers)


def embedding_size(hidden: int, image_size: tuple[int, int] = (28, 28)) -> int:
    """Features of conv4's embedding of ``image_size`` images (four 2x2 poolings, rounding down)."""
    height, width = image_size
    for _ in range(4):
        height, width = height // 2, width // 2
    if height < 1 or width < 1:
        raise ValueError(f"conv4 needs images of at least 16x16 pixels, got {image_size}")
    return hidden * height * width
