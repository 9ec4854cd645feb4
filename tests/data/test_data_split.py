"""Each party's stratified split and standardiser."""

from __future__ import annotations

import numpy as np
import pytest

from accord.data import Standardizer, stratified_split
from accord.errors import DataError

rng = np.random.default_rng


def test_stratified_counts() -> None:
    y = np.array([0] * 40 + [1] * 10)
    train, test = stratified_split(y, 0.3, rng(0))
    assert np.bincount(y[test]).tolist() == [12, 3]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(50))
    assert train.dtype == test.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)


def test_class_of_one_goes_to_train() -> None:
    y = np.array([1] * 45 + [0])  # Switzerland's shape: one negative row
    train, test = stratified_split(y, 0.34, rng(0))
    assert 45 in train.tolist() and 45 not in test.tolist()
    assert len(test) == 15


def test_zero_fraction_gives_empty_test() -> None:
    train, test = stratified_split(np.arange(10) % 3, 0.0, rng(0))
    assert len(test) == 0 and test.dtype == np.int64 and len(train) == 10


def test_deterministic_for_the_rng() -> None:
    y = np.arange(100) % 4
    a, b, c = (stratified_split(y, 0.25, rng(s)) for s in (5, 5, 6))
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_unstratified() -> None:
    train, test = stratified_split(np.zeros(20), 0.25, rng(0), stratify=False)
    assert len(test) == 5 and len(train) == 15


def test_bad_fraction() -> None:
    with pytest.raises(DataError, match=r"data.test_fraction"):
        stratified_split(np.zeros(4), 1.0, rng(0))


def test_standardizer() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], dtype=np.float32)
    scaler = Standardizer.fit(x)
    out = scaler.transform(x)
    assert out.dtype == np.float32 and not np.isnan(out).any()
    np.testing.assert_allclose(out.mean(axis=0), [0, 0], atol=1e-6)
    np.testing.assert_allclose(out[:, 0].std(), 1, rtol=1e-6)
    np.testing.assert_array_equal(out[:, 1], 0)  # a constant column becomes 0, not NaN
    np.testing.assert_allclose(
        scaler.transform(np.array([[7.0, 6.0]])), [[2.449490, 1.0]], rtol=1e-5
    )


def test_standardizer_constant_float_column_stays_zero() -> None:
    x = np.full((7, 1), 0.1, dtype=np.float32)
    np.testing.assert_array_equal(Standardizer.fit(x).transform(x), 0)


def test_standardizer_needs_rows() -> None:
    with pytest.raises(DataError, match=r"0 training rows"):
        Standardizer.fit(np.zeros((0, 3)))
