"""Policy impact over a large corpus: score it under two policy versions with :func:`score_dataset`, then join.

``csrm-guard diff --engine local|ray`` uses this for its corpus instead of replaying it one conversation at a
time: each version scores the corpus in batch (locally or on a Ray cluster), and the two outputs, which have
one row per input row in input order, are joined row by row. A row whose outcome differs is a *flip*; a row
that keeps its outcome while its violated clauses change is a *shift*; a row that either version could not
score is an *error*, never dropped.

Each row is judged at its own stage, as the review corpus defines it (``output`` with a ``response``, else
``input``, or its explicit ``stage``): rows of the two stages are scored as two batch inputs.

.. versionadded:: 0.1
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csrm_guard._types import Stage
from csrm_guard.batch._stages import StagedInput, split_by_stage
from csrm_guard.batch.core import ScorerFactory
from csrm_guard.batch.run import Engine, score_dataset
from csrm_guard.errors import DataError
from csrm_guard.policy.schema import Policy

__all__ = ["CorpusImpact", "RowChange", "RowError", "RowScore", "corpus_impact", "join_outputs"]

logger = logging.getLogger(__name__)

_SUCCESS = "_SUCCESS"  # the marker of a finished folder output (csrm_guard.batch.shards)
_WHERE = re.compile(r"^(?:line|row) \d+: ")


@dataclass(frozen=True, slots=True)
class RowScore:
    """One version's decision for a row, as the batch output records it.

    Attributes:
        outcome: ``allow``, or the action taken on a violation.
        violation_probability: The policy-level violation probability.
        violations: Ids of the clauses at or over the threshold, most probable first.
    """

    outcome: str
    violation_probability: float
    violations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RowChange:
    """A corpus row decided differently by the two versions.

    Attributes:
        id: The row's ``id``, as a string.
        line: Its line in the corpus.
        stage: The stage it was judged at.
        messages: Its conversation, ``{"role", "content"}`` mappings.
        response: The judged response (output stage).
        old: The old version's decision.
        new: The new version's decision.
    """

    id: str
    line: int
    stage: Stage
    messages: tuple[Mapping[str, str], ...]
    response: str | None
    old: RowScore
    new: RowScore

    @property
    def entered(self) -> tuple[str, ...]:
        """Clauses violated under the new version only."""
        return tuple(sorted(set(self.new.violations) - set(self.old.violations)))

    @property
    def left(self) -> tuple[str, ...]:
        """Clauses violated under the old version only."""
        return tuple(sorted(set(self.old.violations) - set(self.new.violations)))


@dataclass(frozen=True, slots=True)
class RowError:
    """A corpus row one of the versions could not score.

    Attributes:
        id: The row's ``id`` as a string, ``None`` when it has none.
        line: Its line in the corpus.
        error: Why (prefixed with the version when only one of them failed).
    """

    id: str | None
    line: int
    error: str


@dataclass(frozen=True, slots=True)
class CorpusImpact:
    """What a policy change does to a corpus.

    Attributes:
        rows: Rows in the corpus (0 when nothing was scored).
        scored: Whether the corpus was scored; ``False`` when both versions enforce the same thing.
        flips: Rows whose outcome differs, in corpus order.
        shifts: Rows whose outcome holds while their violated clauses change, in corpus order.
        errors: Rows that could not be scored by one version or both, in corpus order.
    """

    rows: int
    scored: bool
    flips: tuple[RowChange, ...] = ()
    shifts: tuple[RowChange, ...] = ()
    errors: tuple[RowError, ...] = ()

    @property
    def checked(self) -> int:
        """Rows decided by both versions."""
        return self.rows - len(self.errors) if self.scored else 0


def corpus_impact(
    corpus: str | os.PathLike[str],
    old_policy: Policy,
    new_policy: Policy,
    *,
    work_dir: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    engine: Engine = "local",
    scorer_factory: ScorerFactory | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> CorpusImpact:
    """Score a JSONL corpus under two policy versions and return the rows whose decision changes.

    Args:
        corpus: A review corpus (``{"id", "messages", "response"?, "stage"?}`` per line). On a multi-node Ray
            cluster, the corpus and ``work_dir`` must be readable by every node.
        old_policy: The version before.
        new_policy: The version after.
        work_dir: Where the batch outputs (and per-stage inputs, for a mixed-stage corpus) go; kept
            afterwards. ``None`` uses a temporary folder removed at the end.
        model: The model bundle folder; ``None`` uses the default bundle.
        engine: ``local`` or ``ray``.
        scorer_factory: Builds the scorer in each worker instead of ``model`` (tests).
        resume: Reuse the shards an earlier run with the same settings finished in ``work_dir``.
        progress: Called as ``progress(rows_done, rows_total)`` by each batch run.
        **options: Passed on to :func:`~csrm_guard.batch.score_dataset` (``address``, ``num_actors``,
            ``cpus_per_actor``, ``batch_size``, ``shard_size``, ...).

    Returns:
        The flips, shifts and errors.

    Raises:
        DataError: The corpus cannot be read, or the two outputs do not line up row by row.
        BundleError: The model bundle is missing, altered or incompatible.
        MissingDependencyError: ``engine="ray"`` without the ``ray`` extra.
        ScorerError: The Ray job could not score every row.

    .. versionadded:: 0.1
    """
    if old_policy.hash == new_policy.hash:  # identical enforcement: nothing can flip, nothing to score
        return CorpusImpact(rows=0, scored=False)
    with _folder(work_dir) as folder:
        staged = split_by_stage(Path(corpus), folder)
        errors = [RowError(row_id, line, problem) for line, row_id, problem in staged.errors]
        flips: list[RowChange] = []
        shifts: list[RowChange] = []
        settings = {"model": model, "engine": engine, "scorer_factory": scorer_factory, "progress": progress}
        for staged_input in staged.inputs:
            outputs = [
                _score(staged_input, policy, folder, resume=resume, **settings, **options)
                for policy in (old_policy, new_policy)
            ]
            found = join_outputs(outputs[0], outputs[1], staged_input)
            flips += found.flips
            shifts += found.shifts
            errors += found.errors
    return CorpusImpact(
        rows=staged.rows,
        scored=True,
        flips=tuple(sorted(flips, key=_line)),
        shifts=tuple(sorted(shifts, key=_line)),
        errors=tuple(sorted(errors, key=_line)),
    )


def _line(row: RowChange | RowError) -> int:
    return row.line


@contextmanager
def _folder(work_dir: str | os.PathLike[str] | None) -> Iterator[Path]:
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="csrm-guard-diff-") as tmp:
        yield Path(tmp)


def _score(staged: StagedInput, policy: Policy, folder: Path, *, resume: bool, **settings: Any) -> Path:
    out = folder / f"{staged.stage}-{policy.hash[:16]}"  # a folder of part files: no final merge to copy
    if resume:
        # score_dataset refuses to resume a finished output; re-opening it makes it check the run's manifest
        # (input, policy, stage, model) and then skip every finished shard, so reuse is never blind.
        (out / _SUCCESS).unlink(missing_ok=True)
    logger.info(
        "scoring %d %s-stage rows under %s %s", len(staged.lines), staged.stage, policy.name, policy.version
    )
    score_dataset(
        staged.path, policy, out=out, stage=staged.stage, resume=resume, overwrite=not resume, **settings
    )
    return out


def join_outputs(old: Path, new: Path, staged: StagedInput) -> CorpusImpact:
    """Join the outputs of one batch input under the old and the new version, row by row.

    Args:
        old: The output scored under the old version: a JSONL file, or a folder of ``part-*.jsonl`` files.
        new: The output scored under the new version, likewise.
        staged: The input both scored (its rows' corpus lines and stage).

    Returns:
        The input's flips, shifts and errors (``rows`` is its row count).

    Raises:
        DataError: When the outputs differ in length, or a row's ``input_row`` or ``id`` differs.
    """
    found: dict[str, list[Any]] = {"flips": [], "shifts": [], "errors": []}
    rows = 0
    for rows, (a_line, b_line) in enumerate(_paired(old, new), start=1):
        a, b = _parse(a_line, old, rows), _parse(b_line, new, rows)
        if a.get("input_row") != b.get("input_row") or a.get("id") != b.get("id"):
            problem = f"row {rows} is id {a.get('id')!r} here and {b.get('id')!r} in {new}"
            raise DataError(f"the old and new outputs do not line up: {problem}", source=str(old))
        if rows > len(staged.lines):
            raise DataError(f"has more rows than its input ({len(staged.lines)})", source=str(old))
        kind, row = _compare(a, b, staged.lines[rows - 1], staged.stage)
        if kind is not None:
            found[kind].append(row)
    if rows != len(staged.lines):
        raise DataError(f"has {rows} rows, its input {len(staged.lines)}", source=str(old))
    return CorpusImpact(
        rows=rows,
        scored=True,
        flips=tuple(found["flips"]),
        shifts=tuple(found["shifts"]),
        errors=tuple(found["errors"]),
    )


def _compare(
    old: dict[str, Any], new: dict[str, Any], line: int, stage: Stage
) -> tuple[str | None, RowChange | RowError | None]:
    row_id = None if old.get("id") is None else str(old["id"])
    if old.get("error") or new.get("error"):
        return "errors", RowError(row_id, line, _error(old.get("error"), new.get("error")))
    change = _change(str(row_id), line, stage, old, new)
    if change.old.outcome != change.new.outcome:
        return "flips", change
    if set(change.old.violations) != set(change.new.violations):
        return "shifts", change
    return None, None


def _paired(old: Path, new: Path) -> Iterator[tuple[str, str]]:
    try:
        yield from zip(_lines(old), _lines(new), strict=True)
    except ValueError as exc:
        raise DataError(
            f"the old and new outputs differ in length ({old.name} vs {new.name})", source=str(old)
        ) from exc


def _lines(output: Path) -> Iterator[str]:
    parts = sorted(output.glob("part-*.jsonl")) if output.is_dir() else [output]
    for part in parts:
        try:
            with part.open(encoding="utf-8") as handle:
                yield from (line for line in handle if line.strip())
        except OSError as exc:
            raise DataError(f"cannot read a batch output: {exc}", source=str(part)) from exc


def _parse(line: str, path: Path, row: int) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"not a batch output row: {exc.msg}", source=str(path), row=row) from exc
    if not isinstance(data, dict):
        raise DataError("not a batch output row", source=str(path), row=row)
    return data


def _error(old: str | None, new: str | None) -> str:
    old, new = (_WHERE.sub("", text) if text else None for text in (old, new))
    if old and new:
        return old if old == new else f"old policy: {old}; new policy: {new}"
    return f"old policy: {old}" if old else f"new policy: {new}"


def _change(row_id: str, line: int, stage: Stage, old: dict[str, Any], new: dict[str, Any]) -> RowChange:
    messages = tuple(
        {"role": str(message.get("role")), "content": str(message.get("content"))}
        for message in new.get("messages") or ()
        if isinstance(message, dict)
    )
    response = new.get("response") if stage == "output" else None
    return RowChange(row_id, line, stage, messages, response, _score_of(old), _score_of(new))


def _score_of(row: dict[str, Any]) -> RowScore:
    return RowScore(
        str(row["outcome"]), float(row["violation_probability"]), tuple(row.get("violations") or ())
    )
