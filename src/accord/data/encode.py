"""Encode a table into (X, y) by its declared schema, with one clear error per bad input.

Cells are compared by canonical key (see :func:`accord.data.schema.canonical`), so "1",
"1.0" and 1 are the same level and ``-9`` matches "-9.0". Every check works on the unique
values of a column and maps back to rows: the Python work is per distinct value, not per
cell. Row numbers in messages count data rows from 1 (the header line is not counted).

Every non-missing cell is checked, including those of a row that the "drop" policy removes
for a missing value elsewhere: a malformed value means a wrong file or schema either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import numpy as np
import numpy.typing as npt

from accord.data.schema import ColumnSpec, Scalar, TableSchema, canonical, num_features
from accord.errors import DataError

if TYPE_CHECKING:
    import pandas

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

# Empty cells, nulls and NaN share this key: one declaration ("" or nan) covers them all.
EMPTY = ""


def _key(value: object) -> float | str:
    if value is None:
        return EMPTY
    # numpy integers, Parquet decimals and the like go through their text.
    key = canonical(value) if isinstance(value, int | float | str) else canonical(str(value))
    if isinstance(key, float) and math.isnan(key):
        return EMPTY
    return key


@dataclass(frozen=True, slots=True)
class _Column:
    """A column as its distinct keys, the key index of each row, and a display text per key."""

    name: str
    keys: list[float | str]
    shown: list[str]
    codes: npt.NDArray[np.intp]

    @classmethod
    def of(cls, series: pandas.Series, name: str) -> _Column:
        import pandas as pd

        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        keys = [_key(u) for u in uniques]
        shown = [str(u).strip() for u in uniques]
        # pandas marks nulls with -1; give them a key slot of their own at the end.
        keys.append(EMPTY)
        shown.append("")
        fixed = np.where(codes < 0, len(uniques), codes).astype(np.intp)
        return cls(name, keys, shown, fixed)

    def per_row(self, per_key: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        return per_key[self.codes]

    def first_row(self, bad_key: BoolArray, rows: BoolArray | None = None) -> int | None:
        """Index of the first row whose key is flagged (and which is in ``rows``), or None."""
        if not bad_key.any():
            return None
        hits = bad_key[self.codes]
        if rows is not None:
            hits &= rows
        found = np.flatnonzero(hits)
        return int(found[0]) if found.size else None


def _listing(names: list[str]) -> str:
    if len(names) <= 8:
        return ", ".join(names)
    return f"{', '.join(names[:3])}, ..., {names[-1]} ({len(names)} columns)"


def _numbers(keys: list[float | str]) -> FloatArray:
    return np.array([k if isinstance(k, float) else math.nan for k in keys], dtype=np.float64)


def check_columns(header: list[str], schema: TableSchema, source: str) -> None:
    """Refuse a table that lacks a declared feature column or the label column."""
    for spec in schema.columns:
        if spec.name not in header:
            raise DataError(
                f"{source}: column '{spec.name}' not found (columns: {_listing(header)}); "
                "check data.schema.columns"
            )
    if schema.label.column not in header:
        raise DataError(
            f"{source}: label column '{schema.label.column}' not found "
            f"(columns: {_listing(header)}); set data.schema.label.column"
        )


class _Encoder:
    """One table, one schema: holds the shared state of the checks."""

    def __init__(self, df: pandas.DataFrame, schema: TableSchema, source: str) -> None:
        self.schema = schema
        self.source = source
        self.n = len(df)
        self.markers = {_key(m) for m in schema.missing_values}
        header = [str(c) for c in df.columns]
        check_columns(header, schema, source)
        df = df.set_axis(header, axis=1)
        self.features = [_Column.of(df[c.name], c.name) for c in schema.columns]
        self.label = _Column.of(df[schema.label.column], schema.label.column)

    def fail(self, message: str) -> NoReturn:
        raise DataError(f"{self.source}: {message}")

    def where(self, col: _Column, row: int) -> str:
        return f"column '{col.name}' row {row + 1}"

    def missing_keys(self, col: _Column) -> BoolArray:
        return np.array([k in self.markers for k in col.keys], dtype=np.bool_)

    def check_numeric(self, col: _Column, spec: ColumnSpec, missing: BoolArray) -> FloatArray:
        """Per-key values of a numeric column; refuses text, empty, non-finite, out of bounds."""
        values = _numbers(col.keys)
        bad = ~missing & ~np.isfinite(values)
        row = col.first_row(bad)
        if row is not None:
            key = col.keys[int(col.codes[row])]
            shown = col.shown[int(col.codes[row])]
            if key == EMPTY:
                self.fail(
                    f'{self.where(col, row)} is empty or NaN; list "" in '
                    "data.schema.missing_values to treat such cells as missing"
                )
            if isinstance(key, str):
                self.fail(
                    f"{self.where(col, row)}: {shown!r} is not a number; fix the file or "
                    "list it in data.schema.missing_values"
                )
            self.fail(
                f"{self.where(col, row)}: value {shown} is not finite (NaN or inf left "
                "after the missing-value policy); fix the file or list it in missing_values"
            )
        low = -math.inf if spec.min is None else spec.min
        high = math.inf if spec.max is None else spec.max
        outside = ~missing & ((values < low) | (values > high))
        row = col.first_row(outside)
        if row is not None:
            shown = col.shown[int(col.codes[row])]
            self.fail(
                f"{self.where(col, row)}: value {shown} is outside [{low:g}, {high:g}]; "
                "fix the row or change min/max in data.schema.columns"
            )
        return values

    def check_levels(
        self, col: _Column, declared: list[Scalar], missing: BoolArray, what: str, fix: str
    ) -> npt.NDArray[np.intp]:
        """Per-key index into ``declared`` (-1 for a missing key); refuses unknown values."""
        lookup = {canonical(v): i for i, v in enumerate(declared)}
        index = np.array([lookup.get(k, -1) for k in col.keys], dtype=np.intp)
        row = col.first_row((index < 0) & ~missing)
        if row is not None:
            if col.keys[int(col.codes[row])] == EMPTY:
                self.fail(
                    f'{what} row {row + 1} is empty or NaN; list "" in '
                    "data.schema.missing_values to treat such cells as missing"
                )
            shown = col.shown[int(col.codes[row])]
            self.fail(f"{what} row {row + 1}: {shown!r} is not among {declared}; {fix}")
        return index

    def encode(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        schema = self.schema
        if self.n == 0:
            self.fail("the table has no data rows")
        impute = schema.missing_policy == "impute"
        miss_keys = [self.missing_keys(col) for col in self.features]
        label_miss = self.missing_keys(self.label)
        drop = np.zeros(self.n, dtype=np.bool_)
        for col, missing in zip(self.features, miss_keys, strict=True):
            if not impute:
                drop |= col.per_row(missing).astype(np.bool_)
            elif col.name not in schema.impute:
                row = col.first_row(missing)
                if row is not None:
                    self.fail(
                        f"column '{col.name}' has missing values (first at row {row + 1}) but "
                        "data.schema.impute has no constant for it; add one or set "
                        'missing_policy = "drop"'
                    )
        row = self.label.first_row(label_miss)
        if row is not None and impute:
            self.fail(
                f"label column '{self.label.name}' row {row + 1} is missing; labels are never "
                'imputed: fix the row or set missing_policy = "drop"'
            )
        drop |= self.label.per_row(label_miss).astype(np.bool_)

        blocks: list[npt.NDArray[np.float32]] = []
        for spec, col, missing in zip(schema.columns, self.features, miss_keys, strict=True):
            blocks.append(self.feature_block(spec, col, missing))
        y = self.labels(label_miss)
        keep = ~drop
        if not keep.any():
            self.fail(
                f"0 rows left after dropping rows with missing values (of {self.n}); "
                "check missing_values"
            )
        width = num_features(schema)
        x = np.concatenate(blocks, axis=1) if blocks else np.zeros((self.n, width), np.float32)
        return np.ascontiguousarray(x[keep]), np.ascontiguousarray(y[keep])

    def feature_block(
        self, spec: ColumnSpec, col: _Column, missing: BoolArray
    ) -> npt.NDArray[np.float32]:
        const = self.schema.impute.get(spec.name)
        if spec.type == "numeric":
            values = self.check_numeric(col, spec, missing)
            if const is not None:
                values = np.where(missing, float(canonical(const)), values)
            return values[col.codes].astype(np.float32).reshape(-1, 1)
        assert spec.levels is not None
        index = self.check_levels(
            col,
            spec.levels,
            missing,
            f"column '{col.name}'",
            "add it to the column's levels in data.schema.columns",
        )
        if const is not None:
            index = np.where(missing, spec.levels.index(_level_of(spec, const)), index)
        rows = index[col.codes]
        start = 1 if spec.drop_first else 0
        onehot: BoolArray = np.equal(rows[:, None], np.arange(start, len(spec.levels))[None, :])
        return onehot.astype(np.float32)

    def labels(self, missing: BoolArray) -> npt.NDArray[np.int64]:
        label = self.schema.label
        col = self.label
        if label.classes is not None:
            index = self.check_levels(
                col,
                label.classes,
                missing,
                f"label out of range: label column '{col.name}'",
                "add it to data.schema.label.classes",
            )
            return index[col.codes].astype(np.int64)
        assert label.binarize_above is not None
        values = _numbers(col.keys)
        bad = ~missing & ~np.isfinite(values)
        row = col.first_row(bad)
        if row is not None:
            shown = col.shown[int(col.codes[row])]
            self.fail(
                f"label column '{col.name}' row {row + 1}: {shown!r} is not a finite number; "
                "fix the file or list it in data.schema.missing_values"
            )
        return (values > label.binarize_above)[col.codes].astype(np.int64)


def _level_of(spec: ColumnSpec, const: Scalar) -> Scalar:
    assert spec.levels is not None
    target = canonical(const)
    return next(v for v in spec.levels if canonical(v) == target)


def encode_table(
    df: pandas.DataFrame, schema: TableSchema, source: str
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Encode ``df`` by ``schema``: X float32 (n, F) in declared column order, y int64 (n,).

    ``source`` (usually the file name) starts every error message. Columns of ``df`` that
    the schema does not list are ignored.
    """
    return _Encoder(df, schema, source).encode()
