"""CSV/Parquet loading and encoding: good tables encode, every bad one names file and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accord.data import TableSchema, encode_table, load_table
from accord.errors import DataError, InputError

from .conftest import CsvWriter

HEADER = ["id", "age", "color", "y"]
GOOD = [[1, 30, "r", "no"], [2, 40.5, "g", "yes"], [3, 50, "b", "yes"]]


def test_csv_encodes_in_declared_order(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    x, y = load_table(write_csv("t.csv", HEADER, GOOD), small_schema)
    assert x.dtype == np.float32 and y.dtype == np.int64
    # "id" is not declared: dropped. color=r is the dropped first level.
    np.testing.assert_array_equal(x, [[30, 0, 0], [40.5, 1, 0], [50, 0, 1]])
    np.testing.assert_array_equal(y, [0, 1, 1])


@pytest.mark.parametrize(("name", "sep"), [("t.txt", ";"), ("t.tsv", "\t"), ("t.data", "|")])
def test_delimiter_sniffing(
    write_csv: CsvWriter, small_schema: TableSchema, name: str, sep: str
) -> None:
    x, _ = load_table(write_csv(name, HEADER, GOOD, sep=sep), small_schema)
    assert x.shape == (3, 3)


def test_parquet(tmp_path: Path, small_schema: TableSchema) -> None:
    import pandas as pd

    path = tmp_path / "t.parquet"
    pd.DataFrame(
        {"age": [30.0, -9.0, 50.0], "color": ["r", "g", None], "y": ["no", "yes", "yes"]}
    ).to_parquet(path)
    schema = small_schema.model_copy(update={"missing_values": [-9, ""]})
    x, y = load_table(path, schema)
    np.testing.assert_array_equal(x, [[30, 0, 0]])  # -9 and the null are both missing
    np.testing.assert_array_equal(y, [0])


def test_numbers_match_levels_whatever_their_spelling(write_csv: CsvWriter) -> None:
    schema = TableSchema.model_validate(
        {
            "columns": [{"name": "cp", "type": "categorical", "levels": [1, 2]}],
            "label": {"column": "d", "binarize_above": 0},
            "missing_values": [-9],
        }
    )
    path = write_csv("t.csv", ["cp", "d"], [["1.0", 0], ["2", "3.0"], ["-9.0", 1], [1, 0]])
    x, y = load_table(path, schema)
    np.testing.assert_array_equal(x, [[1, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(y, [0, 1, 0])


def test_zero_is_a_value_not_missing(write_csv: CsvWriter) -> None:
    schema = TableSchema.model_validate(
        {
            "columns": [{"name": "chol", "type": "numeric"}],
            "label": {"column": "d", "binarize_above": 0},
            "missing_values": [-9],
        }
    )
    x, _ = load_table(write_csv("t.csv", ["chol", "d"], [[0, 1], [0, 0]]), schema)
    assert x.shape == (2, 1)


def test_impute(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    schema = small_schema.model_copy(
        update={"missing_policy": "impute", "impute": {"age": 33, "color": "b"}}
    )
    rows = [[1, "?", "r", "no"], [2, 40, -9, "yes"]]
    x, _ = load_table(write_csv("t.csv", HEADER, rows), schema)
    np.testing.assert_array_equal(x, [[33, 0, 0], [40, 0, 1]])


def _fails(path: Path, schema: TableSchema, *fragments: str) -> str:
    with pytest.raises(DataError) as info:
        load_table(path, schema)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path: Path, small_schema: TableSchema) -> None:
    _fails(tmp_path / "absent.csv", small_schema, "absent.csv", "not found")


def test_unknown_suffix(tmp_path: Path, small_schema: TableSchema) -> None:
    path = tmp_path / "t.xlsx"
    path.write_text("a\n")
    _fails(path, small_schema, "t.xlsx", "unknown table suffix", ".parquet")


def test_data_error_is_input_error() -> None:
    assert issubclass(DataError, InputError) and DataError.exit_code == 2


def test_missing_columns(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    path = write_csv("heart.csv", ["age", "colour", "y"], [[1, "r", "no"]])
    _fails(path, small_schema, "heart.csv: column 'color' not found", "colour")
    path = write_csv("h2.csv", ["age", "color", "label"], [[1, "r", "no"]])
    _fails(path, small_schema, "h2.csv: label column 'y' not found", "data.schema.label.column")


def test_header_required(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    path = write_csv("t.csv", ["1", "2", "3"], [[4, 5, 6]])
    _fails(path, small_schema, "t.csv", "add a header line")


def test_empty_file(tmp_path: Path, small_schema: TableSchema) -> None:
    path = tmp_path / "t.csv"
    path.write_text("")
    _fails(path, small_schema, "t.csv", "empty")


def test_no_data_rows(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    _fails(write_csv("t.csv", HEADER, []), small_schema, "t.csv", "no data rows")


def test_garbage_in_numeric_column(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    rows = [*GOOD, [4, "forty", "r", "no"], [5, "x", "r", "no"]]
    _fails(write_csv("t.csv", HEADER, rows), small_schema, "t.csv", "'age' row 4", "'forty'")


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_nan_or_inf_left(write_csv: CsvWriter, small_schema: TableSchema, value: str) -> None:
    rows = [*GOOD, [4, value, "r", "no"]]
    _fails(write_csv("t.csv", HEADER, rows), small_schema, "t.csv", "'age' row 4")


def test_empty_cell_is_missing_only_when_declared(
    write_csv: CsvWriter, small_schema: TableSchema
) -> None:
    path = write_csv("t.csv", HEADER, [*GOOD, [4, "", "r", "no"]])
    _fails(path, small_schema, "t.csv", "'age' row 4 is empty", 'list ""')
    declared = small_schema.model_copy(update={"missing_values": [""]})
    x, _ = load_table(path, declared)
    assert x.shape == (3, 3)


def test_out_of_bounds(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    rows = [*GOOD, [4, 130, "r", "no"]]
    _fails(write_csv("t.csv", HEADER, rows), small_schema, "t.csv", "'age' row 4", "130")


def test_unknown_level(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    rows = [*GOOD, [4, 20, "purple", "no"]]
    _fails(write_csv("t.csv", HEADER, rows), small_schema, "t.csv", "'color' row 4", "purple")


def test_label_out_of_range(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    rows = [*GOOD, [4, 20, "r", "maybe"]]
    _fails(write_csv("t.csv", HEADER, rows), small_schema, "t.csv", "row 4", "label out of range")


def test_binarized_label_must_be_a_number(write_csv: CsvWriter) -> None:
    schema = TableSchema.model_validate(
        {
            "columns": [{"name": "a", "type": "numeric"}],
            "label": {"column": "d", "binarize_above": 0},
        }
    )
    path = write_csv("t.csv", ["a", "d"], [[1, 0], [2, "sick"]])
    _fails(path, schema, "t.csv", "label column 'd' row 2", "'sick'")


def test_zero_rows_left(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    rows = [[1, "?", "r", "no"], [2, 3, "g", -9]]
    _fails(write_csv("t.csv", HEADER, rows), small_schema, "t.csv", "0 rows left", "missing_values")


def test_impute_needs_a_constant_per_column(
    write_csv: CsvWriter, small_schema: TableSchema
) -> None:
    schema = small_schema.model_copy(update={"missing_policy": "impute", "impute": {"age": 1}})
    rows = [*GOOD, [4, 20, "?", "no"]]
    _fails(write_csv("t.csv", HEADER, rows), schema, "t.csv", "'color'", "row 4", "impute")


def test_impute_refuses_a_missing_label(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    schema = small_schema.model_copy(update={"missing_policy": "impute"})
    rows = [*GOOD, [4, 20, "r", "?"]]
    _fails(write_csv("t.csv", HEADER, rows), schema, "t.csv", "label column 'y' row 4", "missing")


def test_drop_policy_drops_a_missing_label(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    x, y = load_table(write_csv("t.csv", HEADER, [*GOOD, [4, 20, "r", "?"]]), small_schema)
    assert len(x) == len(y) == 3


def test_encode_table_names_its_source(small_schema: TableSchema) -> None:
    import pandas as pd

    df = pd.DataFrame({"age": ["1"], "color": ["r"]})
    with pytest.raises(DataError, match=r"^party-a: label column 'y' not found"):
        encode_table(df, small_schema, "party-a")


def test_parquet_missing_column_and_corrupt_file(tmp_path: Path, small_schema: TableSchema) -> None:
    import pandas as pd

    path = tmp_path / "t.pq"
    pd.DataFrame({"age": [1.0], "colour": ["r"], "y": ["no"]}).to_parquet(path)
    _fails(path, small_schema, "t.pq: column 'color' not found", "colour")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    _fails(broken, small_schema, "broken.parquet", "cannot read as Parquet")


def test_empty_categorical_cell_is_named(write_csv: CsvWriter, small_schema: TableSchema) -> None:
    rows = [*GOOD, [4, 20, "", "no"]]
    _fails(write_csv("t.csv", HEADER, rows), small_schema, "'color' row 4 is empty", 'list ""')
