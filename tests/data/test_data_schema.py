"""Declared schemas: unknown keys and inconsistent declarations are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from accord.data import ColumnSpec, LabelSpec, TableSchema, feature_names, num_features


def test_unknown_key_refused_everywhere() -> None:
    with pytest.raises(ValidationError, match=r"colour"):
        ColumnSpec.model_validate({"name": "a", "type": "numeric", "colour": 1})
    with pytest.raises(ValidationError, match=r"thresh"):
        LabelSpec.model_validate({"column": "y", "binarize_above": 0, "thresh": 1})
    with pytest.raises(ValidationError, match=r"missing"):
        TableSchema.model_validate(
            {
                "columns": [{"name": "a", "type": "numeric"}],
                "label": {"column": "y", "binarize_above": 0},
                "missing": [-9],
            }
        )


def test_models_are_frozen(small_schema: TableSchema) -> None:
    with pytest.raises(ValidationError):
        small_schema.missing_policy = "impute"  # type: ignore[misc]


def test_categorical_needs_levels_and_numeric_refuses_them() -> None:
    with pytest.raises(ValidationError, match=r"column 'c'.*levels declared"):
        ColumnSpec(name="c", type="categorical")
    with pytest.raises(ValidationError, match=r"column 'n'.*levels are for categorical"):
        ColumnSpec(name="n", type="numeric", levels=[1, 2])
    with pytest.raises(ValidationError, match=r"min/max are for numeric"):
        ColumnSpec(name="c", type="categorical", levels=[1, 2], min=0)
    with pytest.raises(ValidationError, match=r"duplicates"):
        ColumnSpec(name="c", type="categorical", levels=[1, "1.0"])
    with pytest.raises(ValidationError, match=r"min 5.0 is greater than max 1.0"):
        ColumnSpec(name="n", type="numeric", min=5, max=1)


def test_label_needs_exactly_one_mapping() -> None:
    with pytest.raises(ValidationError, match=r"exactly one of classes or binarize_above"):
        LabelSpec(column="y")
    with pytest.raises(ValidationError, match=r"exactly one of classes or binarize_above"):
        LabelSpec(column="y", classes=[0, 1], binarize_above=0.5)
    assert LabelSpec(column="y", binarize_above=0).num_classes == 2
    assert LabelSpec(column="y", classes=["a", "b", "c"]).num_classes == 3


def test_impute_keys_must_name_declared_columns() -> None:
    base = {
        "columns": [{"name": "a", "type": "numeric"}],
        "label": {"column": "y", "binarize_above": 0},
        "missing_policy": "impute",
    }
    with pytest.raises(ValidationError, match=r"impute key 'b' is not a declared feature"):
        TableSchema.model_validate({**base, "impute": {"b": 0}})
    with pytest.raises(ValidationError, match=r"not a finite number"):
        TableSchema.model_validate({**base, "impute": {"a": "zero"}})
    with pytest.raises(ValidationError, match='missing_policy is not "impute"'):
        TableSchema.model_validate({**base, "missing_policy": "drop", "impute": {"a": 0}})


def test_label_may_not_also_be_a_feature() -> None:
    with pytest.raises(ValidationError, match=r"also declared a feature"):
        TableSchema.model_validate(
            {
                "columns": [{"name": "y", "type": "numeric"}],
                "label": {"column": "y", "classes": [0, 1]},
            }
        )


def test_feature_layout(small_schema: TableSchema) -> None:
    assert num_features(small_schema) == 3
    assert feature_names(small_schema) == ["age", "color=g", "color=b"]
