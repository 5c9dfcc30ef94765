"""Reading batch inputs in chunks and writing scored output in shards (JSONL and Parquet).

An input file is planned once into *chunks* (the unit one engine call scores) grouped into *shards* (the unit
that is written, and skipped on ``--resume``). A chunk is a small picklable description (row range, byte
offset), so a Ray actor can read its own rows from a shared file instead of receiving them through the driver.

Rows are never dropped: a line that is not JSON, or not an object, becomes a :class:`Record` with
``data=None``, its raw text and a parse error, and is written out with that error.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from csrm_guard._compat import require
from csrm_guard.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "INPUT_ROW",
    "SCORE_COLUMNS",
    "Chunk",
    "Format",
    "Plan",
    "Record",
    "Source",
    "arrow",
    "format_of",
    "input_schema",
    "open_source",
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


def arrow() -> ModuleType:
    """Import the Arrow/Parquet helpers, or say which extra installs pyarrow.

    Raises:
        MissingDependencyError: When pyarrow is not installed.
    """
    return require("csrm_guard.batch._parquet", extra="parquet")


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
    if source.format == "jsonl":
        rows, starts = _jsonl_chunk_starts(source, chunk_size, shard_size)
    else:
        rows, starts = int(arrow().row_count(source.path)), {}
    shards = []
    for shard_start in range(0, rows, shard_size):
        shard_stop = min(shard_start + shard_size, rows)
        chunks = []
        for start in range(shard_start, shard_stop, chunk_size):
            offset, line = starts.get(start, (0, start + 1))
            stop = min(start + chunk_size, shard_stop)
            chunks.append(Chunk(shard_start // shard_size, start, stop, offset, line))
        shards.append(tuple(chunks))
    return Plan(source, rows, shard_size, tuple(shards))


def _jsonl_chunk_starts(
    source: Source, chunk_size: int, shard_size: int
) -> tuple[int, dict[int, tuple[int, int]]]:
    # Count the rows (blank lines are not rows) and keep (byte offset, line number) only where a chunk starts,
    # so planning a 50-million-row file holds one entry per chunk, not per row.
    starts: dict[int, tuple[int, int]] = {}
    rows = offset = 0
    try:
        with Path(source.path).open("rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    if rows % shard_size % chunk_size == 0:
                        starts[rows] = (offset, line_no)
                    rows += 1
                offset += len(line)
    except OSError as exc:
        raise DataError(f"cannot read input: {exc}", source=source.path) from exc
    return rows, starts


def input_schema(source: Source) -> pa.Schema | None:
    """Return a Parquet input's Arrow schema (kept in Parquet output), or ``None`` for JSONL."""
    return arrow().input_schema(source.path) if source.format == "parquet" else None


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
    rows = arrow().read_rows(source.path, source.mtime_ns, chunk.start, chunk.stop)
    if len(rows) != chunk.stop - chunk.start:
        raise DataError("input has fewer rows than planned; did it change?", source=source.path)
    return [Record(chunk.start + i, f"row {chunk.start + i + 1}", row) for i, row in enumerate(rows)]


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
        arrow().write_rows(tmp, rows, schema)
    tmp.replace(path)
