"""scikit-learn's bundled sets."""

from __future__ import annotations

import numpy as np
import pytest

from accord.data import BUNDLED_NAMES, load_bundled
from accord.errors import DataError


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [("breast_cancer", (569, 30), 2), ("digits", (1797, 64), 10), ("wine", (178, 13), 3)],
)
def test_bundled(name: str, shape: tuple[int, int], classes: int) -> None:
    x, y = load_bundled(name)
    assert x.shape == shape and x.dtype == np.float32
    assert y.dtype == np.int64 and set(y.tolist()) == set(range(classes))


def test_digits_scaled_to_unit_interval() -> None:
    x, _ = load_bundled("digits")
    assert x.min() == 0.0 and x.max() == 1.0


def test_unknown_name_lists_choices() -> None:
    assert BUNDLED_NAMES == ("breast_cancer", "digits", "wine")
    with pytest.raises(DataError, match=r"unknown bundled set 'iris'.*breast_cancer, digits, wine"):
        load_bundled("iris")


@pytest.mark.parametrize("name", ["breast_cancer", "digits", "wine"])
def test_reading_the_package_files_equals_scikit_learns_loaders(name: str) -> None:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    x, y = load_bundled(name)
    expected = np.asarray(bunch.data, dtype=np.float32)
    if name == "digits":
        expected = expected / np.float32(16.0)
    assert np.array_equal(x, expected) and np.array_equal(y, bunch.target)
