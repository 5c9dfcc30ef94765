"""``csrm-guard diff --engine local|ray``: score the corpus in batch and add its flips to the review report.

:mod:`csrm_guard.review` and :mod:`csrm_guard.batch` are independent packages; this module composes them.
The review diff replays the policies' own tests; for each policy pair whose enforcement changed,
:func:`~csrm_guard.batch.impact.corpus_impact` scores the corpus under both versions and its flips, shifts
and errors are added to that policy's diff, where the report renders them and the gate counts them like
replayed ones.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from csrm_guard.batch.impact import CorpusImpact, RowChange, RowError, RowScore, corpus_impact
from csrm_guard.policy import Policy
from csrm_guard.review.corpus import Conversation
from csrm_guard.review.diff import DiffReport, Flip, RowDecision, add_conversations, clause_changes
from csrm_guard.review.semantic import changed_clauses

__all__ = ["add_engine_arguments", "engine_usage_error", "with_corpus_impact"]

_RAY_ONLY = ("address", "num_actors", "cpus_per_actor")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine``, ``--address``, ``--num-actors``, ``--cpus-per-actor``, ``--work-dir``, ``--resume``."""
    group = parser.add_argument_group(
        "batch scoring of the corpus",
        "with --engine, the corpus is scored in batch under each version instead of replayed one "
        "conversation at a time (the policies' tests are still replayed); see docs/batch.md",
    )
    group.add_argument("--engine", choices=("local", "ray"), help="score the --corpus with this batch engine")
    group.add_argument("--address", metavar="ADDR", help="Ray cluster address (--engine ray)")
    group.add_argument("--num-actors", type=_positive_int, metavar="N", help="Ray actors (--engine ray)")
    group.add_argument(
        "--cpus-per-actor",
        type=_positive_float,
        metavar="N",
        help="CPUs per Ray actor (--engine ray; default 1)",
    )
    group.add_argument(
        "--work-dir",
        metavar="DIR",
        help="keep the batch outputs in DIR (default: a temporary folder, removed afterwards); on a "
        "multi-node Ray cluster, DIR must be readable by every node",
    )
    group.add_argument("--resume", action="store_true", help="reuse the finished shards in --work-dir")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def engine_usage_error(args: argparse.Namespace) -> str | None:
    """Say what is wrong with the batch flags of a ``diff`` command line, or ``None``."""
    if args.engine is None:
        given = [name for name in (*_RAY_ONLY, "work_dir") if getattr(args, name) is not None]
        given += ["resume"] if args.resume else []
        return f"--{given[0].replace('_', '-')} needs --engine" if given else None
    if args.corpus is None:
        return "--engine scores a corpus: give --corpus FILE.jsonl"
    if args.no_replay:
        return "--engine and --no-replay exclude each other"
    if args.resume and args.work_dir is None:
        return "--resume needs the --work-dir of the run to resume"
    ray_flags = [name for name in _RAY_ONLY if getattr(args, name) is not None]
    if args.engine == "local" and ray_flags:
        return f"--{ray_flags[0].replace('_', '-')} applies to --engine ray only"
    return None


def with_corpus_impact(report: DiffReport, args: argparse.Namespace) -> DiffReport:
    """Score ``args.corpus`` for every policy pair whose enforcement changed and add what it finds."""
    options: dict[str, Any] = {name: getattr(args, name) for name in _RAY_ONLY if getattr(args, name)}
    for diff in report.policies:
        old, new = diff.old, diff.new
        if old is None or new is None or old.hash == new.hash:
            continue
        print(f"scoring {args.corpus} under both versions of {diff.name} ({args.engine})", file=sys.stderr)
        impact = corpus_impact(
            args.corpus,
            old,
            new,
            work_dir=args.work_dir,
            model=args.model,
            engine=args.engine,
            resume=args.resume,
            progress=_progress(),
            **options,
        )
        report = _add(report, diff.name, impact, old, new)
    return report


def _add(report: DiffReport, name: str, impact: CorpusImpact, old: Policy, new: Policy) -> DiffReport:
    touched = changed_clauses(old, new)

    def flip(row: RowChange) -> Flip:
        conversation = Conversation(f"corpus:{row.id}", row.messages, row.response, row.stage, "corpus")
        clauses = clause_changes(frozenset(row.old.violations), frozenset(row.new.violations), touched)
        return Flip(name, conversation, _decision(row.old), _decision(row.new), clauses)

    return add_conversations(
        report,
        name,
        flips=[flip(row) for row in impact.flips],
        shifts=[flip(row) for row in impact.shifts],
        errors=[_error(error) for error in impact.errors],
        checked=impact.checked,
    )


def _error(error: RowError) -> str:
    where = f"corpus:{error.id} (line {error.line})" if error.id is not None else f"corpus line {error.line}"
    return f"{where}: {error.error}"


def _decision(score: RowScore) -> RowDecision:
    return RowDecision(score.outcome, score.violation_probability, score.violations)


def _progress() -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\r  {done}/{total} rows")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
