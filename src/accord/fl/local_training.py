"""Local training on a node: minibatch SGD on the flat parameter vector.

One SGD step is one vector operation on :class:`FlatModel`'s buffers, so the strategy's
local objective is one more vector term: FedProx adds mu (w - x), SCAFFOLD adds
(c - c_i), weight decay adds lambda w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from accord.fl.strategies.base import LocalObjective
from accord.models.flat import FlatModel


@dataclass(frozen=True, slots=True)
class LocalPlan:
    epochs: int | None
    steps: int | None
    batch_size: int
    momentum: float
    weight_decay: float
    objective: LocalObjective
    proximal_mu: float


@dataclass(frozen=True, slots=True)
class LocalResult:
    mean_loss: float
    steps: int
    mean_gradient: torch.Tensor | None = None
    """With a correction (SCAFFOLD): the mean of the uncorrected gradients over the steps."""


def _batches(n: int, batch_size: int, order: torch.Tensor | None) -> list[slice | torch.Tensor]:
    if order is None:
        return [slice(start, start + batch_size) for start in range(0, n, batch_size)]
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def train_local(
    model: FlatModel,
    x: torch.Tensor,
    y: torch.Tensor,
    plan: LocalPlan,
    lr: float,
    *,
    global_params: torch.Tensor,
    shuffle_rng: np.random.Generator | None,
    correction: torch.Tensor | None = None,
) -> LocalResult:
    """Train ``model`` (already loaded with ``global_params``) on (x, y) in place.

    ``shuffle_rng`` orders each epoch (``None``: the data's own order). ``correction`` is
    SCAFFOLD's (c - c_i). Returns the mean minibatch loss and the number of steps.
    """
    n = int(x.shape[0])
    flat, grad, module = model.flat, model.grad, model.module
    velocity = torch.zeros_like(flat) if plan.momentum else None
    per_epoch = math.ceil(n / plan.batch_size)
    total_steps = plan.steps if plan.steps is not None else (plan.epochs or 1) * per_epoch
    loss_total = torch.zeros((), dtype=torch.float64)
    gradient_sum = torch.zeros_like(flat) if correction is not None else None
    steps = 0
    if not module.training:
        module.train()
    while steps < total_steps:
        order = None if shuffle_rng is None else torch.from_numpy(shuffle_rng.permutation(n))
        for index in _batches(n, plan.batch_size, order):
            grad.zero_()
            loss = F.cross_entropy(module(x[index]), y[index])
            torch.autograd.backward(loss)
            with torch.no_grad():
                if plan.weight_decay:
                    grad.add_(flat, alpha=plan.weight_decay)
                if plan.objective is LocalObjective.PROXIMAL and plan.proximal_mu:
                    grad.add_(flat - global_params, alpha=plan.proximal_mu)
                if correction is not None and gradient_sum is not None:
                    gradient_sum.add_(grad)
                    grad.add_(correction)
                step = grad
                if velocity is not None:
                    velocity.mul_(plan.momentum).add_(grad)
                    step = velocity
                flat.add_(step, alpha=-lr)
            loss_total += loss.detach()
            steps += 1
            if steps >= total_steps:
                break
    mean_gradient = None if gradient_sum is None else gradient_sum / max(steps, 1)
    return LocalResult(float(loss_total) / max(steps, 1), steps, mean_gradient)


@dataclass(frozen=True, slots=True)
class EvalResult:
    loss_sum: float
    correct: int
    num_examples: int


def evaluate_model(
    module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 4096
) -> EvalResult:
    """Summed cross-entropy and correct predictions over (x, y)."""
    losses, correct = per_example_metrics(module, x, y, batch)
    return EvalResult(float(losses.sum()), int(correct.sum()), int(x.shape[0]))


def per_example_metrics(
    module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 4096
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Each example's cross-entropy and whether it was predicted right (float64 sums)."""
    n = int(x.shape[0])
    losses = np.zeros(n, dtype=np.float64)
    correct = np.zeros(n, dtype=np.bool_)
    module.eval()
    with torch.no_grad():
        for start in range(0, n, batch):
            logits = module(x[start : start + batch])
            target = y[start : start + batch]
            end = start + len(target)
            losses[start:end] = F.cross_entropy(logits, target, reduction="none").double().numpy()
            correct[start:end] = (logits.argmax(dim=1) == target).numpy()
    return losses, correct
