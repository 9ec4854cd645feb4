"""Noisy evaluation metrics: the event charged is the event of the releases made."""

from __future__ import annotations

import numpy as np
import pytest

from accord.privacy.dp_metrics import metrics_event, noisy_metrics


def test_the_charged_event_is_the_composition_of_the_three_releases() -> None:
    correct = np.array([True, False, True, True])
    losses = np.array([0.1, 2.0, 0.3, 50.0])
    _, event = noisy_metrics(correct, losses, 0.3, 10.0)
    assert event == metrics_event(0.3)


def test_with_a_vast_epsilon_the_metrics_are_the_clamped_exact_ones() -> None:
    correct = np.array([True, False, True, True] * 250)
    losses = np.array([0.1, 2.0, 0.3, 50.0] * 250)  # 50 is clamped to the bound 10
    scalars, _ = noisy_metrics(correct, losses, 1e7, 10.0)
    assert scalars["num_examples"] == pytest.approx(1000, abs=1)
    assert scalars["accuracy"] == pytest.approx(0.75, abs=1e-4)
    assert scalars["loss"] == pytest.approx((0.1 + 2.0 + 0.3 + 10.0) / 4, abs=1e-4)


def test_a_noisy_count_below_one_is_released_as_one() -> None:
    # epsilon 1e-3 on 0 rows: the count's noise has scale 3000, so about half the draws
    # are negative; the released count is never below 1 (no division by zero or sign flip).
    counts = {noisy_metrics(np.zeros(0, bool), np.zeros(0), 1e-3, 1.0)[0]["num_examples"]
              for _ in range(20)}  # fmt: skip
    assert min(counts) >= 1.0
