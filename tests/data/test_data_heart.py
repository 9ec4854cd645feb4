"""UCI Heart Disease with FLamby's preprocessing, declared as a schema: four real hospitals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accord.data import DataConfig, TableSchema, build_federated_data, load_table, num_features

from .conftest import HEART_FILES


def test_flamby_row_counts(heart_dir: Path, heart_schema: TableSchema) -> None:
    counts = {}
    for name, file in HEART_FILES.items():
        x, y = load_table(heart_dir / file, heart_schema)
        assert x.shape[1] == num_features(heart_schema) == 13
        assert not np.isnan(x).any()
        counts[name] = (len(y), int(y.sum()))
    assert sum(n for n, _ in counts.values()) == 740
    assert counts["switzerland"] == (46, 45)  # chol = 0 kept as a value, not missing


def test_natural_federation(heart_dir: Path, heart_schema_data: dict[str, object]) -> None:
    cfg = DataConfig.model_validate(
        {
            "source": "csv",
            "schema": heart_schema_data,
            "partition": {"kind": "natural"},
            "parties": [{"name": n, "path": str(heart_dir / f)} for n, f in HEART_FILES.items()],
            "test_fraction": 0.34,
            "standardize": True,
        }
    )
    fed = build_federated_data(cfg, 42, Path("/nonexistent"))  # absolute paths ignore base_dir
    assert fed.num_classes == 2 and fed.input_shape == (13,)
    assert sum(len(p.y_train) + len(p.y_test) for p in fed.parties) == 740
    swiss = {p.name: p for p in fed.parties}["switzerland"]
    # The single negative row stays in training; the stratified split does not fail.
    assert (len(swiss.y_train), len(swiss.y_test)) == (31, 15)
    assert swiss.y_train.tolist().count(0) == 1 and set(swiss.y_test.tolist()) == {1}
    for party in fed.parties:
        assert not np.isnan(party.x_train).any() and not np.isnan(party.x_test).any()
        np.testing.assert_allclose(party.x_train.mean(axis=0), 0, atol=1e-5)
