"""``standardize = "bounds"``: the schema's declared min/max scale numeric features into
[-1, 1], one-hot features stay 0/1, and nothing is fitted on the rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from accord.data import DataConfig, TableSchema, build_federated_data
from accord.data.split import BoundsScaler
from accord.errors import DataError

from .conftest import CsvWriter

# Encoded layout: a (numeric, [0, 10]), color=g, color=b (one-hot, r dropped),
# b (numeric, [-5, 5]), c (numeric, [3, 3]).
SCHEMA: dict[str, Any] = {
    "columns": [
        {"name": "a", "type": "numeric", "min": 0, "max": 10},
        {"name": "color", "type": "categorical", "levels": ["r", "g", "b"], "drop_first": True},
        {"name": "b", "type": "numeric", "min": -5, "max": 5},
        {"name": "c", "type": "numeric", "min": 3, "max": 3},
    ],
    "label": {"column": "y", "classes": [0, 1]},
}


def _schema(**changes: Any) -> TableSchema:
    return TableSchema.model_validate({**SCHEMA, **changes})


def _bad(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        DataConfig.model_validate(data)
    assert fragment in str(info.value), str(info.value)


def test_bounds_transform_exact_values() -> None:
    scaler = BoundsScaler.from_schema(_schema())
    x = np.array(
        [
            [0.0, 0.0, 0.0, -5.0, 3.0],
            [10.0, 1.0, 0.0, 5.0, 3.0],
            [2.5, 0.0, 1.0, 0.0, 3.0],
            [7.5, 0.0, 0.0, -2.5, 3.0],
            # Outside the bounds: clipped to them first. min == max maps to 0 at any value.
            [12.0, 0.0, 1.0, -9.0, 100.0],
            [-3.0, 1.0, 0.0, 6.0, -1.0],
        ],
        dtype=np.float32,
    )
    expected = np.array(
        [
            [-1.0, 0.0, 0.0, -1.0, 0.0],
            [1.0, 1.0, 0.0, 1.0, 0.0],
            [-0.5, 0.0, 1.0, 0.0, 0.0],
            [0.5, 0.0, 0.0, -0.5, 0.0],
            [1.0, 0.0, 1.0, -1.0, 0.0],
            [-1.0, 1.0, 0.0, 1.0, 0.0],
        ],
        dtype=np.float32,
    )
    out = scaler.transform(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_bounds_scaler_needs_both_bounds_and_the_schema_width() -> None:
    columns = [{"name": "age", "type": "numeric", "min": 0}, *SCHEMA["columns"]]
    with pytest.raises(DataError, match=r"numeric column 'age' needs both min and max"):
        BoundsScaler.from_schema(_schema(columns=columns))
    with pytest.raises(DataError, match=r"rows of shape \(4,\) do not match the schema's 5"):
        BoundsScaler.from_schema(_schema()).transform(np.zeros((2, 4)))


def test_config_accepts_bounds_and_refuses_what_it_cannot_scale() -> None:
    table = {"source": "csv", "path": "t.csv", "schema": SCHEMA, "partition": {"parties": 2}}
    cfg = DataConfig.model_validate({**table, "standardize": "bounds", "server_holdout": 3})
    assert cfg.standardize == "bounds" and cfg.server_holdout == 3
    assert DataConfig.model_validate({**table, "standardize": True}).standardize is True
    _bad({**table, "standardize": "bound"}, 'choose true, false or "bounds"')
    _bad({**table, "standardize": 1}, 'choose true, false or "bounds"')
    open_ended = {**SCHEMA, "columns": [{"name": "age", "type": "numeric", "max": 99}]}
    _bad(
        {**table, "schema": open_ended, "standardize": "bounds"},
        "data.standardize = \"bounds\": numeric column 'age' needs both min and max",
    )
    _bad(
        {"source": "sklearn", "name": "wine", "partition": {"parties": 2}, "standardize": "bounds"},
        'data.standardize = "bounds" scales by the min and max declared in data.schema, and '
        'source = "sklearn" has none',
    )
    idx = {"source": "idx", "images": "i", "labels": "l", "partition": {"parties": 2}}
    _bad({**idx, "standardize": "bounds"}, 'source = "idx" has none')
    # The schema check comes first: "bounds" is never possible for IDX, test set or not.
    _bad(
        {**idx, "test_images": "ti", "test_labels": "tl", "standardize": "bounds"},
        'source = "idx" has none',
    )
    _bad(
        {**table, "standardize": True, "server_holdout": 3},
        "server_holdout cannot be combined with data.standardize = true: each party",
    )


def test_bounds_scale_the_parties_and_the_coordinator_test_set_alike(
    tmp_path: Path, write_csv: CsvWriter
) -> None:
    # a = 2 * i lies in [0, 10]; the label alternates. c's imputed constant 7 lies outside
    # its bounds [3, 3] and b's -20 outside [-5, 5]: the scaler clips what imputation put
    # there.
    rows = [
        (2 * i, "rgb"[i % 3], "?" if i == 0 else i - 3, "?" if i == 1 else 3, i % 2)
        for i in range(6)
    ]
    write_csv("t.csv", ["a", "color", "b", "c", "y"], rows)
    schema = {
        **SCHEMA,
        "missing_values": ["?"],
        "missing_policy": "impute",
        "impute": {"b": -20, "c": 7},
    }
    cfg = DataConfig.model_validate(
        {
            "source": "csv",
            "path": "t.csv",
            "schema": schema,
            "partition": {"parties": 2},
            "test_fraction": 0.0,
            "server_holdout": 2,
            "standardize": "bounds",
        }
    )
    fed = build_federated_data(cfg, 0, tmp_path)
    assert fed.server_test is not None
    x = np.concatenate([*(p.x_train for p in fed.parties), fed.server_test[0]])
    order = np.argsort(x[:, 0])
    expected = np.array(
        [
            [-1.0, 0.0, 0.0, -1.0, 0.0],  # i = 0: b imputed -20, clipped to -5
            [-0.6, 1.0, 0.0, -0.4, 0.0],  # i = 1: c imputed 7; min == max gives 0
            [-0.2, 0.0, 1.0, -0.2, 0.0],
            [0.2, 0.0, 0.0, 0.0, 0.0],
            [0.6, 1.0, 0.0, 0.2, 0.0],
            [1.0, 0.0, 1.0, 0.4, 0.0],
        ],
        dtype=np.float32,
    )
    np.testing.assert_allclose(x[order], expected, atol=1e-6)
