"""The output side of a batch run: shard files, the run manifest, ``--resume`` and the final merge.

A run writes ``part-NNNNN.<fmt>`` files into a work folder, each followed by a ``part-NNNNN.done.json`` marker
with the shard's counts; a shard counts as finished only when both exist, so a crash mid-write is redone on
resume. ``manifest.json`` records what the run scores (input fingerprint, policy hash, stage, model, shard
size) and a resume with different settings is refused. When the output is a file, the parts are merged into it
at the end and the work folder (``<out>.shards``) is removed; when it is a folder, the parts are the output
and ``_SUCCESS`` marks it complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csrm_guard.batch.io import Format, Record, arrow, format_of, shard_rows, write_shard
from csrm_guard.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MANIFEST_VERSION", "ShardStats", "Target", "finish_shard"]

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
_MANIFEST = "manifest.json"
_SUCCESS = "_SUCCESS"


@dataclass(slots=True)
class ShardStats:
    """Counts for one written shard.

    Attributes:
        rows: Rows written.
        errors: Rows whose ``error`` column is set.
        outcomes: Rows per outcome (``allow``, ``block``, ...), errors excluded.
    """

    rows: int = 0
    errors: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, other: ShardStats) -> None:
        """Add another shard's counts to these."""
        self.rows += other.rows
        self.errors += other.errors
        self.outcomes.update(other.outcomes)

    def to_json(self) -> dict[str, Any]:
        """Return the counts as JSON-ready data."""
        return {"rows": self.rows, "errors": self.errors, "outcomes": dict(self.outcomes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardStats:
        """Read counts written by :meth:`to_json`."""
        return cls(
            int(data["rows"]),
            int(data["errors"]),
            Counter({str(k): int(v) for k, v in data["outcomes"].items()}),
        )


@dataclass(frozen=True, slots=True)
class Target:
    """Where a run writes: a single output file (parts merged at the end) or a folder of parts.

    Attributes:
        path: The output file or folder.
        format: Output format.
        folder: True when the parts themselves are the output.
    """

    path: Path
    format: Format
    folder: bool

    @classmethod
    def for_output(cls, out: str | os.PathLike[str], default_format: Format) -> Target:
        """Describe ``out``: a ``.jsonl`` or ``.parquet`` file, or else a folder in ``default_format``."""
        path = Path(out).expanduser().resolve()
        fmt = format_of(path)
        return cls(path, fmt, folder=False) if fmt is not None else cls(path, default_format, folder=True)

    @property
    def work(self) -> Path:
        """The folder holding the parts and the manifest."""
        return self.path if self.folder else self.path.with_name(self.path.name + ".shards")

    def part(self, shard: int) -> Path:
        """Return the file of one shard."""
        return self.work / f"part-{shard:05d}.{self.format}"

    def _marker(self, shard: int) -> Path:
        return self.work / f"part-{shard:05d}.done.json"

    def prepare(self, manifest: dict[str, Any], *, resume: bool, overwrite: bool) -> dict[int, ShardStats]:
        """Create the work folder for a run, or reopen it on resume.

        Args:
            manifest: What the run scores; compared with the stored one on resume.
            resume: Continue a previous run with the same manifest, skipping its finished shards.
            overwrite: Delete an earlier output or partial run first.

        Returns:
            The finished shards and their counts (empty unless resuming).

        Raises:
            FileExistsError: When output exists and neither ``resume`` nor ``overwrite`` is set.
            DataError: When resuming a run whose manifest differs, or the folder is not a csrm-guard output.
        """
        manifest = {"version": MANIFEST_VERSION, **manifest}
        self._check_existing(resume=resume, overwrite=overwrite)
        stored = self._read_manifest()
        if stored is not None and resume:
            _compare(stored, manifest, self.work)
            return self._finished()
        if stored is not None:
            self._clean()
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / _MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        return {}

    def _check_existing(self, *, resume: bool, overwrite: bool) -> None:
        if (
            self.folder
            and self.path.is_dir()
            and any(self.path.iterdir())
            and not (self.path / _MANIFEST).exists()
        ):
            raise DataError("output folder is not empty and holds no csrm-guard run", source=str(self.path))
        complete = (self.path / _SUCCESS).exists() if self.folder else self.path.exists()
        partial = (self.work / _MANIFEST).exists() and not complete
        if overwrite:
            if not self.folder and self.path.exists():
                self.path.unlink()
            return
        if complete:
            raise FileExistsError(f"{self.path} already exists; pass overwrite to score again")
        if partial and not resume:
            raise FileExistsError(
                f"{self.work} holds an unfinished run; pass resume to continue it or overwrite"
            )

    def _read_manifest(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.work / _MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"unreadable run manifest: {exc}", source=str(self.work / _MANIFEST)) from exc
        return data if isinstance(data, dict) else None

    def _finished(self) -> dict[int, ShardStats]:
        done = {}
        for marker in sorted(self.work.glob("part-*.done.json")):
            shard = int(marker.name.split("-")[1].split(".")[0])
            if self.part(shard).exists():
                done[shard] = ShardStats.from_json(json.loads(marker.read_text(encoding="utf-8")))
        return done

    def _clean(self) -> None:
        # Delete only what a run writes: a folder output may sit in a directory the user cares about.
        for name in self.work.iterdir():
            if name.name.startswith(("part-", ".part-")) or name.name in {_MANIFEST, _SUCCESS}:
                name.unlink()

    def mark_done(self, shard: int, stats: ShardStats) -> None:
        """Record that a shard's part file is complete."""
        self._marker(shard).write_text(json.dumps(stats.to_json()), encoding="utf-8")

    def finalize(self, shards: int, schema: pa.Schema | None) -> None:
        """Finish the output: merge the parts into the output file, or mark the output folder complete.

        Args:
            shards: Number of shards in the run.
            schema: Parquet output schema (``None`` for JSONL).
        """
        if self.folder:
            (self.work / _SUCCESS).write_text("", encoding="utf-8")
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        if self.format == "jsonl":
            with tmp.open("wb") as out:
                for shard in range(shards):
                    with self.part(shard).open("rb") as part:
                        shutil.copyfileobj(part, out)
        else:
            assert schema is not None
            arrow().merge([self.part(shard) for shard in range(shards)], tmp, schema)
        tmp.replace(self.path)
        shutil.rmtree(self.work)
        logger.info("wrote %s from %d shards", self.path, shards)


def finish_shard(
    target: Target,
    shard: int,
    records: Sequence[Record],
    scores: Mapping[int, Mapping[str, Any]],
    schema: pa.Schema | None,
) -> ShardStats:
    """Join a shard's records with their scores, write its part file and mark it finished.

    Args:
        target: The run's output.
        shard: The shard number.
        records: Every input row of the shard, in order.
        scores: Score columns by input row; must cover every record.
        schema: The Parquet input schema, or ``None``.

    Returns:
        The shard's counts.
    """
    rows = list(shard_rows(records, scores))
    stats = ShardStats(rows=len(rows))
    for row in rows:
        if row["error"] is not None:
            stats.errors += 1
        else:
            stats.outcomes[row["outcome"]] += 1
    write_shard(target.part(shard), rows, target.format, schema)
    target.mark_done(shard, stats)
    return stats


def _compare(stored: dict[str, Any], wanted: dict[str, Any], where: Path) -> None:
    differ = sorted(key for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key))
    if differ:
        detail = "; ".join(f"{key}: was {stored.get(key)!r}, now {wanted.get(key)!r}" for key in differ)
        raise DataError(
            f"cannot resume: the run was started with different settings ({detail})", source=str(where)
        )
