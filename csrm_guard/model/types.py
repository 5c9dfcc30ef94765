"""What crosses the boundary between the guard and a scorer: requests, clause scores, verdicts, protocols.

A scorer turns a :class:`ScoreRequest` (a rendered policy, a rendered transcript and the stage) into a
:class:`Verdict`: one calibrated violation probability per scored clause, the policy-level aggregate and the reward.
Scorers are tiny protocols (STYLE.md item 7): :class:`Scorer` for sync code, :class:`AsyncScorer` for async code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from csrm_guard._types import Stage
from csrm_guard.policy.render import ClauseKind, RenderedPolicy
from csrm_guard.policy.severity import Severity

__all__ = ["AsyncScorer", "ClauseScore", "ScoreRequest", "Scorer", "Verdict"]


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One check to score.

    Attributes:
        rendered: The policy, rendered once per version (see :func:`csrm_guard.policy.render_policy`).
        stage: The stage being checked; only clauses that apply to it are scored.
        transcript: The conversation rendered by :func:`csrm_guard.policy.render_transcript`.
    """

    rendered: RenderedPolicy
    stage: Stage
    transcript: str


@dataclass(frozen=True, slots=True)
class ClauseScore:
    """The calibrated score of one clause.

    Attributes:
        clause_id: The clause's id (category id, rule id or ``guidelines.N``).
        kind: ``category``, ``rule`` or ``guideline``.
        probability: Calibrated probability that the judged turn violates the clause.
        severity: For category clauses scored by the severity head, the most likely severity; else ``None``.
    """

    clause_id: str
    kind: ClauseKind
    probability: float
    severity: Severity | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A scorer's answer for one request.

    Attributes:
        stage: The stage that was scored.
        scores: One score per clause that was scored (clauses dropped by retrieval are absent).
        violation_probability: Policy-level probability of a violation (aggregate over clauses).
        reward: Compliance log-odds, ``log((1 - p) / p)``: higher is safer.
        threshold: The threshold the scorer's model recommends for this stage.
        model_id: Identifies the model (bundle id and hash) that produced the scores.
        latency_ms: Time spent scoring.
    """

    stage: Stage
    scores: tuple[ClauseScore, ...]
    violation_probability: float
    reward: float
    threshold: float
    model_id: str
    latency_ms: float


@runtime_checkable
class Scorer(Protocol):
    """Scores requests synchronously."""

    def score(self, request: ScoreRequest) -> Verdict:
        """Score one request."""
        ...

    def close(self) -> None:
        """Release resources (sessions, threads)."""
        ...


@runtime_checkable
class AsyncScorer(Protocol):
    """Scores requests from async code without blocking the event loop."""

    async def ascore(self, request: ScoreRequest) -> Verdict:
        """Score one request."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...
