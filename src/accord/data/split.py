"""Each party's own train/test split and standardisation. Both stay on the node."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from accord.errors import DataError

IndexArray = npt.NDArray[np.int64]


def _n_test(count: int, test_fraction: float) -> int:
    # Round half up (Python's round() rounds 0.5 to even), and keep at least one row in
    # train, so that a class of one is trained on and never fails the split.
    return min(math.floor(test_fraction * count + 0.5), max(count - 1, 0))


def stratified_split(
    y: npt.ArrayLike,
    test_fraction: float,
    rng: np.random.Generator,
    stratify: bool = True,
) -> tuple[IndexArray, IndexArray]:
    """Train and test row indices (sorted int64), deterministic for ``rng``.

    Stratified: per class, round(test_fraction * count) rows go to test, but at least one
    row of every class stays in train (so a class of one goes to train; scikit-learn's
    ``stratify`` raises there). Not stratified: the same rule over all rows at once.
    ``test_fraction = 0`` gives an empty test split.
    """
    labels = np.asarray(y)
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"data.test_fraction: {test_fraction}; must be in [0, 1)")
    groups = (
        [np.flatnonzero(labels == c) for c in np.unique(labels)]
        if stratify
        else [np.arange(len(labels))]
    )
    train: list[npt.NDArray[np.integer]] = []
    test: list[npt.NDArray[np.integer]] = []
    for rows in groups:
        shuffled = rng.permutation(rows)
        k = _n_test(len(shuffled), test_fraction)
        test.append(shuffled[:k])
        train.append(shuffled[k:])
    empty = np.zeros(0, dtype=np.int64)
    return (
        np.sort(np.concatenate([empty, *train])).astype(np.int64),
        np.sort(np.concatenate([empty, *test])).astype(np.int64),
    )


@dataclass(frozen=True, slots=True)
class Standardizer:
    """Per-feature mean and standard deviation of one party's own training X.

    A feature with (near) zero spread gets std 1, so a constant column becomes 0, not NaN.
    The statistics are data-derived: they stay on the node and are never released.
    """

    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, x: npt.ArrayLike) -> Standardizer:
        data = np.asarray(x, dtype=np.float64)
        if data.shape[0] == 0:
            raise DataError("standardize: cannot fit on 0 training rows")
        mean = data.mean(axis=0)
        std = data.std(axis=0)
        # Float rounding leaves a constant column with a tiny nonzero std; dividing by it
        # would blow rounding noise up to unit scale.
        flat = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
        return cls(mean=mean, std=np.where(flat, 1.0, std))

    def transform(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        data = np.asarray(x, dtype=np.float64)
        if data.shape[1:] != self.mean.shape:
            raise DataError(
                f"standardize: rows of shape {data.shape[1:]} do not match the fitted "
                f"shape {self.mean.shape}"
            )
        return ((data - self.mean) / self.std).astype(np.float32)
