"""scikit-learn's bundled data sets: shipped inside the package, so no download is needed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from accord.errors import DataError

BUNDLED_NAMES: tuple[str, ...] = ("breast_cancer", "digits", "wine")


def load_bundled(name: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """X float32 (n, F) and y int64 (n,) of a bundled set.

    ``digits`` holds 8x8 images with pixel values 0..16; they are divided by 16 so that X lies
    in [0, 1] like the IDX images. The other sets are returned as stored (standardise them
    per party with ``data.standardize``).
    """
    if name not in BUNDLED_NAMES:
        raise DataError(
            f"data.name: unknown bundled set '{name}'; choose one of {', '.join(BUNDLED_NAMES)}"
        )
    from sklearn import datasets  # slow to import: only when a bundled set is asked for

    loader = {
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "wine": datasets.load_wine,
    }[name]
    bunch = loader()
    x = np.asarray(bunch.data, dtype=np.float32)
    if name == "digits":
        x = x / np.float32(16.0)
    return np.ascontiguousarray(x), np.asarray(bunch.target, dtype=np.int64)
