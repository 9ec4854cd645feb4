"""What one party's update reveals about its labels, and what secure aggregation leaves.

The attacks are in ``tests/protect/inversion.py`` (iDLG, LLG, LLG+ with auxiliary data).
The victim is Accord's built-in MLP (64 -> 128 -> 10, ReLU) at initialisation, on the
bundled digits, after one SGD step: the untrained model of a first round, where these
attacks are known to work. Everything is seeded, and torch runs on one thread, so the
numbers below are exact and pinned.

The attacker knows the model, the learning rate and the batch size (all in the job), and,
for LLG+, holds 300 labelled digits of its own, disjoint from every party's rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from accord.data.bundled import load_bundled
from accord.models.builtin import build_builtin_model
from tests.protect.inversion import (
    LabelCounts,
    Update,
    apportion,
    count_overlap,
    idlg_label,
    label_impacts,
    last_layer_weight,
    llg_label_counts,
    llg_plus_label_counts,
    one_step_update,
    secure_sum,
)

CLASSES = 10
LR = 0.05
BATCH = 8
PARTIES = 5
ROUNDS = 10
AUX_ROWS = 300


@dataclass(frozen=True)
class Setting:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    impacts: torch.Tensor  # the attacker's estimate, from its own auxiliary rows

    def rows_of(self, labels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """One random row of each label in ``labels``."""
        pools = [torch.nonzero(self.y == label).flatten() for label in labels]
        return torch.stack([pool[int(rng.integers(len(pool)))] for pool in pools])

    def update(self, rows: torch.Tensor) -> Update:
        return one_step_update(self.model, self.x[rows], self.y[rows], LR)

    def truth(self, rows: torch.Tensor) -> LabelCounts:
        return Counter(self.y[rows].tolist())


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # Exact, repeatable float sums, and no fight over the machine's cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setting(_one_thread: None) -> Setting:
    x_all, y_all = (torch.from_numpy(a) for a in load_bundled("digits"))
    order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))
    aux, victims = order[:AUX_ROWS], order[AUX_ROWS:]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_builtin_model("mlp", (64,), CLASSES, hidden=(128,))
    impacts = label_impacts(model, x_all[aux], y_all[aux], LR, CLASSES)
    return Setting(model, x_all[victims], y_all[victims], impacts)


def test_idlg_recovers_the_label_of_every_batch_of_one(setting: Setting) -> None:
    rng = np.random.default_rng(1)
    rows = torch.from_numpy(rng.choice(len(setting.y), size=20, replace=False))
    for row in rows:
        update = setting.update(row[None])
        assert idlg_label(last_layer_weight(setting.model, update)) == int(setting.y[row])


def test_llg_recovers_label_counts_at_batch_8(setting: Setting) -> None:
    rng = np.random.default_rng(2)
    llg = llg_plus = exact_batches = 0
    for _ in range(10):
        rows = torch.from_numpy(rng.choice(len(setting.y), size=BATCH, replace=False))
        weight = last_layer_weight(setting.model, setting.update(rows))
        truth = setting.truth(rows)
        found = count_overlap(llg_label_counts(weight, BATCH), truth)
        llg += found
        exact_batches += found == BATCH
        llg_plus += count_overlap(llg_plus_label_counts(weight, BATCH, setting.impacts), truth)
    # Pinned (of 80 labels): LLG without auxiliary data 75, and 5 of the 10 batches
    # exactly; with the attacker's auxiliary rows, every label.
    assert (llg, exact_batches) == (75, 5)
    assert llg_plus == 80


def test_secure_aggregation_leaves_only_the_aggregate_histogram(setting: Setting) -> None:
    """t = 5 parties with skewed labels (Dirichlet 0.5), batch 8 each, 10 rounds.

    A party's own update gives its labels away. The sum of the five (what the coordinator
    sees under secure aggregation) gives the aggregate histogram away, and nothing more:
    guessing each party's labels from it does no better than giving every party the
    aggregate histogram, scaled to its batch.
    """
    rng = np.random.default_rng(3)
    plaintext = histogram = baseline = 0
    from_sum = {"llg as one party": 0, "llg+ on sum / t": 0, "llg+ histogram": 0}
    for _ in range(ROUNDS):
        parties = []
        for _ in range(PARTIES):
            labels = rng.choice(CLASSES, size=BATCH, p=rng.dirichlet([0.5] * CLASSES))
            parties.append(setting.rows_of(labels, rng))
        updates = [setting.update(rows) for rows in parties]
        truths = [setting.truth(rows) for rows in parties]
        aggregate_truth = sum(truths, Counter())

        for update, truth in zip(updates, truths, strict=True):
            weight = last_layer_weight(setting.model, update)
            plaintext += count_overlap(llg_plus_label_counts(weight, BATCH, setting.impacts), truth)

        total = secure_sum(updates)
        # The sum of fixed-point integers is exact, so it does not depend on the parties'
        # order: no attack on it can tell one party from another.
        reordered = secure_sum(updates[::-1])
        assert all(torch.equal(total[name], reordered[name]) for name in total)
        plain_sum = {n: torch.stack([u[n] for u in updates]).double().sum(0) for n in total}
        assert all(torch.allclose(total[n], plain_sum[n], atol=PARTIES / 2**20) for n in total)

        weight = last_layer_weight(setting.model, total)
        found = llg_plus_label_counts(weight, BATCH, setting.impacts, parties=PARTIES)
        histogram += count_overlap(found, aggregate_truth)
        guesses = {
            "llg as one party": llg_label_counts(weight, BATCH),
            "llg+ on sum / t": llg_plus_label_counts(weight / PARTIES, BATCH, setting.impacts),
            "llg+ histogram": apportion(found, BATCH),
        }
        best_allowed = apportion(aggregate_truth, BATCH)
        for truth in truths:
            baseline += count_overlap(best_allowed, truth)
            for name, guess in guesses.items():
                from_sum[name] += count_overlap(guess, truth)

    total_labels = ROUNDS * PARTIES * BATCH
    rates = {name: n / total_labels for name, n in from_sum.items()}
    plaintext_rate, baseline_rate = plaintext / total_labels, baseline / total_labels
    # Pinned, of 400 labels: from each party's own update 400; the aggregate histogram
    # from the sum 399; the baseline (every party gets the true aggregate histogram) 194.
    # From the sum, per party: LLG 174, LLG+ on sum / t 195, LLG+'s histogram 194.
    assert from_sum == {"llg as one party": 174, "llg+ on sum / t": 195, "llg+ histogram": 194}
    assert (plaintext, histogram, baseline) == (400, 399, 194)
    assert plaintext_rate >= baseline_rate + 0.4
    for name, rate in rates.items():
        assert rate <= baseline_rate + 0.02, (name, rates, baseline_rate)
