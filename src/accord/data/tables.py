"""Load a CSV or Parquet table and encode it by its declared schema.

Every cell is read as text (CSV) or as stored (Parquet), with pandas' own NA guessing off:
whether "-9", "?", "0" or an empty cell is missing is decided by the schema's
``missing_values``, never by the reader (FLamby keeps ``chol = 0`` as a value).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from accord.data.encode import check_columns, encode_table
from accord.data.schema import TableSchema
from accord.errors import DataError

if TYPE_CHECKING:
    import pandas

CSV_SUFFIXES = (".csv", ".data", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES
_DELIMITERS = ",;\t|"


def table_format(path: Path) -> str:
    """``"csv"`` or ``"parquet"`` by the file's suffix; DataError for any other suffix."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise DataError(
        f"{path}: unknown table suffix '{path.suffix}'; use one of {', '.join(TABLE_SUFFIXES)}"
    )


def _sniff_delimiter(path: Path, head: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(head, delimiters=_DELIMITERS).delimiter
    except csv.Error:  # one column, or nothing to go on: comma is the default
        return ","


def _read_csv(path: Path) -> pandas.DataFrame:
    import pandas as pd

    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            head = "".join(line for _, line in zip(range(20), handle, strict=False))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from exc
    if not head.strip():
        raise DataError(f"{path}: the file is empty; a header line and data rows are required")
    delimiter = _sniff_delimiter(path, head)
    try:
        df = pd.read_csv(
            path,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot parse as CSV ({detail}); check the delimiter") from exc
    _require_header(path, [str(c) for c in df.columns])
    return df


def _require_header(path: Path, names: list[str]) -> None:
    """Refuse a first line made of numbers: it is a data row, and the header is missing."""

    def is_number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    if names and all(is_number(n) for n in names):
        raise DataError(
            f"{path}: the first line ({', '.join(names[:5])}...) is data, not column names; "
            "add a header line"
        )


def _read_parquet(path: Path, schema: TableSchema) -> pandas.DataFrame:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = [str(n) for n in pq.read_schema(path).names]
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read as Parquet ({exc}); check the file") from exc
    # Check against the full header before reading only the declared columns, so that a
    # wide file costs no more than its declared part.
    check_columns(names, schema, path.name)
    wanted = [c.name for c in schema.columns] + [schema.label.column]
    try:
        df = pq.read_table(path, columns=wanted).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read as Parquet ({exc}); check the file") from exc
    assert isinstance(df, pd.DataFrame)
    return df


def load_table(
    path: Path, schema: TableSchema
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Read a CSV (.csv .data .txt .tsv, header line required) or Parquet (.parquet .pq) file.

    Returns X float32 (n, F) and y int64 (n,), encoded by ``schema``.
    """
    path = Path(path)
    kind = table_format(path)
    if not path.is_file():
        raise DataError(f"{path}: not found; check the path in the job file's [data] section")
    df = _read_csv(path) if kind == "csv" else _read_parquet(path, schema)
    return encode_table(df, schema, path.name)
