"""Built-in models: logistic regression, an MLP and a small CNN.

None of them uses batch norm: a batch statistic mixes examples, which per-sample
gradients (DP-SGD) cannot allow. The CNN normalises with GroupNorm instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from accord.errors import JobFileError

BUILTIN_MODELS = ("logreg", "mlp", "cnn")


def _flat_size(input_shape: Sequence[int]) -> int:
    return int(math.prod(input_shape))


def build_logreg(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Multinomial logistic regression: one linear layer on the flattened input."""
    layers: list[nn.Module] = []
    if len(input_shape) > 1:
        layers.append(nn.Flatten())
    layers.append(nn.Linear(_flat_size(input_shape), num_classes))
    return nn.Sequential(*layers)


def build_mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int]) -> nn.Module:
    """Linear-ReLU stack. On flat input the parameter names are ``0.weight, 0.bias, 2...``."""
    layers: list[nn.Module] = []
    if len(input_shape) > 1:
        layers.append(nn.Flatten())
    width = _flat_size(input_shape)
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def build_cnn(
    input_shape: Sequence[int], num_classes: int, channels: Sequence[int], groups: int
) -> nn.Module:
    """Conv(3x3)-GroupNorm-ReLU-MaxPool blocks, then one linear layer."""
    if len(input_shape) != 3:
        raise JobFileError(
            f"model.kind = 'cnn' needs image input (channels, height, width); this data has "
            f"examples of shape {tuple(input_shape)}; use 'mlp' or 'logreg'"
        )
    in_channels, height, width = input_shape
    layers: list[nn.Module] = []
    for out_channels in channels:
        if out_channels % groups:
            raise JobFileError(
                f"model.channels: {out_channels} is not divisible by model.groups = {groups}"
            )
        layers += [
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.GroupNorm(groups, out_channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        in_channels = out_channels
        height, width = height // 2, width // 2
    if height < 1 or width < 1:
        raise JobFileError(
            f"model.channels: {len(channels)} pooling blocks shrink {tuple(input_shape)} to "
            "nothing; use fewer blocks"
        )
    layers += [nn.Flatten(), nn.Linear(in_channels * height * width, num_classes)]
    return nn.Sequential(*layers)


def build_builtin_model(
    kind: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    hidden: Sequence[int] = (64,),
    channels: Sequence[int] = (16, 32),
    groups: int = 4,
) -> nn.Module:
    """Build a built-in model by its job-file name."""
    if kind == "logreg":
        return build_logreg(input_shape, num_classes)
    if kind == "mlp":
        return build_mlp(input_shape, num_classes, hidden)
    if kind == "cnn":
        return build_cnn(input_shape, num_classes, channels, groups)
    raise JobFileError(f"model.kind: unknown model {kind!r}; choose one of {BUILTIN_MODELS}")
