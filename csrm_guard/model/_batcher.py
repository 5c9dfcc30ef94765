"""Micro-batching of concurrent async requests onto one worker thread.

Async callers hand a job to :class:`MicroBatcher` and await an ``asyncio`` future; one daemon worker thread
drains the queue in groups of up to ``max_requests`` and runs each group with a single call of the scoring
function, so 64 concurrent callers share ONNX runs instead of fighting over the CPU's threads. The worker
waits up to ``wait_s`` for a group to fill only while it is seeing concurrency (its last group held more than
one job): a lone caller never pays the wait budget.

Each job carries the caller's :mod:`contextvars` context; the scoring function runs per-job steps inside it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from csrm_guard.errors import ScorerError

__all__ = ["Job", "MicroBatcher"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True, eq=False)
class Job(Generic[T, R]):
    """One queued request and where its answer goes.

    Attributes:
        item: The request.
        context: The caller's context, copied at submission.
        future: The caller's future, resolved on the caller's event loop.
        loop: The caller's event loop.
    """

    item: T
    context: contextvars.Context
    future: asyncio.Future[R]
    loop: asyncio.AbstractEventLoop
    cancelled: bool = field(default=False)

    def resolve(self, result: R | BaseException) -> None:
        """Hand the result (or exception) to the caller's loop, thread-safely; a closed loop is ignored."""
        try:
            self.loop.call_soon_threadsafe(_settle, self.future, result)
        except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
            logger.debug("dropping a result for a closed event loop")


def _settle(future: asyncio.Future[R], result: R | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class MicroBatcher(Generic[T, R]):
    """Queue plus one worker thread that runs jobs in groups.

    Args:
        run: Scores a group of jobs and returns one result (or exception) per job, in order.
        max_requests: Most jobs per group.
        wait_s: Wait budget for a group to fill, used only under concurrency.
        name: Worker thread name.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Job[T, R]]], Sequence[R | BaseException]],
        *,
        max_requests: int = 16,
        wait_s: float = 0.001,
        name: str = "csrm-guard-scorer",
    ) -> None:
        self._run = run
        self._max = max(1, max_requests)
        self._wait_s = max(0.0, wait_s)
        self._name = name
        self._queue: deque[Job[T, R]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False  # the last group held more than one job

    async def submit(self, item: T) -> R:
        """Queue ``item`` and await its result.

        Raises:
            ScorerError: The batcher is closed, or the scoring function failed for this job.
        """
        loop = asyncio.get_running_loop()
        job: Job[T, R] = Job(item, contextvars.copy_context(), loop.create_future(), loop)
        job.future.add_done_callback(lambda future: setattr(job, "cancelled", future.cancelled()))
        with self._cond:
            if self._closed:
                raise ScorerError("the scorer is closed")
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return await job.future

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the group in progress; fail jobs still queued with :class:`ScorerError`."""
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        for job in pending:
            job.resolve(ScorerError("the scorer was closed before this request was scored"))
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _next_group(self) -> list[Job[T, R]] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            if self._busy and len(self._queue) < self._max and self._wait_s:
                self._cond.wait_for(
                    lambda: len(self._queue) >= self._max or self._closed, timeout=self._wait_s
                )
            group = [self._queue.popleft() for _ in range(min(len(self._queue), self._max))]
        self._busy = len(group) > 1
        return [job for job in group if not job.cancelled]

    def _loop(self) -> None:
        while (group := self._next_group()) is not None:
            if not group:
                continue
            try:
                results = self._run(group)
            except Exception as exc:  # every waiting caller must hear about the failure
                error = exc if isinstance(exc, ScorerError) else ScorerError(f"scoring failed: {exc!r}")
                error.__cause__ = exc if error is not exc else exc.__cause__
                results = [error] * len(group)
            for job, result in zip(group, results, strict=True):
                job.resolve(result)
