"""Everything batch scoring does with Arrow and Parquet, kept apart so JSONL runs never import pyarrow.

Loaded through :func:`csrm_guard.batch.io.arrow`, which names the extra to install (``parquet``, or ``ray``,
which includes it) when pyarrow is missing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from csrm_guard.errors import DataError

__all__ = [
    "INPUT_ROW",
    "input_schema",
    "merge",
    "output_schema",
    "read_rows",
    "row_count",
    "score_schema",
    "scores_table",
    "write_rows",
]

INPUT_ROW = "input_row"  # the same name as csrm_guard.batch.io.INPUT_ROW (kept here to avoid an import cycle)
_ARROW_ERRORS = (OSError, pa.ArrowException)


@functools.cache
def score_schema() -> pa.Schema:
    """Arrow schema of a batch of scores: ``input_row`` and the score columns."""
    return pa.schema(
        [
            pa.field(INPUT_ROW, pa.int64()),
            pa.field("outcome", pa.string()),
            pa.field("violation_probability", pa.float64()),
            pa.field("reward", pa.float64()),
            pa.field("violations", pa.list_(pa.string())),
            pa.field("policy_hash", pa.string()),
            pa.field("model_id", pa.string()),
            pa.field("error", pa.string()),
        ]
    )


def scores_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Pack score rows into a table (what a Ray actor returns)."""
    return pa.Table.from_pylist(list(rows), schema=score_schema())


def row_count(path: str) -> int:
    """Return the rows of a Parquet input, checking it can be read and has an ``id`` column.

    Raises:
        DataError: When the file cannot be read or has no ``id`` column.
    """
    try:
        metadata = pq.read_metadata(path)
        names = set(pq.read_schema(path).names)
    except _ARROW_ERRORS as exc:
        raise DataError(f"cannot read Parquet input: {exc}", source=path) from exc
    if "id" not in names:
        raise DataError(f"Parquet input has no 'id' column (columns: {sorted(names)})", source=path)
    return int(metadata.num_rows)


def input_schema(path: str) -> pa.Schema:
    """Return a Parquet input's schema (its columns are kept, with their types, in Parquet output)."""
    return pq.read_schema(path)


def read_rows(path: str, mtime_ns: int, start: int, stop: int) -> list[dict[str, Any]]:
    """Read rows ``[start, stop)`` of a Parquet file as dicts.

    Raises:
        DataError: When the file cannot be read.
    """
    rows: list[dict[str, Any]] = []
    first = 0
    for group, count in enumerate(_row_groups(path, mtime_ns)):
        if first < stop and start < first + count:
            table = _row_group(path, mtime_ns, group)
            lo, hi = max(start - first, 0), min(stop - first, count)
            rows.extend(table.slice(lo, hi - lo).to_pylist())
        first += count
    return rows


@functools.lru_cache(maxsize=8)
def _row_groups(path: str, mtime_ns: int) -> tuple[int, ...]:
    del mtime_ns  # part of the cache key only
    try:
        metadata = pq.read_metadata(path)
    except _ARROW_ERRORS as exc:
        raise DataError(f"cannot read Parquet input: {exc}", source=path) from exc
    return tuple(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))


@functools.lru_cache(maxsize=2)
def _row_group(path: str, mtime_ns: int, group: int) -> pa.Table:
    # Consecutive chunks usually share a row group: keep the last ones instead of re-reading them per chunk.
    del mtime_ns
    try:
        return pq.ParquetFile(path).read_row_group(group)
    except _ARROW_ERRORS as exc:
        raise DataError(f"cannot read row group {group}: {exc}", source=path) from exc


def output_schema(source_schema: pa.Schema | None) -> pa.Schema:
    """Return the Parquet output schema: the input's columns (id, messages, response for JSONL), then scores."""
    scores = score_schema()
    if source_schema is None:
        messages = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))
        base = [
            pa.field("id", pa.string()),
            pa.field("messages", messages),
            pa.field("response", pa.string()),
        ]
    else:
        base = [field for field in source_schema if field.name not in scores.names]
    return pa.schema(base + list(scores))


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]], source_schema: pa.Schema | None) -> None:
    """Write output rows to a Parquet file.

    Args:
        path: The file to write.
        rows: Output rows (input fields, ``input_row``, score columns).
        source_schema: The Parquet input's schema, or ``None`` for JSONL input.
    """
    conformed = [_conform(row) for row in rows] if source_schema is None else list(rows)
    pq.write_table(pa.Table.from_pylist(conformed, schema=output_schema(source_schema)), path)


def merge(parts: Sequence[Path], out: Path, schema: pa.Schema) -> None:
    """Concatenate Parquet part files into one file."""
    with pq.ParquetWriter(out, schema) as writer:
        for part in parts:
            writer.write_table(pq.read_table(part, schema=schema))


def _conform(row: Mapping[str, Any]) -> dict[str, Any]:
    # JSONL -> Parquet: ids become strings, and a cell that does not fit its column is left empty (the row's
    # input_row points at the original, and its error column says what was wrong with it).
    out = dict(row)
    out["id"] = None if row.get("id") is None else str(row["id"])
    out["messages"] = row.get("messages") if _fits_messages(row.get("messages")) else None
    out["response"] = row.get("response") if isinstance(row.get("response"), str) else None
    return out


def _fits_messages(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict)
        and set(m) <= {"role", "content"}
        and all(isinstance(v, str | None) for v in m.values())
        for m in value
    )
