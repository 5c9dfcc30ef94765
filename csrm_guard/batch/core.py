"""The per-batch scoring step shared by every engine, so that local and Ray runs give identical results.

:class:`ScoringJob` is a picklable recipe (policy, stage, scorer factory): each worker builds its own
:class:`~csrm_guard.Guard` and scorer from it, so no ONNX session is ever pickled. :class:`ChunkScorer` reads
a chunk of input rows and scores it with :func:`score_records`; the local engine calls it in-process and the
Ray engine runs it inside each actor of a Ray Data actor pool.

Batch scoring drives the guard's decision core directly rather than :meth:`Guard.check_output`: the
request-path timeout does not apply (a batch job is about throughput, and a timeout would make results depend
on machine load), and no audit record is written per row; thresholds, actions and fail modes are the guard's
own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from csrm_guard._types import Stage
from csrm_guard.batch.io import INPUT_ROW, Chunk, Record, Source, arrow, read_chunk
from csrm_guard.errors import CheckError, InputError, ScorerError
from csrm_guard.guard import Decision, Guard
from csrm_guard.guard._core import DecisionCore
from csrm_guard.model.types import AsyncScorer, Scorer, ScoreRequest, Verdict
from csrm_guard.policy.schema import Policy

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "BundleScorer",
    "ChunkScorer",
    "RayOptions",
    "ScorerFactory",
    "ScoringJob",
    "error_scores",
    "score_records",
]

logger = logging.getLogger(__name__)

ScorerFactory: TypeAlias = Callable[[], Scorer]
"""A picklable callable that builds a scorer in the process that uses it (e.g. a Ray actor)."""


@dataclass(frozen=True, slots=True)
class BundleScorer:
    """Scorer factory that loads an ONNX model bundle: one session, sized to the CPUs (or GPU) it is given.

    Attributes:
        bundle: The bundle folder; ``None`` uses the default bundle shipped with csrm_guard.
        threads: Intra-op threads of the ONNX session; ``None`` lets onnxruntime choose.
        providers: ``"auto"`` (CUDA when ``onnxruntime-gpu`` sees a GPU, else CPU), ``"cpu"``, ``"cuda"`` or
            onnxruntime provider names in preference order.
        max_batch: Most sequences per ONNX run (``None``: the scorer's default, tuned for CPUs).
        max_tokens: Most padded tokens per ONNX run (``None``: the scorer's default).
    """

    bundle: str | None = None
    threads: int | None = None
    providers: str | tuple[str, ...] = "auto"
    max_batch: int | None = None
    max_tokens: int | None = None

    def __call__(self) -> Scorer:
        """Load the bundle and return its scorer."""
        from csrm_guard.model import OnnxScorer  # noqa: PLC0415  (loaded where the scorer is built)

        sizes = {"max_batch": self.max_batch, "max_tokens": self.max_tokens}
        options: dict[str, Any] = {name: value for name, value in sizes.items() if value is not None}
        scorer: Scorer = OnnxScorer.load(
            self.bundle, providers=self.providers, threads=self.threads, **options
        )
        return scorer

    def describe(self) -> str:
        """Identify the model for run manifests."""
        return str(Path(self.bundle).resolve()) if self.bundle else "default"


@dataclass(frozen=True, slots=True)
class ScoringJob:
    """What to score with: the policy, the stage, and how to build a scorer. Picklable by construction.

    Attributes:
        policy: The policy to apply.
        stage: ``output`` judges ``response`` (or the last assistant message); ``input`` judges the last
            user turn.
        scorer_factory: Builds the scorer in each worker.
    """

    policy: Policy
    stage: Stage
    scorer_factory: ScorerFactory

    def build_guard(self) -> Guard:
        """Build the guard (and its scorer) this job scores with."""
        return Guard(self.policy, scorer=self.scorer_factory())


@dataclass(frozen=True, slots=True)
class RayOptions:
    """How the Ray engine uses the cluster.

    Attributes:
        address: Cluster address (``"auto"``, ``"ray://head:10001"``); ``None`` joins the cluster this process
            already started, or else starts a local one.
        num_actors: Actors in the pool; ``None`` fills the cluster (its CPUs, or GPUs for GPU actors).
        cpus_per_actor: CPUs reserved per actor; the ONNX session gets as many threads.
        gpus_per_actor: GPUs per actor; ``None`` uses one GPU per actor when the cluster has GPUs and the
            model bundle is scored (CUDA with ``onnxruntime-gpu`` on the workers), else none.
    """

    address: str | None = None
    num_actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None


def score_records(records: Sequence[Record], guard: Guard, stage: Stage) -> list[dict[str, Any]]:
    """Score input rows: the one per-batch function every engine uses.

    Valid rows are scored together (one ``score_many`` call when the scorer has it, so ONNX runs are shared).
    A row that cannot be scored (unparseable line, missing id, malformed messages, scorer failure) gets its
    ``error`` column set and empty scores; it is never dropped.

    Args:
        records: Rows as read by :func:`csrm_guard.batch.io.read_chunk`.
        guard: The guard whose decision rules apply.
        stage: The stage judged.

    Returns:
        One dict per record, in order: ``input_row`` and the score columns.
    """
    core = guard.core
    policy_hash = core.rendered.hash
    out: list[dict[str, Any]] = [{} for _ in records]
    pending: list[tuple[int, ScoreRequest]] = []
    for position, record in enumerate(records):
        try:
            request = _prepare(record, core, stage)
        except InputError as exc:
            out[position] = error_scores(f"{record.where}: {exc}", policy_hash)
            continue
        if request is None:  # the stage is disabled: nothing to score
            out[position] = _columns(core.skipped(stage, request_id=str(position)))
        else:
            pending.append((position, request))
    for (position, request), result in zip(pending, _score_all(guard, [r for _, r in pending]), strict=True):
        out[position] = _columns(_decision(core, stage, request, result))
    return [{INPUT_ROW: record.row, **scores} for record, scores in zip(records, out, strict=True)]


def _prepare(record: Record, core: DecisionCore, stage: Stage) -> ScoreRequest | None:
    if record.data is None:
        raise InputError(record.error or "unreadable row")
    data = record.data
    row_id = data.get("id")
    if row_id is None:
        raise InputError("missing 'id'")
    if isinstance(row_id, bool) or not isinstance(row_id, str | int):
        raise InputError(f"must be a string or an integer, got {type(row_id).__name__}", location="id")
    if data.get("messages") is None:
        raise InputError("missing 'messages'")
    response = data.get("response") if stage == "output" else None
    if response is not None and not isinstance(response, str):
        raise InputError(f"must be a string, got {type(response).__name__}", location="response")
    if not core.settings(stage).enabled:
        return None
    return core.prepare(stage, data["messages"], response)


def _score_all(guard: Guard, requests: list[ScoreRequest]) -> list[Verdict | CheckError]:
    scorer = guard.scorer
    score_many = getattr(scorer, "score_many", None)
    if score_many is not None and len(requests) > 1:
        try:
            return list(score_many(requests))
        except Exception:
            logger.debug("grouped scoring failed; scoring %d requests one by one", len(requests))
    return [_score_one(scorer, request) for request in requests]


def _score_one(scorer: Scorer | AsyncScorer, request: ScoreRequest) -> Verdict | CheckError:
    try:
        if isinstance(scorer, Scorer):
            return scorer.score(request)
        return asyncio.run(scorer.ascore(request))
    except CheckError as exc:
        return exc
    except Exception as exc:  # any scorer failure is "could not decide", as in the guard
        return ScorerError(f"scorer raised {type(exc).__name__}: {exc}")


def _decision(core: DecisionCore, stage: Stage, request: ScoreRequest, result: object) -> Decision:
    # Scoring time is not attributed per row in a batch; latency is left at zero.
    if isinstance(result, CheckError):
        return core.fail(stage, result, request_id="batch", latency_ms=0.0)
    try:
        verdict = core.validate(request, result)
    except CheckError as exc:
        return core.fail(stage, exc, request_id="batch", latency_ms=0.0)
    return core.decide(stage, verdict, request_id="batch", latency_ms=0.0)


def _columns(decision: Decision) -> dict[str, Any]:
    if decision.error is not None:
        return error_scores(decision.error, decision.policy_hash, decision.model_id)
    return {
        "outcome": decision.outcome,
        "violation_probability": float(decision.violation_probability),
        "reward": float(decision.reward),
        "violations": [violation.id for violation in decision.violations],
        "policy_hash": decision.policy_hash,
        "model_id": decision.model_id,
        "error": None,
    }


def error_scores(message: str, policy_hash: str, model_id: str | None = None) -> dict[str, Any]:
    """Return the score columns of a row that could not be scored."""
    return {
        "outcome": None,
        "violation_probability": None,
        "reward": None,
        "violations": None,
        "policy_hash": policy_hash,
        "model_id": model_id or None,
        "error": message,
    }


class ChunkScorer:
    """Reads and scores chunks of an input with one guard built once (one per Ray actor, one per local run).

    Args:
        source: The input file.
        job: What to score with.
    """

    def __init__(self, source: Source, job: ScoringJob) -> None:
        self.source = source
        self.job = job
        started = time.perf_counter()
        self.guard = job.build_guard()
        logger.info("scorer ready in %.2f s (pid %d)", time.perf_counter() - started, os.getpid())

    def score_chunk(self, chunk: Chunk) -> tuple[list[Record], list[dict[str, Any]]]:
        """Read one chunk and score it; returns its records and their scores."""
        records = read_chunk(self.source, chunk)
        return records, score_records(records, self.guard, self.job.stage)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Score a batch of chunk descriptors (the Ray Data entry point): one score row per input row."""
        rows: list[dict[str, Any]] = []
        for descriptor in batch.to_pylist():
            rows.extend(self.score_chunk(Chunk(**descriptor))[1])
        return arrow().scores_table(rows)

    def close(self) -> None:
        """Release the guard and its scorer (built here, so owned here)."""
        self.guard.close()
        scorer = self.guard.scorer
        if isinstance(scorer, Scorer):
            scorer.close()
