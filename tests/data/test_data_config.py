"""The [data] section: unknown keys and settings that would do nothing are refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from accord.data import DataConfig, PartitionConfig, PartySource

SCHEMA = {
    "columns": [{"name": "a", "type": "numeric"}],
    "label": {"column": "y", "binarize_above": 0},
}


def _bad(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        DataConfig.model_validate(data)
    assert fragment in str(info.value), str(info.value)


def test_valid_configs() -> None:
    cfg = DataConfig.model_validate(
        {"source": "sklearn", "name": "wine", "partition": {"parties": 3}}
    )
    assert cfg.partition.kind == "iid" and cfg.test_fraction == 0.25 and not cfg.natural
    cfg = DataConfig.model_validate(
        {"source": "csv", "path": "t.csv", "schema": SCHEMA, "partition": {"parties": 2}}
    )
    assert cfg.schema_ is not None and cfg.schema_.label.column == "y"
    cfg = DataConfig.model_validate(
        {
            "source": "idx",
            "partition": {"kind": "natural"},
            "parties": [{"name": "a", "images": "i", "labels": "l"}],
            "test_images": "ti",
            "test_labels": "tl",
        }
    )
    assert cfg.natural
    assert PartitionConfig().kind == "iid"


def test_unknown_keys_refused() -> None:
    _bad(
        {"source": "sklearn", "name": "wine", "partition": {"parties": 2}, "shuffle": True},
        "shuffle",
    )
    _bad({"source": "sklearn", "name": "wine", "partition": {"parties": 2, "beta": 1}}, "beta")
    _bad(
        {"source": "csv", "path": "t.csv", "schema_": SCHEMA, "partition": {"parties": 2}},
        "schema_",
    )
    with pytest.raises(ValidationError, match=r"site"):
        PartySource.model_validate({"name": "a", "site": "x"})


def test_field_checks() -> None:
    _bad({"source": "sklearn", "name": "wine", "partition": {"parties": 0}}, "parties")
    _bad({"source": "sklearn", "name": "wine", "partition": {"parties": 2, "alpha": 0}}, "alpha")
    _bad(
        {"source": "sklearn", "name": "wine", "partition": {"parties": 2}, "test_fraction": 1},
        "test_fraction",
    )
    _bad({"source": "sqlite", "name": "wine", "partition": {"parties": 2}}, "source")
    with pytest.raises(ValidationError, match=r"name"):
        PartySource(name="bad name/")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {"source": "csv", "path": "t.csv", "partition": {"parties": 2}},
            "data.schema is required",
        ),
        ({"source": "sklearn", "name": "wine"}, "data.partition.parties is required"),
        ({"source": "sklearn", "partition": {"parties": 2}}, "data.name is required"),
        (
            {"source": "sklearn", "name": "iris", "partition": {"parties": 2}},
            "unknown bundled set 'iris'",
        ),
        (
            {"source": "sklearn", "name": "wine", "path": "x.csv", "partition": {"parties": 2}},
            "data.path is not used",
        ),
        ({"source": "csv", "schema": SCHEMA, "partition": {"parties": 2}}, "data.path is required"),
        (
            {"source": "idx", "images": "i", "partition": {"parties": 2}},
            "data.images and data.labels",
        ),
        (
            {
                "source": "idx",
                "images": "i",
                "labels": "l",
                "test_images": "t",
                "partition": {"parties": 2},
            },
            "test_labels go together",
        ),
        (
            {"source": "csv", "schema": SCHEMA, "partition": {"kind": "natural"}},
            "data.parties is required",
        ),
        (
            {
                "source": "csv",
                "schema": SCHEMA,
                "partition": {"kind": "natural"},
                "parties": [{"name": "a", "images": "i", "labels": "l"}],
            },
            "needs a path",
        ),
        (
            {
                "source": "csv",
                "path": "t.csv",
                "schema": SCHEMA,
                "partition": {"parties": 2},
                "parties": [{"name": "a", "path": "a.csv"}, {"name": "b"}],
            },
            "give only names",
        ),
        (
            {
                "source": "sklearn",
                "name": "wine",
                "partition": {"parties": 3},
                "parties": [{"name": "a"}, {"name": "b"}],
            },
            "lists 2 names but data.partition.parties = 3",
        ),
        (
            {
                "source": "csv",
                "schema": SCHEMA,
                "partition": {"kind": "natural", "parties": 3},
                "parties": [{"name": "a", "path": "a.csv"}],
            },
            "data.partition.parties = 3 but data.parties lists 1",
        ),
        (
            {
                "source": "sklearn",
                "name": "wine",
                "partition": {"parties": 2},
                "parties": [{"name": "a"}, {"name": "a"}],
            },
            "repeated: a",
        ),
        (
            {
                "source": "sklearn",
                "name": "wine",
                "partition": {"parties": 2},
                "server_holdout": 10,
                "standardize": True,
            },
            "server_holdout cannot be combined with data.standardize",
        ),
        (
            {
                "source": "idx",
                "images": "i",
                "labels": "l",
                "test_images": "ti",
                "test_labels": "tl",
                "standardize": True,
                "partition": {"parties": 2},
            },
            "test_images cannot be combined with data.standardize",
        ),
        (
            {
                "source": "csv",
                "schema": SCHEMA,
                "partition": {"kind": "natural"},
                "parties": [{"name": "a", "path": "a.csv"}],
                "server_holdout": 5,
            },
            "natural partition has none",
        ),
        (
            {
                "source": "sklearn",
                "name": "wine",
                "partition": {"kind": "natural"},
                "parties": [{"name": "a"}],
            },
            "no natural partition",
        ),
    ],
)
def test_inconsistent_configs_refused(data: dict[str, Any], fragment: str) -> None:
    _bad(data, fragment)
