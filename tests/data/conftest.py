"""Shared helpers for the data-layer tests: small file writers and the heart-disease set."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from accord.data import TableSchema

IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}

# tests/data/conftest.py -> parents[2] is the repository root; shared data lies beside it.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HEART_FILES = {
    "cleveland": "processed.cleveland.data",
    "hungary": "processed.hungarian.data",
    "switzerland": "processed.switzerland.data",
    "va": "processed.va.data",
}

IdxWriter = Callable[..., Path]
CsvWriter = Callable[..., Path]


def idx_bytes(array: npt.NDArray[np.generic]) -> bytes:
    """An IDX file's bytes: 00 00 <code> <ndim>, big-endian u32 dims, big-endian values."""
    code = IDX_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def write_idx(tmp_path: Path) -> IdxWriter:
    """``write_idx(name, array, gz=False)``: write ``array`` as IDX under tmp_path."""

    def write(name: str, array: npt.NDArray[np.generic], gz: bool = False) -> Path:
        data = idx_bytes(array)
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if gz else data)
        return path

    return write


@pytest.fixture
def write_csv(tmp_path: Path) -> CsvWriter:
    """``write_csv(name, header, rows, sep=",")``: write a small delimited text file."""

    def write(
        name: str, header: Sequence[str], rows: Sequence[Sequence[object]], sep: str = ","
    ) -> Path:
        lines = [sep.join(header), *(sep.join(str(v) for v in row) for row in rows)]
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture
def small_schema() -> TableSchema:
    """age (numeric, 0..120), color (categorical r/g/b, drop_first), label y in {no, yes}."""
    return TableSchema.model_validate(
        {
            "columns": [
                {"name": "age", "type": "numeric", "min": 0, "max": 120},
                {
                    "name": "color",
                    "type": "categorical",
                    "levels": ["r", "g", "b"],
                    "drop_first": True,
                },
            ],
            "label": {"column": "y", "classes": ["no", "yes"]},
            "missing_values": ["?", -9],
        }
    )


@pytest.fixture
def heart_dir() -> Path:
    path = SHARED_DATA / "heart-disease"
    if not all((path / f).is_file() for f in HEART_FILES.values()):
        pytest.skip(f"heart-disease data not found at {path} (../shared/data is absent)")
    return path


@pytest.fixture
def heart_schema_data() -> dict[str, object]:
    """FLamby's Fed-Heart-Disease preprocessing as a declared schema."""
    numeric = [{"name": f"X{i}", "type": "numeric"} for i in (1, 2, 4, 5, 6, 8, 9, 10)]
    categorical = [
        {"name": "X3", "type": "categorical", "levels": [1, 2, 3, 4], "drop_first": True},
        {"name": "X7", "type": "categorical", "levels": [0, 1, 2], "drop_first": True},
    ]
    return {
        "columns": numeric + categorical,
        "label": {"column": "X14", "binarize_above": 0},
        "missing_values": [-9],
        "missing_policy": "drop",
    }


@pytest.fixture
def heart_schema(heart_schema_data: dict[str, object]) -> TableSchema:
    return TableSchema.model_validate(heart_schema_data)
