"""The declared shape of a table: which columns are features, how each is encoded, the label.

"Data declared, not guessed": nothing about a table is inferred from its contents. Feature
columns, their types, the categorical levels (and so the one-hot layout), the label mapping
and the missing-value markers are all written in the job file, so two parties that encode
their own files with the same schema get feature vectors that line up column for column.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = int | float | str


def canonical(value: Scalar) -> float | str:
    """Canonical key of a declared value, so that ``1``, ``1.0`` and ``"1"`` are one level.

    A CSV cell is text ("1.0" in one hospital's file, "1" in another's), a Parquet cell may
    be a number; levels, classes and markers are compared by this key.
    """
    if isinstance(value, bool):  # bool is an int subclass; keep True apart from 1
        return str(value)
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        return text


def _is_nan(value: float | str) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _check_unique(values: list[Scalar], what: str) -> None:
    keys = [canonical(v) for v in values]
    if any(_is_nan(k) for k in keys):
        raise ValueError(f"{what} may not contain nan")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{what} has duplicates (1, 1.0 and '1' count as the same value)")


class ColumnSpec(BaseModel):
    """One feature column: numeric (optionally bounded) or categorical (one-hot encoded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    type: Literal["numeric", "categorical"]
    min: float | None = None
    max: float | None = None
    levels: list[Scalar] | None = None
    drop_first: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        where = f"column '{self.name}'"
        if self.type == "numeric":
            if self.levels is not None:
                raise ValueError(f"{where}: levels are for categorical columns; remove them")
            if self.drop_first:
                raise ValueError(f"{where}: drop_first is for categorical columns; remove it")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"{where}: min {self.min} is greater than max {self.max}")
        else:
            if self.min is not None or self.max is not None:
                raise ValueError(f"{where}: min/max are for numeric columns; remove them")
            if not self.levels:
                raise ValueError(f"{where}: a categorical column needs its levels declared")
            _check_unique(self.levels, f"{where} levels")
            if self.drop_first and len(self.levels) < 2:
                raise ValueError(f"{where}: drop_first needs at least 2 levels")
        return self

    @property
    def width(self) -> int:
        """Number of encoded features this column becomes."""
        if self.type == "numeric":
            return 1
        assert self.levels is not None  # the validator guarantees it
        return len(self.levels) - int(self.drop_first)

    def encoded_levels(self) -> list[Scalar]:
        """The levels that get an indicator column, in declared order."""
        assert self.levels is not None
        return self.levels[1:] if self.drop_first else list(self.levels)


class LabelSpec(BaseModel):
    """The label column and how raw values become class indices 0..K-1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(min_length=1)
    classes: list[Scalar] | None = None
    binarize_above: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.classes is None) == (self.binarize_above is None):
            raise ValueError(f"label '{self.column}': set exactly one of classes or binarize_above")
        if self.classes is not None:
            if len(self.classes) < 2:
                raise ValueError(f"label '{self.column}': classes needs at least 2 values")
            _check_unique(self.classes, f"label '{self.column}' classes")
        if self.binarize_above is not None and not math.isfinite(self.binarize_above):
            raise ValueError(f"label '{self.column}': binarize_above must be finite")
        return self

    @property
    def num_classes(self) -> int:
        return 2 if self.classes is None else len(self.classes)


class TableSchema(BaseModel):
    """Feature columns (in order; other columns of the file are dropped), label, missing values.

    A cell is missing when it equals one of ``missing_values`` (compared as numbers when both
    sides are numbers, so ``-9`` matches "-9" and "-9.0"). Empty cells, Parquet nulls and NaN
    are missing only when ``""`` or ``nan`` is listed: nothing is missing unless declared.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[ColumnSpec] = Field(min_length=1)
    label: LabelSpec
    missing_values: list[Scalar] = []
    missing_policy: Literal["drop", "impute"] = "drop"
    impute: dict[str, Scalar] = {}

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"columns declared twice: {', '.join(dupes)}")
        if self.label.column in names:
            raise ValueError(f"label column '{self.label.column}' is also declared a feature")
        by_name = {c.name: c for c in self.columns}
        for key, value in self.impute.items():
            spec = by_name.get(key)
            if spec is None:
                raise ValueError(
                    f"impute key '{key}' is not a declared feature column ({', '.join(names)})"
                )
            const = canonical(value)
            if spec.type == "numeric":
                if not isinstance(const, float) or not math.isfinite(const):
                    raise ValueError(f"impute '{key}': {value!r} is not a finite number")
            else:
                assert spec.levels is not None
                if const not in {canonical(v) for v in spec.levels}:
                    raise ValueError(f"impute '{key}': {value!r} is not among its levels")
        if self.impute and self.missing_policy != "impute":
            raise ValueError('impute constants given but missing_policy is not "impute"')
        return self


def num_features(schema: TableSchema) -> int:
    """Number of encoded features (after one-hot encoding)."""
    return sum(c.width for c in schema.columns)


def feature_names(schema: TableSchema) -> list[str]:
    """Encoded feature names: a numeric column keeps its name, a level becomes ``name=level``."""
    names: list[str] = []
    for col in schema.columns:
        if col.type == "numeric":
            names.append(col.name)
        else:
            names.extend(f"{col.name}={level}" for level in col.encoded_levels())
    return names
