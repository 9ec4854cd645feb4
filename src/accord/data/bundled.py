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
    x, y = _read_package_csv(name)
    if name == "digits":
        x = x / np.float32(16.0)
    return np.ascontiguousarray(x), y


# The CSV files scikit-learn ships, read directly: importing scikit-learn costs about 0.7 s
# of start-up, which is most of a small run. Their layout is scikit-learn's own: digits has
# no header; the others start with "n_samples,n_features,target names...". The label is
# the last column. A test checks the result against scikit-learn's loaders.
_FILES = {
    "breast_cancer": ("breast_cancer.csv", 1),
    "digits": ("digits.csv.gz", 0),
    "wine": ("wine_data.csv", 1),
}


def _read_package_csv(name: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError(
            f"data.name = '{name}' needs scikit-learn; install it (pip install scikit-learn)"
        )
    filename, header_lines = _FILES[name]
    path = Path(spec.origin).parent / "datasets" / "data" / filename
    if not path.exists():
        raise DataError(f"data.name = '{name}': {path} is missing from this scikit-learn install")
    table = np.loadtxt(path, delimiter=",", skiprows=header_lines, dtype=np.float64, ndmin=2)
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)
