"""build_federated_data: the whole pipeline, deterministic from the seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accord.data import DataConfig, FederatedData, PartyData, build_federated_data
from accord.errors import DataError, JobFileError

from .conftest import CsvWriter, IdxWriter


def _cfg(**data: Any) -> DataConfig:
    return DataConfig.model_validate(data)


def _rows(fed: FederatedData) -> int:
    return sum(len(p.y_train) + len(p.y_test) for p in fed.parties)


def _same(a: FederatedData, b: FederatedData) -> bool:
    return all(
        np.array_equal(p.x_train, q.x_train) and np.array_equal(p.y_test, q.y_test)
        for p, q in zip(a.parties, b.parties, strict=True)
    )


def test_sklearn_iid(tmp_path: Path) -> None:
    cfg = _cfg(source="sklearn", name="wine", partition={"parties": 3})
    fed = build_federated_data(cfg, 1, tmp_path)
    assert [p.name for p in fed.parties] == ["party-1", "party-2", "party-3"]
    assert fed.num_classes == 3 and fed.input_shape == (13,) and fed.server_test is None
    assert _rows(fed) == 178
    party = fed.parties[0]
    assert isinstance(party, PartyData)
    assert party.x_train.dtype == np.float32 and party.y_train.dtype == np.int64
    assert _same(fed, build_federated_data(cfg, 1, tmp_path))
    assert not _same(fed, build_federated_data(cfg, 2, tmp_path))


def test_server_holdout_and_names(tmp_path: Path) -> None:
    cfg = _cfg(
        source="sklearn",
        name="breast_cancer",
        partition={"kind": "dirichlet", "parties": 2, "alpha": 1.0},
        server_holdout=100,
    )
    fed = build_federated_data(cfg, 0, tmp_path, party_names=["north", "south"])
    assert [p.name for p in fed.parties] == ["north", "south"]
    assert fed.server_test is not None and fed.server_test[0].shape == (100, 30)
    assert _rows(fed) == 569 - 100
    # The holdout has its own generator: another partition kind does not move it.
    iid = cfg.model_copy(update={"partition": cfg.partition.model_copy(update={"kind": "iid"})})
    other = build_federated_data(iid, 0, tmp_path)
    assert other.server_test is not None
    np.testing.assert_array_equal(other.server_test[1], fed.server_test[1])
    with pytest.raises(DataError, match=r"the job names 3 parties"):
        build_federated_data(cfg, 0, tmp_path, party_names=["a", "b", "c"])


def test_server_holdout_too_large(tmp_path: Path) -> None:
    cfg = _cfg(source="sklearn", name="wine", partition={"parties": 2}, server_holdout=178)
    with pytest.raises(DataError, match=r"data.server_holdout = 178 leaves no rows"):
        build_federated_data(cfg, 0, tmp_path)


def test_standardize_per_party(tmp_path: Path) -> None:
    cfg = _cfg(source="sklearn", name="wine", partition={"parties": 2}, standardize=True)
    for party in build_federated_data(cfg, 0, tmp_path).parties:
        np.testing.assert_allclose(party.x_train.mean(axis=0), 0, atol=1e-5)
        assert abs(float(party.x_test.mean())) > 1e-6  # the test split uses train's scale


def test_idx_pooled_with_test_set(tmp_path: Path, write_idx: IdxWriter) -> None:
    gen = np.random.default_rng(0)
    write_idx("train-img.gz", gen.integers(0, 256, (40, 4, 4), dtype=np.uint8), gz=True)
    write_idx("train-lab.gz", np.arange(40, dtype=np.uint8) % 5, gz=True)
    write_idx("test-img", gen.integers(0, 256, (6, 4, 4), dtype=np.uint8))
    write_idx("test-lab", np.array([0, 1, 2, 3, 4, 7], dtype=np.uint8))
    cfg = _cfg(
        source="idx",
        images="train-img.gz",
        labels="train-lab.gz",
        test_images="test-img",
        test_labels="test-lab",
        partition={"kind": "shards", "parties": 4, "shards_per_party": 2},
        test_fraction=0.0,
    )
    fed = build_federated_data(cfg, 0, tmp_path)  # relative paths resolve against base_dir
    assert fed.input_shape == (1, 4, 4) and fed.num_classes == 8  # max label (test set) + 1
    assert all(len(p.y_test) == 0 for p in fed.parties) and _rows(fed) == 40
    assert fed.server_test is not None and fed.server_test[0].shape == (6, 1, 4, 4)


def test_idx_natural(tmp_path: Path, write_idx: IdxWriter) -> None:
    write_idx("a-img", np.zeros((5, 3, 3), dtype=np.uint8))
    write_idx("a-lab", np.array([0, 1, 0, 1, 0], dtype=np.uint8))
    write_idx("b-img", np.zeros((0, 3, 3), dtype=np.uint8))
    write_idx("b-lab", np.zeros(0, dtype=np.uint8))
    write_idx("c-img", np.zeros((2, 2, 2), dtype=np.uint8))
    write_idx("c-lab", np.zeros(2, dtype=np.uint8))
    parties = [{"name": n, "images": f"{n}-img", "labels": f"{n}-lab"} for n in "abc"]
    one = _cfg(source="idx", partition={"kind": "natural"}, parties=parties[:1])
    assert build_federated_data(one, 0, tmp_path).num_classes == 2
    empty = _cfg(source="idx", partition={"kind": "natural"}, parties=parties[:2])
    with pytest.raises(DataError, match=r"party 'b' has 0 rows"):
        build_federated_data(empty, 0, tmp_path)
    mixed = _cfg(source="idx", partition={"kind": "natural"}, parties=[parties[0], parties[2]])
    with pytest.raises(DataError, match=r"party 'c': examples of shape"):
        build_federated_data(mixed, 0, tmp_path)


def test_csv_natural_shares_one_schema(tmp_path: Path, write_csv: CsvWriter) -> None:
    (tmp_path / "sites").mkdir()
    header = ["age", "color", "y"]
    write_csv("sites/a.csv", header, [[30, "r", "no"], [40, "g", "yes"], [41, "g", "yes"]])
    write_csv("sites/b.csv", header, [[50, "b", "yes"], [60, "?", "no"], [61, "r", "no"]])
    cfg = _cfg(
        source="csv",
        schema={
            "columns": [
                {"name": "age", "type": "numeric"},
                {"name": "color", "type": "categorical", "levels": ["r", "g", "b"]},
            ],
            "label": {"column": "y", "classes": ["no", "yes"]},
            "missing_values": ["?"],
        },
        partition={"kind": "natural"},
        parties=[{"name": "a", "path": "sites/a.csv"}, {"name": "b", "path": "sites/b.csv"}],
        test_fraction=0.0,
    )
    fed = build_federated_data(cfg, 0, tmp_path, party_names=["b", "a"])
    a, b = fed.parties
    assert (a.name, b.name) == ("a", "b") and fed.input_shape == (4,) and fed.num_classes == 2
    np.testing.assert_array_equal(b.x_train, [[50, 0, 0, 1], [61, 1, 0, 0]])
    with pytest.raises(DataError, match=r"differ from the job's parties"):
        build_federated_data(cfg, 0, tmp_path, party_names=["a", "c"])


def test_source_must_match_suffix(tmp_path: Path, write_csv: CsvWriter) -> None:
    write_csv("t.csv", ["a", "y"], [[1, 0], [2, 1]])
    cfg = _cfg(
        source="parquet",
        path="t.csv",
        schema={
            "columns": [{"name": "a", "type": "numeric"}],
            "label": {"column": "y", "binarize_above": 0},
        },
        partition={"parties": 1},
    )
    with pytest.raises(
        DataError, match=r't.csv: data.source = "parquet" but the file suffix says csv'
    ):
        build_federated_data(cfg, 0, tmp_path)


def test_missing_file_named(tmp_path: Path) -> None:
    cfg = _cfg(source="idx", images="nope.gz", labels="nope-lab.gz", partition={"parties": 1})
    with pytest.raises(DataError, match=r"nope.gz: not found"):
        build_federated_data(cfg, 0, tmp_path)


def test_negative_seed_refused(tmp_path: Path) -> None:
    cfg = _cfg(source="sklearn", name="wine", partition={"parties": 2})
    with pytest.raises(JobFileError, match=r"job.seed = -1"):
        build_federated_data(cfg, -1, tmp_path)
