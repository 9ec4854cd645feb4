"""Evaluation metrics released with DP noise (``[evaluation] dp_epsilon``).

A node's metrics are three statistics of its test split, each released at a third of the
metrics budget with OpenDP's samplers (:mod:`accord.privacy.statistics`): the row count
(discrete Laplace, sensitivity 1), the number of correct predictions (a sum of values in
[0, 1]) and the summed cross-entropy, each example's loss clamped to ``loss_bound`` (a sum
of values in [0, loss_bound]). The node releases ``num_examples`` = the noisy count (at
least 1), and ``accuracy`` and ``loss`` as the noisy sums over it, so the coordinator's
sample-weighted combination is the sum of noisy sums over the sum of noisy counts:
post-processing, free of further charge. A noisy accuracy may fall outside [0, 1].

The noise is added on the node: the epsilon holds against the coordinator and the
recipients. The event is known before the data is read, so the gate charges it first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from accord.privacy.statistics import StatisticQuery, release

if TYPE_CHECKING:
    from dp_accounting import DpEvent


def metrics_event(epsilon: float) -> DpEvent:
    """The event of one metrics release at ``epsilon`` (add or remove one record)."""
    from dp_accounting.dp_event import ComposedDpEvent, DiscreteLaplaceDpEvent, LaplaceDpEvent

    third = epsilon / 3
    return ComposedDpEvent([
        DiscreteLaplaceDpEvent(noise_parameter=third, sensitivity=1),
        LaplaceDpEvent(1.0 / third),
        LaplaceDpEvent(1.0 / third),
    ])  # fmt: skip


def noisy_metrics(
    correct: NDArray[np.bool_], losses: NDArray[np.floating], epsilon: float, loss_bound: float
) -> tuple[dict[str, float], DpEvent]:
    """The released scalars and the composed event of the three releases made."""
    from dp_accounting import ComposedDpEvent

    third = epsilon / 3
    count = release(StatisticQuery(kind="count", epsilon=third), np.zeros(len(correct)))
    right = release(
        StatisticQuery(kind="sum", lower=0.0, upper=1.0, epsilon=third), correct.astype(float)
    )
    loss = release(StatisticQuery(kind="sum", lower=0.0, upper=loss_bound, epsilon=third), losses)
    rows = max(float(count.values()[0]), 1.0)
    scalars = {
        "num_examples": rows,
        "accuracy": right.values()[0] / rows,
        "loss": loss.values()[0] / rows,
    }
    events = [r.dp_event for r in (count, right, loss)]
    return scalars, ComposedDpEvent(events)
