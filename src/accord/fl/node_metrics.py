"""What a node computes when it evaluates a model on its own test split: exact metrics, or
metrics with DP noise (``evaluation.dp_epsilon``; the mechanism is
:mod:`accord.privacy.dp_metrics`). The node charges and releases them through its gate."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from accord.errors import TaskCodeError
from accord.fl.local_training import evaluate_model, per_example_metrics
from accord.privacy.dp_metrics import metrics_event, noisy_metrics

if TYPE_CHECKING:
    from dp_accounting import DpEvent

__all__ = ["CustomEvaluate", "exact_metrics", "metrics_event", "noisy_metrics_of"]

CustomEvaluate = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], dict[str, float]]


def noisy_metrics_of(
    module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, loss_bound: float
) -> tuple[dict[str, float], DpEvent]:
    """Noisy count, accuracy and loss; each example's loss is clamped to ``loss_bound``
    inside the release (the sum's declared bounds)."""
    losses, correct = per_example_metrics(module, x, y)
    return noisy_metrics(correct, losses, epsilon, loss_bound)


def exact_metrics(
    module: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    custom_evaluate: CustomEvaluate | None,
) -> dict[str, float]:
    """Row count, mean loss and accuracy: the task's own ``evaluate()`` where it has one."""
    n = len(y)
    if custom_evaluate is not None and n:
        metrics = custom_evaluate(module, x, y)
        missing = {"loss", "accuracy"} - set(metrics)
        if missing:
            raise TaskCodeError(
                f"task evaluate() must return 'loss' and 'accuracy'; it returned no "
                f"{sorted(missing)}"
            )
        return {
            "num_examples": float(n),
            "loss": float(metrics["loss"]),
            "accuracy": float(metrics["accuracy"]),
        }
    result = evaluate_model(module, x, y)
    return {
        "num_examples": float(n),
        "loss": result.loss_sum / n if n else 0.0,
        "accuracy": result.correct / n if n else 0.0,
    }
