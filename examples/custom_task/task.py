"""An example Accord task: a small MLP for tabular or image data.

Accord imports this file on every node (after checking the directory's hash against the
job's ``model.task_hash``). It must define ``build_model``; ``evaluate`` (and ``train``)
are optional. No batch norm: a batch statistic mixes examples, which per-sample gradients
(DP-SGD) cannot allow; GroupNorm normalises within one example.
"""

from __future__ import annotations

import math

import torch
from torch import nn

HIDDEN = 64


def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Flatten -> Linear -> GroupNorm -> ReLU -> Linear."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), HIDDEN),
        nn.GroupNorm(num_groups=8, num_channels=HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, num_classes),
    )


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy and mean cross-entropy on ``(x, y)``."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
    return {"accuracy": float(accuracy), "loss": float(loss)}
