"""The :class:`Guard`: sync and async drivers over the decision core, with timeouts and fail modes.

A check renders the transcript, asks the scorer for a verdict within the stage's ``timeout_ms`` and hands the
verdict to :class:`~csrm_guard.guard._core.DecisionCore`. The sync driver runs the scorer in one of the
guard's worker threads and waits with a deadline; the async driver awaits an
:class:`~csrm_guard.model.types.AsyncScorer` under :func:`asyncio.timeout`, or runs a sync scorer in the same
worker threads with the caller's contextvars copied, so the event loop never blocks. A scorer error, a NaN or
a timeout becomes a :class:`~csrm_guard.errors.CheckError` and the stage's fail mode decides; nothing else is
caught.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from csrm_guard._types import Messages, Stage
from csrm_guard.errors import CheckError, ScorerError, ScorerTimeout
from csrm_guard.guard import audit as _audit
from csrm_guard.guard._core import Decision, DecisionCore, new_request_id
from csrm_guard.guard.decorators import ProtectMixin
from csrm_guard.guard.stream import AsyncGuardedStream, GuardedStream
from csrm_guard.model.types import AsyncScorer, Scorer, ScoreRequest, Verdict
from csrm_guard.policy.loader import load_policy
from csrm_guard.policy.schema import Policy

__all__ = ["Guard"]

logger = logging.getLogger(__name__)


class Guard(ProtectMixin):
    """Checks LLM calls against a policy and decides what to do.

    Args:
        policy: A :class:`~csrm_guard.Policy`, or the path of a policy file or folder.
        model: The model bundle folder; ``None`` uses the default bundle. Loaded on first use.
        scorer: Any :class:`~csrm_guard.model.types.Scorer` or :class:`~csrm_guard.model.types.AsyncScorer`
            (for tests, :class:`csrm_guard.testing.FakeScorer`); replaces ``model``. The caller keeps
            ownership: :meth:`close` does not close it.
        audit: Where audit records go: an :class:`~csrm_guard.guard.audit.AuditLog`, a sink, a JSONL path or a
            callable receiving each record. ``None`` writes no audit records (decisions are still logged).
        max_workers: Worker threads that run sync scorers (and sync checks' deadlines).
        regenerate_backoff: First wait, in seconds, between ``regenerate`` attempts (doubles, capped at 2 s).

    Example:
        >>> from csrm_guard.testing import StaticScorer
        >>> guard = Guard(Policy(name="demo"), scorer=StaticScorer(0.01))
        >>> guard.check_input([{"role": "user", "content": "hello"}]).outcome
        'allow'

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        policy: Policy | str | os.PathLike[str],
        model: str | os.PathLike[str] | None = None,
        *,
        scorer: Scorer | AsyncScorer | None = None,
        audit: _audit.AuditLog
        | _audit.AuditSink
        | str
        | os.PathLike[str]
        | Callable[..., object]
        | None = None,
        max_workers: int = 4,
        regenerate_backoff: float = 0.1,
    ) -> None:
        self.policy = policy if isinstance(policy, Policy) else load_policy(Path(policy))
        self.core = DecisionCore(self.policy)
        self.model = model
        self.regenerate_backoff = regenerate_backoff
        self.audit = _as_audit(audit, self.policy)
        self._owns_audit = isinstance(audit, str | os.PathLike)
        self._scorer = scorer
        self._owns_scorer = scorer is None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="csrm-guard")
        self._closed = False

    # -- scorer --

    @property
    def scorer(self) -> Scorer | AsyncScorer:
        """The scorer, loading the model bundle on first access."""
        if self._scorer is None:
            with self._load_lock:
                if self._scorer is None:
                    # Imported here so that a Guard with its own scorer never loads onnxruntime.
                    from csrm_guard.model import OnnxScorer  # noqa: PLC0415

                    self._scorer = OnnxScorer.load(self.model)
        return self._scorer

    async def _ascorer(self) -> Scorer | AsyncScorer:
        if self._scorer is not None:
            return self._scorer
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: self.scorer)

    # -- sync driver --

    def check_input(
        self, messages: Messages, *, request_id: str | None = None, include_text: bool | None = None
    ) -> Decision:
        """Check the last user turn of ``messages`` before generation.

        Args:
            messages: OpenAI-style ``{"role", "content"}`` mappings.
            request_id: Correlates this check with others of the same call; generated when omitted.
            include_text: Keep raw text in the audit record (``None``: follow the policy).

        Returns:
            The decision; only :meth:`protect` and the middleware act on it.

        Raises:
            InputError: When ``messages`` is malformed.
        """
        return self._check("input", messages, None, request_id, include_text)

    def check_output(
        self,
        messages: Messages,
        response: str,
        *,
        request_id: str | None = None,
        include_text: bool | None = None,
    ) -> Decision:
        """Check an assistant ``response`` to ``messages`` after generation.

        Args:
            messages: The conversation that led to the response.
            response: The assistant's text.
            request_id: Correlates this check with others of the same call; generated when omitted.
            include_text: Keep raw text in the audit record (``None``: follow the policy).

        Returns:
            The decision.

        Raises:
            InputError: When ``messages`` or ``response`` is malformed.
        """
        return self._check("output", messages, response, request_id, include_text)

    def _check(
        self,
        stage: Stage,
        messages: Messages,
        response: str | None,
        request_id: str | None,
        include_text: bool | None,
    ) -> Decision:
        decision = self._decide(stage, messages, response, request_id or new_request_id())
        return self._emit(decision, messages, response, include_text)

    def _decide(self, stage: Stage, messages: Messages, response: str | None, request_id: str) -> Decision:
        if not self.core.settings(stage).enabled:
            return self.core.skipped(stage, request_id=request_id)
        started = time.perf_counter()
        request = self.core.prepare(stage, messages, response)
        scorer = self.scorer  # loading the bundle does not count against the check's timeout
        try:
            verdict = self.core.validate(request, self._score_sync(scorer, request, stage))
        except CheckError as exc:
            return self.core.fail(stage, exc, request_id=request_id, latency_ms=_ms_since(started))
        return self.core.decide(stage, verdict, request_id=request_id, latency_ms=_ms_since(started))

    def _score_sync(self, scorer: Scorer | AsyncScorer, request: ScoreRequest, stage: Stage) -> object:
        timeout = self.core.settings(stage).timeout_ms / 1000
        call = _sync_call(scorer, request)
        future = self._executor.submit(contextvars.copy_context().run, call)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout as exc:
            future.cancel()
            raise ScorerTimeout(f"scorer did not answer within {timeout * 1000:.0f} ms") from exc
        except CheckError:
            raise
        except Exception as exc:  # any scorer failure is "could not decide", never a crash of the caller
            raise ScorerError(f"scorer raised {type(exc).__name__}: {exc}") from exc

    # -- async driver --

    async def acheck_input(
        self, messages: Messages, *, request_id: str | None = None, include_text: bool | None = None
    ) -> Decision:
        """Async twin of :meth:`check_input`; never blocks the event loop."""
        return await self._acheck("input", messages, None, request_id, include_text)

    async def acheck_output(
        self,
        messages: Messages,
        response: str,
        *,
        request_id: str | None = None,
        include_text: bool | None = None,
    ) -> Decision:
        """Async twin of :meth:`check_output`; never blocks the event loop."""
        return await self._acheck("output", messages, response, request_id, include_text)

    async def _acheck(
        self,
        stage: Stage,
        messages: Messages,
        response: str | None,
        request_id: str | None,
        include_text: bool | None,
    ) -> Decision:
        decision = await self._adecide(stage, messages, response, request_id or new_request_id())
        return self._emit(decision, messages, response, include_text)

    async def _adecide(
        self, stage: Stage, messages: Messages, response: str | None, request_id: str
    ) -> Decision:
        if not self.core.settings(stage).enabled:
            return self.core.skipped(stage, request_id=request_id)
        started = time.perf_counter()
        request = self.core.prepare(stage, messages, response)
        scorer = await self._ascorer()
        try:
            verdict = self.core.validate(request, await self._score_async(scorer, request, stage))
        except CheckError as exc:
            return self.core.fail(stage, exc, request_id=request_id, latency_ms=_ms_since(started))
        return self.core.decide(stage, verdict, request_id=request_id, latency_ms=_ms_since(started))

    async def _score_async(self, scorer: Scorer | AsyncScorer, request: ScoreRequest, stage: Stage) -> object:
        timeout = self.core.settings(stage).timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout):
                if isinstance(scorer, AsyncScorer):
                    return await scorer.ascore(request)
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._executor, contextvars.copy_context().run, scorer.score, request
                )
        except TimeoutError as exc:
            raise ScorerTimeout(f"scorer did not answer within {timeout * 1000:.0f} ms") from exc
        except CheckError:
            raise
        except Exception as exc:  # CancelledError is a BaseException and passes through untouched
            raise ScorerError(f"scorer raised {type(exc).__name__}: {exc}") from exc

    # -- streams --

    def check_stream(
        self, messages: Messages, chunks: Iterable[str], *, request_id: str | None = None
    ) -> GuardedStream[str]:
        """Guard a streamed response: text is released only after the window holding it passed a check.

        Args:
            messages: The conversation the response answers.
            chunks: The response's text chunks as they arrive.
            request_id: Correlates the stream's decision with the input check.

        Returns:
            An iterator of released text; its ``decision`` is set when the stream ends.
        """
        return GuardedStream(self, messages, chunks, request_id=request_id or new_request_id())

    def acheck_stream(
        self, messages: Messages, chunks: AsyncIterable[str], *, request_id: str | None = None
    ) -> AsyncGuardedStream[str]:
        """Async twin of :meth:`check_stream`, over an async iterable of chunks."""
        return AsyncGuardedStream(self, messages, chunks, request_id=request_id or new_request_id())

    # -- audit and logging --

    def _emit(
        self, decision: Decision, messages: Messages, response: str | None, include_text: bool | None = None
    ) -> Decision:
        """Log, audit and publish a decision (internal: drivers call it once per decision)."""
        _log(decision)
        if self.audit is not None:
            try:
                self.audit.record(decision, messages=messages, response=response, include_text=include_text)
            except Exception:  # an audit sink failure must not turn into a user-facing outage
                logger.exception("audit sink failed for request %s", decision.request_id)
        _audit.notify(decision)
        return decision

    # -- lifecycle --

    def close(self) -> None:
        """Stop the worker threads and close the scorer the guard loaded itself (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_scorer and isinstance(self._scorer, Scorer):
            self._scorer.close()
        if self._owns_audit and self.audit is not None:
            self.audit.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._owns_scorer and isinstance(self._scorer, AsyncScorer) and not self._closed:
            await self._scorer.aclose()
            self._owns_scorer = False
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Guard(policy={self.policy.name!r}, version={self.policy.version!r})"


def _sync_call(scorer: Scorer | AsyncScorer, request: ScoreRequest) -> Callable[[], Verdict]:
    if isinstance(scorer, Scorer):
        return lambda: scorer.score(request)
    # An async-only scorer in sync code: run it on a private loop inside the worker thread.
    return lambda: asyncio.run(scorer.ascore(request))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _log(decision: Decision) -> None:
    ids = ",".join(violation.id for violation in decision.violations) or "-"
    if decision.error is not None:
        logger.warning(
            "check failed (%s); fail mode decided %s: stage=%s request=%s",
            decision.error,
            decision.outcome,
            decision.stage,
            decision.request_id,
        )
    elif decision.outcome == "monitor":
        logger.warning(
            "monitor: would have acted on %s at stage=%s request=%s", ids, decision.stage, decision.request_id
        )
    elif decision.violated:
        logger.info(
            "%s: violations=%s p=%.3f stage=%s request=%s",
            decision.outcome,
            ids,
            decision.violation_probability,
            decision.stage,
            decision.request_id,
        )
    else:
        logger.debug(
            "allow: p=%.3f stage=%s request=%s",
            decision.violation_probability,
            decision.stage,
            decision.request_id,
        )


def _as_audit(audit: Any, policy: Policy) -> _audit.AuditLog | None:
    if audit is None:
        return None
    if isinstance(audit, _audit.AuditLog):
        return audit.with_settings(policy.audit)
    return _audit.AuditLog(audit, settings=policy.audit)
