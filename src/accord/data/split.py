"""Each party's own train/test split, and the two ways to scale its features.

:class:`Standardizer` fits on a party's own rows, so its statistics stay on the node;
:class:`BoundsScaler` uses only the bounds declared in the schema, the same on every party.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from accord.data.schema import TableSchema
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


@dataclass(frozen=True, slots=True)
class BoundsScaler:
    """Each numeric feature mapped into [-1, 1] by its declared ``min`` and ``max``.

    x -> (clip(x, min, max) - min) / (max - min) * 2 - 1; a column with min == max becomes
    0. One-hot features keep their 0/1. The bounds come from the schema, which the data
    owner writes, never from the rows: the transform depends on no data, so it may shape a
    differentially private model, and it is the same on every party and on the
    coordinator's test set.
    """

    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    numeric: npt.NDArray[np.bool_]

    @classmethod
    def from_schema(cls, schema: TableSchema) -> BoundsScaler:
        """The scaler for features encoded by ``schema`` (its column order, one-hot widths)."""
        low: list[float] = []
        high: list[float] = []
        numeric: list[bool] = []
        for spec in schema.columns:
            if spec.type == "numeric":
                if spec.min is None or spec.max is None:
                    raise DataError(
                        f"numeric column '{spec.name}' needs both min and max in "
                        "data.schema.columns to be scaled by its bounds"
                    )
                low.append(spec.min)
                high.append(spec.max)
                numeric.append(True)
            else:
                # One indicator per encoded level, passed through: the bounds are unused.
                low.extend([0.0] * spec.width)
                high.extend([1.0] * spec.width)
                numeric.extend([False] * spec.width)
        return cls(
            low=np.array(low, dtype=np.float64),
            high=np.array(high, dtype=np.float64),
            numeric=np.array(numeric, dtype=np.bool_),
        )

    def transform(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        data = np.asarray(x, dtype=np.float64)
        if data.shape[1:] != self.low.shape:
            raise DataError(
                f'standardize = "bounds": rows of shape {data.shape[1:]} do not match the '
                f"schema's {self.low.shape[0]} encoded features"
            )
        # The loader refuses values outside the bounds, but an imputed constant may lie
        # outside them; clipping keeps every scaled value in [-1, 1].
        clipped = np.clip(data, self.low, self.high)
        span = self.high - self.low
        flat = span == 0
        scaled = np.where(flat, 0.0, (clipped - self.low) / np.where(flat, 1.0, span) * 2.0 - 1.0)
        return np.where(self.numeric, scaled, data).astype(np.float32)
