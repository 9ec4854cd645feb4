"""The Tramer-Boneh end-to-end CNN for Fashion-MNIST, as an Accord task (model only).

Tramer & Boneh 2021, "Differentially Private Learning Needs Better Features (or Much More
Data)", table 9: Conv(1,16,8,stride 2,pad 3)-tanh-MaxPool(2,1)-Conv(16,32,4,stride 2)-tanh-
MaxPool(2,1)-Flatten-Linear(512,32)-tanh-Linear(32,10), 26,010 parameters. The same network
as ``bench/dpsgd_vs_opacus.py``.

Only ``build_model`` is defined: a DP-SGD job refuses a task's own ``train()`` (the node's
DP-SGD loop does the training), and the node's built-in evaluation (accuracy, mean
cross-entropy) serves. No batch norm and no buffers: DP-SGD needs per-example gradients.
The input is rescaled from [0, 1] to [-1, 1] with fixed constants (0.5, 0.5), chosen
without looking at the data, so the scaling costs no privacy; held as plain floats, not
buffers, which DP-SGD refuses.
"""

from __future__ import annotations

import torch
from torch import nn

# Fixed, data-independent input scaling: [0, 1] -> [-1, 1].
INPUT_CENTRE = 0.5
INPUT_SCALE = 0.5


class Rescale(nn.Module):
    """``(x - centre) / scale`` with constants fixed in the code (no parameters, no buffers)."""

    def __init__(self, centre: float, scale: float) -> None:
        super().__init__()
        self.centre = centre
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.centre) / self.scale


def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The Tramer-Boneh CNN; it expects (1, 28, 28) grey images."""
    if tuple(input_shape) != (1, 28, 28):
        raise ValueError(f"this task is for 1x28x28 images, got input shape {input_shape}")
    return nn.Sequential(
        Rescale(INPUT_CENTRE, INPUT_SCALE),
        nn.Conv2d(1, 16, 8, stride=2, padding=3),  # 28 -> 14
        nn.Tanh(),
        nn.MaxPool2d(2, 1),  # 14 -> 13
        nn.Conv2d(16, 32, 4, stride=2),  # 13 -> 5
        nn.Tanh(),
        nn.MaxPool2d(2, 1),  # 5 -> 4
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 32),
        nn.Tanh(),
        nn.Linear(32, num_classes),
    )
