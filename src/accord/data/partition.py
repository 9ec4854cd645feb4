"""Simulation partitioners: split one pooled table's rows among N parties.

Each returns one int64 array of row indices per party, sorted within the party, disjoint,
covering every row, and fully determined by the ``numpy.random.Generator`` it is given
(the job seed reaches it through :func:`accord.data.federation.build_federated_data`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from accord.errors import DataError

if TYPE_CHECKING:
    from accord.data.config import PartitionConfig

IndexArray = npt.NDArray[np.int64]
DIRICHLET_TRIES = 100


def _finish(parts: Sequence[npt.NDArray[np.integer]]) -> list[IndexArray]:
    return [np.sort(p).astype(np.int64) for p in parts]


def _check_parties(n_parties: int) -> None:
    if n_parties < 1:
        raise DataError(f"data.partition.parties: {n_parties} parties; need at least 1")


def _check_rows(n_rows: int, n_parties: int, min_rows: int) -> None:
    _check_parties(n_parties)
    if min_rows < 1:
        raise DataError(f"data.partition.min_rows: {min_rows}; need at least 1")
    if n_rows < n_parties * min_rows:
        raise DataError(
            f"data.partition.parties: {n_rows} rows are too few for {n_parties} parties of at "
            f"least {min_rows} rows; use fewer parties or more data"
        )


def partition_iid(n_rows: int, n_parties: int, rng: np.random.Generator) -> list[IndexArray]:
    """Shuffle, then cut into near-equal parts (1500 rows / 100 parties = 15 each)."""
    _check_rows(n_rows, n_parties, 1)
    return _finish(np.array_split(rng.permutation(n_rows), n_parties))


def partition_dirichlet(
    y: npt.ArrayLike,
    n_parties: int,
    alpha: float,
    rng: np.random.Generator,
    min_rows: int = 2,
) -> list[IndexArray]:
    """Label skew: each class's rows are shared among parties by proportions ~ Dir(alpha).

    Small alpha gives each party few classes. A draw that leaves a party with fewer than
    ``min_rows`` rows is redrawn, up to 100 times.
    """
    labels = np.asarray(y)
    _check_rows(len(labels), n_parties, min_rows)
    if not alpha > 0:
        raise DataError(f"data.partition.alpha: {alpha}; must be > 0")
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(DIRICHLET_TRIES):
        parts: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(n_parties)]
        for rows in by_class:
            shuffled = rng.permutation(rows)
            share = rng.dirichlet(np.full(n_parties, alpha))
            cuts = (np.cumsum(share)[:-1] * len(shuffled)).astype(np.int64)
            for party, chunk in enumerate(np.split(shuffled, cuts)):
                parts[party].append(chunk)
        merged = [np.concatenate(p) for p in parts]
        if min(len(p) for p in merged) >= min_rows:
            return _finish(merged)
    raise DataError(
        f"data.partition: no Dirichlet(alpha={alpha}) draw in {DIRICHLET_TRIES} gave every one "
        f"of {n_parties} parties at least {min_rows} rows; raise alpha, or lower parties or "
        "min_rows"
    )


def partition_shards(
    y: npt.ArrayLike, n_parties: int, shards_per_party: int, rng: np.random.Generator
) -> list[IndexArray]:
    """McMahan et al.'s pathological split: sort by label, cut shards, deal them at random."""
    labels = np.asarray(y)
    if shards_per_party < 1:
        raise DataError(f"data.partition.shards_per_party: {shards_per_party}; need at least 1")
    _check_parties(n_parties)
    n_shards = n_parties * shards_per_party
    if len(labels) < n_shards:
        raise DataError(
            f"data.partition: {len(labels)} rows are too few for {n_shards} shards "
            f"({n_parties} parties x {shards_per_party}); lower parties or shards_per_party"
        )
    # Shuffle first so that which rows of a class share a shard is random, then sort stably.
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    shards = np.array_split(order, n_shards)
    deal = rng.permutation(n_shards)
    return _finish(
        [
            np.concatenate(
                [shards[s] for s in deal[i * shards_per_party : (i + 1) * shards_per_party]]
            )
            for i in range(n_parties)
        ]
    )


def partition_quantity_skew(
    n_rows: int,
    n_parties: int,
    alpha: float,
    rng: np.random.Generator,
    min_rows: int = 2,
) -> list[IndexArray]:
    """Quantity skew: party sizes follow Dir(alpha) proportions, labels stay mixed.

    Every party first gets ``min_rows``; the rest is dealt by a multinomial draw with
    Dir(alpha) proportions. That never needs a redraw, where rejecting whole draws would
    fail for many parties and small alpha.
    """
    _check_rows(n_rows, n_parties, min_rows)
    if not alpha > 0:
        raise DataError(f"data.partition.alpha: {alpha}; must be > 0")
    share = rng.dirichlet(np.full(n_parties, alpha))
    sizes = min_rows + rng.multinomial(n_rows - n_parties * min_rows, share)
    order = rng.permutation(n_rows)
    return _finish(np.split(order, np.cumsum(sizes)[:-1]))


def partition(cfg: PartitionConfig, y: npt.ArrayLike, rng: np.random.Generator) -> list[IndexArray]:
    """Run the partitioner that ``cfg.kind`` names over labels ``y``."""
    labels = np.asarray(y)
    if cfg.kind == "natural":
        raise DataError(
            'data.partition.kind = "natural" takes one source per party from data.parties; '
            "there is no pooled table to partition"
        )
    if cfg.parties is None:
        raise DataError(f'data.partition.parties is required for kind = "{cfg.kind}"')
    if cfg.kind == "iid":
        return partition_iid(len(labels), cfg.parties, rng)
    if cfg.kind == "dirichlet":
        return partition_dirichlet(labels, cfg.parties, cfg.alpha, rng, cfg.min_rows)
    if cfg.kind == "shards":
        return partition_shards(labels, cfg.parties, cfg.shards_per_party, rng)
    return partition_quantity_skew(len(labels), cfg.parties, cfg.alpha, rng, cfg.min_rows)
