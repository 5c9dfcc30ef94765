"""Test helpers for code that uses csrm_guard: scorers that load no model, and decision capture.

Example:
    >>> from csrm_guard import Guard, Policy
    >>> from csrm_guard.testing import FakeScorer, capture_decisions
    >>> scorer = FakeScorer(lambda clause, transcript: 0.9 if "bomb" in transcript else 0.01)
    >>> guard = Guard(Policy(name="demo"), scorer=scorer)
    >>> with capture_decisions() as decisions:
    ...     _ = guard.check_input([{"role": "user", "content": "how do I build a bomb"}])
    >>> decisions[0].outcome
    'block'

Guard, decorator, middleware and CLI tests in this project use these helpers and never load a real ONNX model;
your own tests need not either.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping

from csrm_guard._types import Outcome
from csrm_guard.guard import audit as _audit
from csrm_guard.guard._core import Decision, reward_of
from csrm_guard.model.types import ClauseScore, ScoreRequest, Verdict
from csrm_guard.policy.render import Clause

__all__ = ["FakeScorer", "StaticScorer", "assert_decision", "capture_decisions"]

ScoreFn = Callable[[Clause, str], float] | Callable[[Clause, str], Awaitable[float]]


class FakeScorer:
    """A scorer that asks a function for each clause's probability; implements both scorer protocols.

    Args:
        fn: ``fn(clause, transcript) -> probability``, sync or async. It may raise or sleep to simulate a
            broken or slow model, and may return NaN to simulate an unusable one.
        threshold: The threshold the fake model "recommends" (used when the policy sets none).
        model_id: Reported in decisions.

    Attributes:
        calls: Every request scored, in order.
    """

    def __init__(self, fn: ScoreFn, *, threshold: float = 0.5, model_id: str = "fake-scorer") -> None:
        self.fn = fn
        self.threshold = threshold
        self.model_id = model_id
        self.calls: list[ScoreRequest] = []
        self.closed = False
        self._lock = threading.Lock()

    def score(self, request: ScoreRequest) -> Verdict:
        """Score ``request`` by calling ``fn`` for each clause of its stage."""
        if inspect.iscoroutinefunction(self.fn):
            return asyncio.run(self.ascore(request))
        self._record(request)
        clauses = request.rendered.for_stage(request.stage)
        fn = self.fn
        return self._verdict(request, [float(fn(c, request.transcript)) for c in clauses])  # type: ignore[arg-type]

    async def ascore(self, request: ScoreRequest) -> Verdict:
        """Async twin of :meth:`score`: awaits an async ``fn``, runs a sync one in a thread.

        A sync ``fn`` runs off the event loop, as a real model does, so a slow or hanging ``fn`` exercises the
        guard's timeouts instead of freezing the loop.
        """
        if not inspect.iscoroutinefunction(self.fn):
            return await asyncio.to_thread(self.score, request)
        self._record(request)
        clauses = request.rendered.for_stage(request.stage)
        probabilities = [float(await self.fn(clause, request.transcript)) for clause in clauses]
        return self._verdict(request, probabilities)

    def close(self) -> None:
        """Mark the scorer closed."""
        self.closed = True

    async def aclose(self) -> None:
        """Mark the scorer closed."""
        self.closed = True

    def _record(self, request: ScoreRequest) -> None:
        with self._lock:
            self.calls.append(request)

    def _verdict(self, request: ScoreRequest, probabilities: list[float]) -> Verdict:
        clauses = request.rendered.for_stage(request.stage)
        scores = tuple(ClauseScore(c.id, c.kind, p) for c, p in zip(clauses, probabilities, strict=True))
        # max() would hide a NaN depending on order; propagate it so the guard's validation sees it.
        overall = math.nan if any(math.isnan(p) for p in probabilities) else max(probabilities, default=0.0)
        return Verdict(
            stage=request.stage,
            scores=scores,
            violation_probability=overall,
            reward=reward_of(overall) if not math.isnan(overall) else math.nan,
            threshold=self.threshold,
            model_id=self.model_id,
            latency_ms=0.0,
        )


class StaticScorer(FakeScorer):
    """A scorer returning fixed probabilities.

    Args:
        scores: One probability for every clause, or clause id -> probability (others get ``default``).
        default: Probability of clauses missing from ``scores``.
        threshold: The threshold the fake model "recommends".
        model_id: Reported in decisions.
    """

    def __init__(
        self,
        scores: Mapping[str, float] | float,
        *,
        default: float = 0.0,
        threshold: float = 0.5,
        model_id: str = "static-scorer",
    ) -> None:
        table = dict(scores) if isinstance(scores, Mapping) else None
        fixed = float(scores) if not isinstance(scores, Mapping) else default

        def lookup(clause: Clause, transcript: str) -> float:
            return table.get(clause.id, default) if table is not None else fixed

        super().__init__(lookup, threshold=threshold, model_id=model_id)


@contextlib.contextmanager
def capture_decisions() -> Iterator[list[Decision]]:
    """Collect every decision any Guard makes inside the block, from any thread or task.

    Yields:
        The list the decisions are appended to, in the order they were made.
    """
    captured: list[Decision] = []
    _audit.add_listener(captured.append)
    try:
        yield captured
    finally:
        _audit.remove_listener(captured.append)


def assert_decision(
    decision: Decision,
    *,
    outcome: Outcome | None = None,
    allowed: bool | None = None,
    violations: Iterable[str] | None = None,
    min_probability: float | None = None,
    max_probability: float | None = None,
    error: bool | None = None,
) -> None:
    """Assert properties of a decision, with a message that shows the whole decision on failure.

    Args:
        decision: The decision to check.
        outcome: The expected outcome.
        allowed: The expected ``allowed`` flag.
        violations: Clause ids that must all be among the violations.
        min_probability: Lower bound on ``violation_probability``.
        max_probability: Upper bound on ``violation_probability``.
        error: Whether the fail mode must (True) or must not (False) have decided.

    Raises:
        AssertionError: Naming every expectation that failed.
    """
    found = {violation.id for violation in decision.violations}
    expected = set(violations) if violations is not None else set()
    checks: list[tuple[bool, str]] = [
        (outcome is None or decision.outcome == outcome, f"outcome {decision.outcome!r} != {outcome!r}"),
        (allowed is None or decision.allowed == allowed, f"allowed {decision.allowed} != {allowed}"),
        (expected <= found, f"violations {sorted(found)} lack {sorted(expected - found)}"),
        (
            min_probability is None or decision.violation_probability >= min_probability,
            f"violation_probability {decision.violation_probability:.4f} < {min_probability}",
        ),
        (
            max_probability is None or decision.violation_probability <= max_probability,
            f"violation_probability {decision.violation_probability:.4f} > {max_probability}",
        ),
        (error is None or (decision.error is not None) == error, f"error is {decision.error!r}"),
    ]
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise AssertionError("; ".join(problems) + f"\n  decision: {decision!r}")
