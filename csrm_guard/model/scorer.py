"""``OnnxScorer``: the in-process CSRM scorer, sync (:class:`Scorer`) and async (:class:`AsyncScorer`).

One check costs one tokenization of the transcript plus the ONNX passes it needs:

* **taxonomy mode** — every standard category clause of the policy is read from the severity head of a single
  pass over ``(manifest.taxonomy_query, transcript)``; the policy only sets which level is tolerated;
* **clause mode** — every other clause (custom rules, guideline clauses, categories whose description the
  policy rewrites) gets its own ``(clause, transcript)`` pass. For long policies a BM25 pre-filter
  (:mod:`csrm_guard.model.retrieve`) keeps the ``top_k`` rule and guideline clauses most relevant to the
  transcript.

All rows of a check — and, for async callers, of every check queued at the same moment — are length-bucketed
and run in as few ``session.run`` calls as possible. Everything that depends only on the policy (which clauses
use which mode, clause token ids, the BM25 index) is computed once per policy version and stage, and cached.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from csrm_guard._types import Stage
from csrm_guard.errors import InputError, ScorerError
from csrm_guard.model import calibrate
from csrm_guard.model._batcher import Job, MicroBatcher
from csrm_guard.model.bundle import Bundle, load_bundle
from csrm_guard.model.encode import Encoder, IntArray, Row
from csrm_guard.model.retrieve import ClauseIndex
from csrm_guard.model.session import OUTPUT_NAMES, ProviderSpec, build_session, warm_up
from csrm_guard.model.types import ClauseScore, ScoreRequest, Verdict
from csrm_guard.policy.render import Clause, RenderedPolicy

__all__ = ["OnnxScorer"]

logger = logging.getLogger(__name__)

_PLAN_CACHE_SIZE = 128


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one policy version is scored at one stage; built once and cached."""

    clauses: tuple[Clause, ...]
    taxonomy: tuple[int, ...]  # positions in `clauses` read from the severity head
    categories: NDArray[np.intp]  # severity-head row of each taxonomy clause
    ranks: NDArray[np.intp]  # tolerated severity rank of each taxonomy clause
    fixed: tuple[int, ...]  # clause-mode positions always scored (category clauses)
    retrievable: tuple[int, ...]  # clause-mode positions subject to the pre-filter (rules, guidelines)
    clause_ids: dict[int, IntArray]  # token ids of every clause-mode position
    index: ClauseIndex | None  # BM25 index over `retrievable`, when there are more than top_k


@dataclass(slots=True)
class _Work:
    """One request in flight: which clause-mode positions it scores and where its rows landed."""

    request: ScoreRequest
    plan: _Plan
    selected: tuple[int, ...]
    taxonomy_row: int = -1
    first_row: int = 0


class OnnxScorer:
    """Scores policy clauses against transcripts with a bundle's ONNX graph.

    Build it with :meth:`load`. It implements both :class:`~csrm_guard.model.types.Scorer` (``score``) and
    :class:`~csrm_guard.model.types.AsyncScorer` (``ascore``, micro-batched across concurrent callers).
    Instances are thread-safe and meant to be shared for the life of the process.

    Args:
        bundle: The verified bundle.
        session: Its inference session (from :func:`csrm_guard.model.session.build_session`).
        encoder: Its tokenizer wrapper.
        top_k: Rule and guideline clauses kept by the BM25 pre-filter per check (``None``: score all).
        max_batch: Most rows per ONNX run.
        max_tokens: Most padded tokens per ONNX run (bounds activation memory).
        batch_wait_ms: How long the async worker waits for concurrent requests to join a group.
        max_group: Most async requests scored together.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        bundle: Bundle,
        session: Any,
        encoder: Encoder,
        *,
        top_k: int | None = 20,
        max_batch: int = 8,
        max_tokens: int = 4096,
        batch_wait_ms: float = 1.0,
        max_group: int = 16,
    ) -> None:
        self.bundle = bundle
        self.session = session
        self.encoder = encoder
        self.top_k = top_k
        self.max_batch = max_batch
        self.max_tokens = max_tokens
        manifest = bundle.manifest
        self._calibration = manifest.calibration
        self._category_rows = {category: row for row, category in enumerate(manifest.categories)}
        self._query_ids = encoder.clause_ids(manifest.taxonomy_query)
        self._plans: OrderedDict[tuple[str, Stage], _Plan] = OrderedDict()
        self._plans_lock = threading.Lock()
        self._batcher: MicroBatcher[ScoreRequest, Verdict] = MicroBatcher(
            self._score_jobs, max_requests=max_group, wait_s=batch_wait_ms / 1000.0
        )
        self._closed = False

    @classmethod
    def load(
        cls,
        bundle: Bundle | str | os.PathLike[str] | None = None,
        *,
        providers: ProviderSpec = "auto",
        threads: int | None = None,
        warmup: bool = True,
        **options: Any,
    ) -> OnnxScorer:
        """Load a bundle, build its session and warm it up.

        Args:
            bundle: A :class:`Bundle`, a bundle folder, or ``None`` for the shipped default bundle.
            providers: ``"auto"``, ``"cpu"``, ``"cuda"`` or explicit onnxruntime provider names.
            threads: Intra-op threads (``None``: onnxruntime's default, one per physical core).
            warmup: Run the graph once at load so the first check is not slow.
            **options: Passed to the constructor (``top_k``, ``max_batch``, ``max_tokens``, ``batch_wait_ms``,
                ``max_group``).

        Returns:
            A ready scorer.

        Raises:
            BundleError: The bundle is missing, altered or incompatible.
            ModelError: The providers are unavailable or onnxruntime cannot load the graph.
        """
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        manifest = bundle.manifest
        session = build_session(bundle.model_path, providers=providers, threads=threads)
        encoder = Encoder.from_file(
            bundle.tokenizer_path,
            max_length=manifest.max_length,
            max_clause_tokens=manifest.max_clause_tokens,
        )
        if warmup:
            warm_up(session, (16, min(128, manifest.max_length)))
        return cls(bundle, session, encoder, **options)

    @property
    def model_id(self) -> str:
        """The bundle's model id, as written into verdicts."""
        return self.bundle.model_id

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually runs on."""
        return list(self.session.get_providers())

    # -- public scoring --------------------------------------------------------------------------------------

    def score(self, request: ScoreRequest) -> Verdict:
        """Score one request in the calling thread.

        Raises:
            InputError: The transcript is not a string.
            ScorerError: The scorer is closed, onnxruntime failed, or the graph returned unusable values.
        """
        return self.score_many([request])[0]

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[Verdict]:
        """Score several requests with shared, length-bucketed ONNX runs.

        Raises:
            InputError: A transcript is not a string.
            ScorerError: The scorer is closed, onnxruntime failed, or the graph returned unusable values.
        """
        self._check_open()
        start = time.perf_counter()
        work = [self._prepare(request) for request in requests]
        return self._finish(work, start)

    async def ascore(self, request: ScoreRequest) -> Verdict:
        """Score one request without blocking the event loop; concurrent calls share ONNX runs.

        The caller's context variables are visible to the scorer's per-request work (copied at the call).

        Raises:
            InputError: The transcript is not a string.
            ScorerError: The scorer is closed, onnxruntime failed, or the graph returned unusable values.
        """
        self._check_open()
        start = time.perf_counter()
        verdict = await self._batcher.submit(request)
        return replace(verdict, latency_ms=(time.perf_counter() - start) * 1000.0)

    def close(self) -> None:
        """Stop the async worker and release the session; later calls raise :class:`ScorerError`."""
        self._closed = True
        self._batcher.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (waits for the worker in a thread)."""
        self._closed = True
        await asyncio.to_thread(self._batcher.close)

    def __enter__(self) -> OnnxScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OnnxScorer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- request preparation ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ScorerError("the scorer is closed")

    def _prepare(self, request: ScoreRequest) -> _Work:
        if not isinstance(request.transcript, str):
            raise InputError(
                f"must be a string, got {type(request.transcript).__name__}", location="transcript"
            )
        plan = self._plan(request.rendered, request.stage)
        selected = plan.fixed
        if plan.retrievable:
            chosen = plan.retrievable
            if plan.index is not None and self.top_k is not None:
                query = request.transcript[-self.encoder.transcript_budget * 8 :]
                chosen = tuple(plan.retrievable[i] for i in plan.index.top(query, self.top_k))
            selected = tuple(sorted(selected + chosen))
        return _Work(request, plan, selected)

    def _plan(self, rendered: RenderedPolicy, stage: Stage) -> _Plan:
        key = (rendered.hash, stage)
        with self._plans_lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = self._build_plan(rendered.for_stage(stage))
        with self._plans_lock:
            self._plans[key] = plan
            if len(self._plans) > _PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return plan

    def _build_plan(self, clauses: tuple[Clause, ...]) -> _Plan:
        taxonomy, categories, ranks, fixed, retrievable = [], [], [], [], []
        for position, clause in enumerate(clauses):
            row = self._category_rows.get(clause.category or "")
            if clause.standard and row is not None and clause.max_severity is not None:
                taxonomy.append(position)
                categories.append(row)
                ranks.append(clause.max_severity.rank)
            elif clause.kind == "category":
                fixed.append(position)
            else:
                retrievable.append(position)
        clause_ids = {
            position: self.encoder.clause_ids(clauses[position].text) for position in fixed + retrievable
        }
        use_index = self.top_k is not None and len(retrievable) > self.top_k
        index = ClauseIndex([clauses[position].text for position in retrievable]) if use_index else None
        return _Plan(
            clauses=clauses,
            taxonomy=tuple(taxonomy),
            categories=np.asarray(categories, dtype=np.intp),
            ranks=np.asarray(ranks, dtype=np.intp),
            fixed=tuple(fixed),
            retrievable=tuple(retrievable),
            clause_ids=clause_ids,
            index=index,
        )

    # -- running ---------------------------------------------------------------------------------------------

    def _score_jobs(self, jobs: Sequence[Job[ScoreRequest, Verdict]]) -> list[Verdict | BaseException]:
        """Worker-thread entry: prepare each job in its caller's context, then run them all together."""
        start = time.perf_counter()
        results: list[Verdict | BaseException] = []
        work: list[_Work] = []
        owners: list[int] = []
        for position, job in enumerate(jobs):
            try:
                work.append(job.context.run(self._prepare, job.item))
                owners.append(position)
                results.append(ScorerError("not scored"))
            except Exception as exc:  # one caller's bad request must not fail the others
                results.append(exc)
        if work:
            try:
                verdicts = self._finish(work, start)
            except Exception as exc:  # a failed run fails every request in it
                verdicts = [exc] * len(work)  # type: ignore[list-item]
            for owner, verdict in zip(owners, verdicts, strict=True):
                results[owner] = verdict
        return results

    def _finish(self, work: Sequence[_Work], start: float) -> list[Verdict]:
        transcripts = self.encoder.transcript_ids([item.request.transcript for item in work])
        rows: list[Row] = []
        for item, transcript in zip(work, transcripts, strict=True):
            if item.plan.taxonomy:
                item.taxonomy_row = len(rows)
                rows.append(self.encoder.row(self._query_ids, transcript))
            item.first_row = len(rows)
            rows.extend(
                self.encoder.row(item.plan.clause_ids[position], transcript) for position in item.selected
            )
        logits, severity = self._run(rows)
        latency = (time.perf_counter() - start) * 1000.0
        return [self._verdict(item, logits, severity, latency) for item in work]

    def _run(self, rows: Sequence[Row]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        categories = len(self._category_rows)
        logits = np.zeros(len(rows), dtype=np.float32)
        severity = np.zeros((len(rows), categories, 3), dtype=np.float32)
        for batch in self.encoder.batches(rows, max_batch=self.max_batch, max_tokens=self.max_tokens):
            try:
                violation, levels = self.session.run(list(OUTPUT_NAMES), batch.feeds)
            except Exception as exc:  # onnxruntime's exceptions are untyped
                raise ScorerError(f"onnxruntime failed: {exc}") from exc
            size = len(batch.indices)
            violation, levels = np.asarray(violation), np.asarray(levels)
            if violation.size != size or levels.shape != (size, categories, 3):
                raise ScorerError(
                    f"the graph returned violation_logit {violation.shape} and severity_logits "
                    f"{levels.shape}, expected ({size},) and ({size}, {categories}, 3)"
                )
            if not (np.isfinite(violation).all() and np.isfinite(levels).all()):
                raise ScorerError("the graph returned NaN or infinite logits")
            indices = np.asarray(batch.indices)
            logits[indices] = violation.reshape(size)
            severity[indices] = levels
        return logits, severity

    def _verdict(
        self, item: _Work, logits: NDArray[np.float32], severity: NDArray[np.float32], latency_ms: float
    ) -> Verdict:
        plan, request = item.plan, item.request
        scores: dict[int, ClauseScore] = {}
        if plan.taxonomy:
            cumulative = calibrate.severity_distribution(
                severity[item.taxonomy_row],
                self._calibration.severity_temperature,
                self._calibration.severity_bias,
            )
            probabilities = calibrate.category_probabilities(cumulative, plan.categories, plan.ranks)
            likely = calibrate.likely_severities(cumulative)
            for position, row, probability in zip(plan.taxonomy, plan.categories, probabilities, strict=True):
                clause = plan.clauses[position]
                scores[position] = ClauseScore(clause.id, clause.kind, float(probability), likely[row])
        if item.selected:
            clause_logits = logits[item.first_row : item.first_row + len(item.selected)]
            probabilities = calibrate.clause_probabilities(clause_logits, self._calibration.temperature)
            for position, probability in zip(item.selected, probabilities, strict=True):
                clause = plan.clauses[position]
                scores[position] = ClauseScore(clause.id, clause.kind, float(probability))
        ordered = tuple(scores[position] for position in sorted(scores))
        probability = calibrate.aggregate([score.probability for score in ordered])
        return Verdict(
            stage=request.stage,
            scores=ordered,
            violation_probability=probability,
            reward=calibrate.reward(probability),
            threshold=self._calibration.thresholds.get(request.stage, 0.5),
            model_id=self.model_id,
            latency_ms=latency_ms,
        )
