"""Split a review corpus by stage, so that each row is scored at its own stage by a one-stage batch run.

A review corpus row (:mod:`csrm_guard.review.corpus`) is judged at the ``output`` stage when it has a
``response`` and at the ``input`` stage otherwise, unless its ``stage`` key says so explicitly. A batch run
scores one stage, so a corpus whose rows disagree is written out as two inputs, one per stage, in a work
folder; a corpus whose rows all share a stage is scored as it is. Rows whose stage cannot be known (not JSON,
not an object, a bad ``stage`` or ``response``) are not scored: they are returned as errors with their line.
"""

from __future__ import annotations

import json
import logging
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csrm_guard._types import Stage
from csrm_guard.batch.io import open_source
from csrm_guard.errors import DataError

__all__ = ["StagedCorpus", "StagedInput", "split_by_stage"]

logger = logging.getLogger(__name__)

_STAGES: tuple[Stage, ...] = ("input", "output")
_SPLIT_MANIFEST = "split.json"


@dataclass(frozen=True, slots=True)
class StagedInput:
    """The rows of one stage, as a batch input.

    Attributes:
        stage: The stage its rows are judged at.
        path: The JSONL file to score (the corpus itself when every row has this stage).
        lines: The corpus line number of each of its rows, in order.
    """

    stage: Stage
    path: Path
    lines: array[int]


@dataclass(frozen=True, slots=True)
class StagedCorpus:
    """A corpus split by stage.

    Attributes:
        rows: Rows in the corpus (blank lines are not rows).
        inputs: One batch input per stage that has rows.
        errors: ``(line, id or None, why)`` for rows whose stage cannot be known.
    """

    rows: int
    inputs: tuple[StagedInput, ...]
    errors: tuple[tuple[int, str | None, str], ...] = field(default=())


def split_by_stage(corpus: Path, work_dir: Path) -> StagedCorpus:
    """Find each corpus row's stage; write one input per stage under ``work_dir`` when the rows disagree.

    The per-stage files are kept with a note of the corpus they came from and reused while the corpus is
    unchanged, so a resumed run finds the same inputs.

    Args:
        corpus: The JSONL corpus.
        work_dir: Where per-stage inputs are written when needed.

    Returns:
        The rows' stages and the inputs to score.

    Raises:
        DataError: When the corpus cannot be read or is not JSONL.
    """
    source = open_source(corpus)
    if source.format != "jsonl":
        raise DataError("a diff corpus must be a JSONL file", source=str(corpus))
    lines: dict[Stage, array[int]] = {stage: array("q") for stage in _STAGES}
    errors: list[tuple[int, str | None, str]] = []
    rows = 0
    try:
        with Path(source.path).open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                rows += 1
                stage, row_id, problem = _classify(raw)
                if stage is None:
                    errors.append((number, row_id, problem))
                else:
                    lines[stage].append(number)
    except OSError as exc:
        raise DataError(f"cannot read the corpus: {exc}", source=str(corpus)) from exc
    present = [stage for stage in _STAGES if lines[stage]]
    if len(present) <= 1 and not errors:
        inputs = tuple(StagedInput(stage, Path(source.path), lines[stage]) for stage in present)
        return StagedCorpus(rows, inputs)
    folder = work_dir / "corpus"
    paths = {stage: folder / f"{stage}.jsonl" for stage in present}
    if _stale(folder, source.fingerprint()) or not all(path.is_file() for path in paths.values()):
        _write(Path(source.path), folder, paths, lines, source.fingerprint())
    logger.info("corpus split by stage: %s", {stage: len(lines[stage]) for stage in present})
    inputs = tuple(StagedInput(stage, paths[stage], lines[stage]) for stage in present)
    return StagedCorpus(rows, inputs, tuple(errors))


def _classify(raw: bytes) -> tuple[Stage | None, str | None, str]:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, None, f"not valid JSON: {exc}"
    if not isinstance(data, dict):
        return None, None, f"expected a JSON object, got {type(data).__name__}"
    raw_id = data.get("id")
    row_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    response = data.get("response")
    if response is not None and not isinstance(response, str):
        return None, row_id, "'response' must be a string"
    stage = data.get("stage", "output" if response is not None else "input")
    if stage not in _STAGES or (stage == "output" and response is None):
        return None, row_id, "'stage' must be 'input', or 'output' with a 'response'"
    return stage, row_id, ""


def _stale(folder: Path, fingerprint: dict[str, Any]) -> bool:
    try:
        recorded = json.loads((folder / _SPLIT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return bool(recorded != fingerprint)


def _write(
    corpus: Path,
    folder: Path,
    paths: dict[Stage, Path],
    lines: dict[Stage, array[int]],
    fingerprint: dict[str, Any],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _SPLIT_MANIFEST).unlink(missing_ok=True)
    handles = {stage: path.with_name(f".{path.name}.tmp").open("wb") for stage, path in paths.items()}
    next_row = dict.fromkeys(paths, 0)  # walk the sorted line lists alongside the file: no per-row map
    try:
        with corpus.open("rb") as source:
            for number, raw in enumerate(source, start=1):
                for stage, position in next_row.items():
                    if position < len(lines[stage]) and lines[stage][position] == number:
                        handles[stage].write(raw if raw.endswith(b"\n") else raw + b"\n")
                        next_row[stage] = position + 1
                        break
    finally:
        for handle in handles.values():
            handle.close()
    for path in paths.values():
        path.with_name(f".{path.name}.tmp").replace(path)
    (folder / _SPLIT_MANIFEST).write_text(json.dumps(fingerprint), encoding="utf-8")
