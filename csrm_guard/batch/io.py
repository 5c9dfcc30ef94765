"""Reading batch inputs in chunks and writing scored output in shards (JSONL and Parquet).

An input file is planned once into *chunks* (the unit one engine call scores) grouped into *shards* (the unit
that is written, and skipped on ``--resume``). A chunk is a small picklable description (row range, byte
offset), so a Ray actor can read its own rows from a shared file instead of receiving them through the driver.

Rows are never dropped: a line that is not JSON, or not an object, becomes a :class:`Record` with
``data=None``, its raw text and a parse error, and is written out with that error.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from csrm_guard.errors import DataError

__all__ = [
    "INPUT_ROW",
    "SCORE_COLUMNS",
    "SCORE_SCHEMA",
    "Chunk",
    "Format",
    "Plan",
    "Record",
    "Source",
    "format_of",
    "input_schema",
    "open_source",
    "output_schema",
    "plan_chunks",
    "read_chunk",
    "shard_rows",
    "write_shard",
]

logger = logging.getLogger(__name__)

Format: TypeAlias = Literal["jsonl", "parquet"]
INPUT_ROW = "input_row"
"""Output column holding the 0-based position of the row in the input (blank JSONL lines are not rows)."""
SCORE_COLUMNS = (
    "outcome",
    "violation_probability",
    "reward",
    "violations",
    "policy_hash",
    "model_id",
    "error",
)
"""The columns scoring adds to every row, in output order."""

_SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SCORE_SCHEMA = pa.schema(
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
"""Arrow schema of the scores of a batch of rows (``input_row`` plus :data:`SCORE_COLUMNS`)."""
_MESSAGES_TYPE = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))


def format_of(path: str | os.PathLike[str]) -> Format | None:
    """Return the format a file suffix names (``.jsonl``, ``.ndjson``, ``.json``, ``.parquet``), else None."""
    return _SUFFIXES.get(Path(path).suffix.lower())


@dataclass(frozen=True, slots=True)
class Source:
    """A readable input file, identified well enough to notice when it changes between runs.

    Attributes:
        path: Absolute path of the file.
        format: ``jsonl`` or ``parquet``.
        size: Size in bytes when planned.
        mtime_ns: Modification time when planned.
    """

    path: str
    format: Format
    size: int
    mtime_ns: int

    def fingerprint(self) -> dict[str, Any]:
        """Return what identifies this input in a run manifest."""
        return {"path": self.path, "format": self.format, "size": self.size, "mtime_ns": self.mtime_ns}


@dataclass(frozen=True, slots=True)
class Chunk:
    """A contiguous run of input rows, scored by one engine call.

    Attributes:
        shard: The shard the chunk belongs to.
        start: Global index of its first row.
        stop: Global index one past its last row.
        offset: Byte offset of its first line (JSONL); 0 for Parquet.
        line: 1-based line number of its first line (JSONL); for Parquet, ``start + 1``.
    """

    shard: int
    start: int
    stop: int
    offset: int = 0
    line: int = 1


@dataclass(frozen=True, slots=True)
class Plan:
    """How an input splits into shards and chunks.

    Attributes:
        source: The input.
        rows: Total number of rows.
        shard_size: Rows per shard (the last may be shorter).
        shards: The chunks of every shard, in input order.
    """

    source: Source
    rows: int
    shard_size: int
    shards: tuple[tuple[Chunk, ...], ...]

    def shard_of(self, row: int) -> int:
        """Return the shard holding a row."""
        return row // self.shard_size

    def shard_rows(self, shard: int) -> int:
        """Return the number of rows in one shard."""
        return min(self.shard_size, self.rows - shard * self.shard_size)


@dataclass(frozen=True, slots=True)
class Record:
    """One input row as read: the parsed object, or the raw text and why it could not be parsed.

    Attributes:
        row: Global 0-based row index.
        where: Where the row is in the file, for error messages: ``line 12`` (JSONL) or ``row 12`` (Parquet).
        data: The row as a mapping, or ``None`` when it is not a JSON object.
        raw: The raw line when ``data`` is ``None``.
        error: Why the row could not be parsed.
    """

    row: int
    where: str
    data: dict[str, Any] | None
    raw: str | None = None
    error: str | None = None


def open_source(path: str | os.PathLike[str]) -> Source:
    """Describe an input file, checking that it exists and has a known format.

    Raises:
        DataError: When the file is missing or its suffix names no supported format.
    """
    file = Path(path).expanduser().resolve()
    fmt = format_of(file)
    if fmt is None:
        raise DataError(f"unknown input format {file.suffix!r}; use .jsonl or .parquet", source=str(path))
    try:
        stat = file.stat()
    except OSError as exc:
        raise DataError(f"cannot read input: {exc.strerror}", source=str(path)) from exc
    if not file.is_file():
        raise DataError("input must be a file", source=str(path))
    return Source(str(file), fmt, stat.st_size, stat.st_mtime_ns)


def plan_chunks(source: Source, *, chunk_size: int, shard_size: int) -> Plan:
    """Split an input into shards of ``shard_size`` rows and chunks of at most ``chunk_size`` rows.

    JSONL needs one pass over the file to find line offsets; Parquet reads only its footer.

    Raises:
        DataError: When the file cannot be read, or a Parquet file lacks required columns.
    """
    if chunk_size < 1 or shard_size < 1:
        raise ValueError("chunk_size and shard_size must be positive")
    starts = _jsonl_starts(source) if source.format == "jsonl" else None
    rows = len(starts) if starts is not None else _parquet_rows(source)
    shards = []
    for shard_start in range(0, rows, shard_size):
        shard_stop = min(shard_start + shard_size, rows)
        chunks = []
        for start in range(shard_start, shard_stop, chunk_size):
            offset, line = starts[start] if starts is not None else (0, start + 1)
            stop = min(start + chunk_size, shard_stop)
            chunks.append(Chunk(shard_start // shard_size, start, stop, offset, line))
        shards.append(tuple(chunks))
    return Plan(source, rows, shard_size, tuple(shards))


def _jsonl_starts(source: Source) -> list[tuple[int, int]]:
    # One (byte offset, line number) per non-blank line; blank lines are not rows.
    starts = []
    offset = 0
    try:
        with Path(source.path).open("rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    starts.append((offset, line_no))
                offset += len(line)
    except OSError as exc:
        raise DataError(f"cannot read input: {exc}", source=source.path) from exc
    return starts


def _parquet_rows(source: Source) -> int:
    try:
        metadata = pq.read_metadata(source.path)
        names = set(pq.read_schema(source.path).names)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read Parquet input: {exc}", source=source.path) from exc
    if "id" not in names:
        raise DataError(f"Parquet input has no 'id' column (columns: {sorted(names)})", source=source.path)
    return int(metadata.num_rows)


def input_schema(source: Source) -> pa.Schema | None:
    """Return a Parquet input's Arrow schema (kept in Parquet output), or ``None`` for JSONL."""
    return pq.read_schema(source.path) if source.format == "parquet" else None


def read_chunk(source: Source, chunk: Chunk) -> list[Record]:
    """Read the rows of one chunk.

    Raises:
        DataError: When the file cannot be read or changed since it was planned.
    """
    if source.format == "jsonl":
        return _read_jsonl(source, chunk)
    return _read_parquet(source, chunk)


def _read_jsonl(source: Source, chunk: Chunk) -> list[Record]:
    records: list[Record] = []
    try:
        with Path(source.path).open("rb") as handle:
            handle.seek(chunk.offset)
            line_no = chunk.line
            while len(records) < chunk.stop - chunk.start:
                line = handle.readline()
                if not line:
                    raise DataError(
                        "input ended early; did it change since the run started?", source=source.path
                    )
                if line.strip():
                    records.append(_parse_line(line, chunk.start + len(records), line_no))
                line_no += 1
    except OSError as exc:
        raise DataError(f"cannot read input: {exc}", source=source.path) from exc
    return records


def _parse_line(line: bytes, row: int, line_no: int) -> Record:
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    where = f"line {line_no}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Record(row, where, None, text, f"invalid JSON: {exc.msg} (column {exc.colno})")
    if not isinstance(data, dict):
        return Record(row, where, None, text, f"expected a JSON object, got {type(data).__name__}")
    return Record(row, where, data)


def _read_parquet(source: Source, chunk: Chunk) -> list[Record]:
    rows: list[dict[str, Any]] = []
    first = 0
    metadata = _parquet_groups(source.path, source.mtime_ns)
    for group, count in enumerate(metadata):
        if first < chunk.stop and chunk.start < first + count:
            table = _parquet_group(source.path, source.mtime_ns, group)
            lo, hi = max(chunk.start - first, 0), min(chunk.stop - first, count)
            rows.extend(table.slice(lo, hi - lo).to_pylist())
        first += count
    if len(rows) != chunk.stop - chunk.start:
        raise DataError("input has fewer rows than planned; did it change?", source=source.path)
    return [Record(chunk.start + i, f"row {chunk.start + i + 1}", row) for i, row in enumerate(rows)]


@functools.lru_cache(maxsize=8)
def _parquet_groups(path: str, mtime_ns: int) -> tuple[int, ...]:
    del mtime_ns  # part of the cache key only
    metadata = pq.read_metadata(path)
    return tuple(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))


@functools.lru_cache(maxsize=2)
def _parquet_group(path: str, mtime_ns: int, group: int) -> pa.Table:
    # Consecutive chunks usually share a row group: keep the last ones instead of re-reading them per chunk.
    del mtime_ns
    try:
        return pq.ParquetFile(path).read_row_group(group)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read row group {group}: {exc}", source=path) from exc


def shard_rows(
    records: Sequence[Record], scores: Mapping[int, Mapping[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Join input records with their scores into output rows (input fields, ``input_row``, score columns).

    Score columns replace input fields of the same name, so re-scoring a scored file works.
    """
    for record in records:
        row: dict[str, Any] = (
            dict(record.data) if record.data is not None else {"id": None, "raw": record.raw}
        )
        for name in SCORE_COLUMNS:
            row.pop(name, None)
        row[INPUT_ROW] = record.row
        row.update(scores[record.row])
        yield row


def write_shard(path: Path, rows: Sequence[Mapping[str, Any]], fmt: Format, schema: pa.Schema | None) -> None:
    """Write one shard atomically (a temporary file renamed into place).

    Args:
        path: The shard file.
        rows: Output rows from :func:`shard_rows`.
        fmt: The output format.
        schema: For Parquet, the input's schema (its columns are kept with their types); ``None`` for
            JSONL input.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False, default=str))
                handle.write("\n")
    else:
        pq.write_table(_to_table(rows, schema), tmp)
    tmp.replace(path)


def _to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema | None) -> pa.Table:
    return pa.Table.from_pylist([_conform(row, schema) for row in rows], schema=output_schema(schema))


def output_schema(input_schema: pa.Schema | None) -> pa.Schema:
    """Return the Parquet output schema: the input columns (id, messages, response for JSONL), then scores."""
    if input_schema is None:
        base = [
            pa.field("id", pa.string()),
            pa.field("messages", _MESSAGES_TYPE),
            pa.field("response", pa.string()),
        ]
    else:
        base = [field for field in input_schema if field.name not in SCORE_SCHEMA.names]
    return pa.schema(base + list(SCORE_SCHEMA))


def _conform(row: Mapping[str, Any], schema: pa.Schema | None) -> dict[str, Any]:
    if schema is not None:
        return dict(row)  # read from Parquet with this schema: every value fits
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
