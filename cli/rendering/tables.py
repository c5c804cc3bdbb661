"""Flat tables on stdout: CSV and Parquet writers for row dicts with fixed columns.

Rows stream: CSV is written row by row, Parquet a row group at a time, so a table is never
held whole. Parquet needs pyarrow, an optional extra (``pip install 'runjournal[parquet]'``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import IO, Any

import orjson

PARQUET_BATCH = 8192
"""Rows per Parquet row group."""


def csv_cell(value: Any) -> str:
    """One CSV cell: empty for null, ``true``/``false``, JSON text for objects and lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], out: IO[str]) -> None:
    """Write ``rows`` as CSV (RFC 4180 quoting, ``\\n`` line ends) with a header line of ``columns``."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row[name]) for name in columns])
    out.flush()


class ParquetUnavailable(RuntimeError):
    """pyarrow is not installed."""


def write_parquet(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]], out: IO[bytes]) -> None:
    """Write ``rows`` as Parquet; ``columns`` are ``(name, type)`` with the types of the event table.

    ``json`` columns are stored as JSON text, ``timestamp`` columns as UTC microseconds.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetUnavailable("Parquet output needs pyarrow: pip install 'runjournal[parquet]'") from None
    arrow_types = {"string": pa.string(), "integer": pa.int64(), "boolean": pa.bool_(),
                   "timestamp": pa.timestamp("us", tz="UTC"), "json": pa.string()}
    schema = pa.schema([(name, arrow_types[kind]) for name, kind in columns])
    with pq.ParquetWriter(out, schema) as writer:
        for batch in _batches(rows, PARQUET_BATCH):
            arrays = {name: [_parquet_value(row[name], kind) for row in batch] for name, kind in columns}
            writer.write_table(pa.table(arrays, schema=schema))


def _parquet_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "json":
        return orjson.dumps(value).decode()
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    return value


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch
