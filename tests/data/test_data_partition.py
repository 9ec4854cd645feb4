"""Partitioners: disjoint, covering, sorted, deterministic; skew where asked."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from accord.data import (
    PartitionConfig,
    partition,
    partition_dirichlet,
    partition_iid,
    partition_quantity_skew,
    partition_shards,
)
from accord.errors import DataError

Parts = list[npt.NDArray[np.int64]]
LABELS = np.repeat(np.arange(10), 150)  # 1500 rows, 10 classes
rng = np.random.default_rng

RUNNERS: dict[str, Callable[[np.random.Generator], Parts]] = {
    "iid": lambda g: partition_iid(1500, 100, g),
    "dirichlet": lambda g: partition_dirichlet(LABELS, 10, 0.5, g),
    "shards": lambda g: partition_shards(LABELS, 50, 2, g),
    "quantity": lambda g: partition_quantity_skew(1500, 20, 0.5, g),
}


@pytest.mark.parametrize("kind", RUNNERS)
def test_disjoint_covering_sorted(kind: str) -> None:
    parts = RUNNERS[kind](rng(0))
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)  # sorted, no repeats
    joined = np.concatenate(parts)
    assert len(joined) == 1500 and set(joined.tolist()) == set(range(1500))


@pytest.mark.parametrize("kind", RUNNERS)
def test_deterministic_for_a_seed(kind: str) -> None:
    first, again, other = (RUNNERS[kind](rng(s)) for s in (7, 7, 8))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_iid_sizes() -> None:
    assert {len(p) for p in partition_iid(1500, 100, rng(0))} == {15}
    assert sorted(len(p) for p in partition_iid(10, 3, rng(0))) == [3, 3, 4]


def _classes_per_party(parts: Parts) -> float:
    return float(np.mean([len(np.unique(LABELS[p])) for p in parts]))


def test_dirichlet_small_alpha_is_skewed() -> None:
    skewed = partition_dirichlet(LABELS, 10, 0.05, rng(1))
    mixed = partition_dirichlet(LABELS, 10, 100.0, rng(1))
    assert _classes_per_party(skewed) < 5 <= _classes_per_party(mixed)
    assert min(len(p) for p in skewed) >= 2


def test_dirichlet_gives_up_with_a_clear_error() -> None:
    y = np.repeat(np.arange(2), 20)
    with pytest.raises(DataError, match=r"no Dirichlet.*raise alpha"):
        partition_dirichlet(y, 19, 0.01, rng(0), min_rows=2)


def test_shards_give_few_labels() -> None:
    parts = partition_shards(LABELS, 50, 2, rng(0))
    assert {len(p) for p in parts} == {30}
    assert max(len(np.unique(LABELS[p])) for p in parts) <= 2


def test_quantity_skew_sizes() -> None:
    parts = partition_quantity_skew(1500, 20, 0.3, rng(0), min_rows=5)
    sizes = [len(p) for p in parts]
    assert min(sizes) >= 5 and max(sizes) > 4 * (1500 // 20)


@pytest.mark.parametrize(
    "call",
    [
        lambda: partition_iid(3, 4, rng(0)),
        lambda: partition_dirichlet(np.zeros(7), 4, 0.5, rng(0), min_rows=2),
        lambda: partition_shards(np.zeros(7), 4, 2, rng(0)),
        lambda: partition_quantity_skew(7, 4, 0.5, rng(0), min_rows=2),
    ],
)
def test_too_few_rows(call: Callable[[], Parts]) -> None:
    with pytest.raises(DataError, match=r"too few"):
        call()


def test_dispatcher() -> None:
    cfg = PartitionConfig(kind="shards", parties=5, shards_per_party=3)
    parts = partition(cfg, LABELS, rng(3))
    expected = partition_shards(LABELS, 5, 3, rng(3))
    assert all(np.array_equal(a, b) for a, b in zip(parts, expected, strict=True))
    with pytest.raises(DataError, match=r"natural"):
        partition(PartitionConfig(kind="natural"), LABELS, rng(0))
    with pytest.raises(DataError, match=r"data.partition.parties is required"):
        partition(PartitionConfig(kind="iid"), LABELS, rng(0))
