"""The I/O-free decision core: score requests in, :class:`Decision` objects out.

Every driver (sync, async, streaming, decorator, middleware) goes through :class:`DecisionCore`: it renders
the transcript into a :class:`~csrm_guard.model.types.ScoreRequest`, checks the scorer's
:class:`~csrm_guard.model.types.Verdict` for unusable values, and turns a verdict (or a failure to get one)
into a :class:`Decision` by applying the stage's threshold, the clauses' action overrides and the fail mode.
Nothing here blocks, sleeps, spawns or logs, so the same rules hold for every driver and are tested once.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from csrm_guard._types import Messages, Outcome, Stage
from csrm_guard.errors import CheckError, ScorerError
from csrm_guard.model.types import ClauseScore, ScoreRequest, Verdict
from csrm_guard.policy.render import Clause, RenderedPolicy, render_policy, render_refusal, render_transcript
from csrm_guard.policy.schema import Policy, StageSettings
from csrm_guard.policy.severity import Action, FailMode

__all__ = ["ACTION_ORDER", "Decision", "DecisionCore", "Violation", "new_request_id", "reward_of"]

ACTION_ORDER: tuple[Action, ...] = (
    Action.BLOCK,
    Action.REFUSE,
    Action.REGENERATE,
    Action.BEST_OF_N,
    Action.MONITOR,
)
"""Actions from strictest to most lenient: when several clauses are violated, the strictest action wins."""

_RANK = {action: rank for rank, action in enumerate(ACTION_ORDER)}
_EPS = 1e-6


def new_request_id() -> str:
    """Return a fresh random request id (32 hex characters)."""
    return uuid.uuid4().hex


def reward_of(probability: float) -> float:
    """Compliance log-odds ``log((1 - p) / p)`` with ``p`` clipped to ``[1e-6, 1 - 1e-6]``."""
    p = min(max(probability, _EPS), 1.0 - _EPS)
    return math.log((1.0 - p) / p)


@dataclass(frozen=True, slots=True)
class Violation:
    """One clause whose violation probability reached the stage threshold.

    Attributes:
        id: The clause id: a category id, a rule id or ``guidelines.N``.
        kind: ``category``, ``rule`` or ``guideline``.
        probability: The clause's calibrated violation probability.
        action: The action this clause asks for (its own override, else the stage's action).

    .. versionadded:: 0.1
    """

    id: str
    kind: str
    probability: float
    action: Action


@dataclass(frozen=True, slots=True)
class Decision:
    """What a check decided, with everything needed to explain and audit it.

    Attributes:
        outcome: ``allow``, or the action taken on a violation (``block``, ``refuse``, ``regenerate``,
            ``best_of_n``, ``monitor``).
        allowed: Whether the checked text may reach its destination as it is (``allow`` and ``monitor``).
        stage: ``input`` or ``output``.
        violation_probability: Policy-level calibrated violation probability (max over clauses). When
            ``error`` is set it is a stand-in: 1.0 when the check failed closed, 0.0 when it failed open.
        reward: Compliance log-odds ``log((1 - p) / p)``: higher is safer.
        violations: The clauses at or over the threshold, most probable first.
        scores: Every clause score the scorer returned.
        threshold: The threshold applied (the stage's, else the model's); ``None`` when no score was obtained.
        latency_ms: Wall time of the whole check, rendering and scoring included.
        policy_name: The policy's name.
        policy_version: The policy's own version string.
        policy_hash: :attr:`csrm_guard.policy.RenderedPolicy.hash`, identifying the exact text the model read.
        model_id: The model that scored the check (empty when no score was obtained).
        request_id: Correlates the decisions of one call (input and output checks share it).
        error: Why no score was obtained, when the stage's fail mode decided; ``None`` otherwise.
        refusal: The policy's rendered refusal text when the outcome is ``refuse``.

    .. versionadded:: 0.1
    """

    outcome: Outcome
    allowed: bool
    stage: Stage
    violation_probability: float
    reward: float
    violations: tuple[Violation, ...]
    scores: tuple[ClauseScore, ...]
    threshold: float | None
    latency_ms: float
    policy_name: str
    policy_version: str
    policy_hash: str
    model_id: str
    request_id: str
    error: str | None = None
    refusal: str | None = None

    @property
    def violated(self) -> bool:
        """Whether the check found (or, failing closed, assumed) a violation, whatever the action."""
        return self.outcome != "allow"

    @property
    def probabilities(self) -> dict[str, float]:
        """Clause id -> calibrated violation probability, for every scored clause."""
        return {score.clause_id: score.probability for score in self.scores}


class DecisionCore:
    """Policy-dependent state computed once, and the pure functions that turn verdicts into decisions.

    Args:
        policy: The policy to enforce; it is rendered once (cached by :func:`render_policy`).

    Raises:
        TemplateError: When the policy cannot be rendered or its refusal template is invalid.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.rendered: RenderedPolicy = render_policy(policy)
        self._clauses: Mapping[str, Clause] = {clause.id: clause for clause in self.rendered.clauses}
        render_refusal(
            policy, stage="input", violations=()
        )  # fail at construction, not on the first violation

    def settings(self, stage: Stage) -> StageSettings:
        """Return the policy's settings for ``stage``."""
        return self.policy.stage(stage)

    def prepare(self, stage: Stage, messages: Messages, response: str | None = None) -> ScoreRequest:
        """Render the transcript of one check into a score request.

        Raises:
            InputError: When the messages or the response are malformed.
        """
        transcript = render_transcript(messages, stage=stage, response=response)
        return ScoreRequest(rendered=self.rendered, stage=stage, transcript=transcript)

    def validate(self, request: ScoreRequest, verdict: object) -> Verdict:
        """Return ``verdict`` if it is usable for ``request``.

        Raises:
            ScorerError: When the scorer returned something other than a Verdict, a NaN or out-of-range
                probability, or a score for a clause the policy does not have.
        """
        if not isinstance(verdict, Verdict):
            raise ScorerError(f"scorer returned {type(verdict).__name__}, expected a Verdict")
        if not _is_probability(verdict.violation_probability):
            raise ScorerError(f"scorer returned violation_probability={verdict.violation_probability!r}")
        if not _is_probability(verdict.threshold):
            raise ScorerError(f"scorer returned threshold={verdict.threshold!r}")
        for score in verdict.scores:
            if score.clause_id not in self._clauses:
                raise ScorerError(f"scorer returned a score for unknown clause {score.clause_id!r}")
            if not _is_probability(score.probability):
                raise ScorerError(
                    f"scorer returned probability={score.probability!r} for {score.clause_id!r}"
                )
        if verdict.stage != request.stage:
            raise ScorerError(f"scorer answered for stage {verdict.stage!r}, asked {request.stage!r}")
        return verdict

    def decide(self, stage: Stage, verdict: Verdict, *, request_id: str, latency_ms: float) -> Decision:
        """Apply the stage threshold and the clauses' actions to a validated verdict."""
        settings = self.settings(stage)
        threshold = settings.threshold if settings.threshold is not None else verdict.threshold
        violations = tuple(
            sorted(
                (
                    self._violation(score, settings)
                    for score in verdict.scores
                    if score.probability >= threshold
                ),
                key=lambda violation: -violation.probability,
            )
        )
        action = _strictest(violation.action for violation in violations) if violations else None
        return self._decision(
            stage,
            action,
            violation_probability=verdict.violation_probability,
            reward=verdict.reward,
            violations=violations,
            scores=verdict.scores,
            threshold=threshold,
            latency_ms=latency_ms,
            model_id=verdict.model_id,
            request_id=request_id,
        )

    def fail(self, stage: Stage, error: CheckError, *, request_id: str, latency_ms: float) -> Decision:
        """Apply the stage's fail mode when no verdict could be obtained."""
        settings = self.settings(stage)
        closed = settings.fail is FailMode.CLOSED
        probability = 1.0 if closed else 0.0
        return self._decision(
            stage,
            settings.action if closed else None,
            violation_probability=probability,
            reward=reward_of(probability),
            violations=(),
            scores=(),
            threshold=settings.threshold,
            latency_ms=latency_ms,
            model_id="",
            request_id=request_id,
            error=f"{type(error).__name__}: {error}",
        )

    def skipped(self, stage: Stage, *, request_id: str) -> Decision:
        """The decision for a disabled stage: allowed, nothing scored."""
        return self._decision(
            stage,
            None,
            violation_probability=0.0,
            reward=reward_of(0.0),
            violations=(),
            scores=(),
            threshold=None,
            latency_ms=0.0,
            model_id="",
            request_id=request_id,
        )

    def refusal(self, stage: Stage, violations: tuple[Violation, ...] = ()) -> str:
        """Render the policy's refusal for ``stage`` and ``violations``."""
        return render_refusal(self.policy, stage=stage, violations=[violation.id for violation in violations])

    def _violation(self, score: ClauseScore, settings: StageSettings) -> Violation:
        clause = self._clauses[score.clause_id]
        return Violation(score.clause_id, score.kind, score.probability, clause.action or settings.action)

    def _decision(
        self,
        stage: Stage,
        action: Action | None,
        *,
        violation_probability: float,
        reward: float,
        violations: tuple[Violation, ...],
        scores: tuple[ClauseScore, ...],
        threshold: float | None,
        latency_ms: float,
        model_id: str,
        request_id: str,
        error: str | None = None,
    ) -> Decision:
        outcome: Outcome = "allow" if action is None else action.value
        return Decision(
            outcome=outcome,
            allowed=outcome in ("allow", "monitor"),
            stage=stage,
            violation_probability=violation_probability,
            reward=reward,
            violations=violations,
            scores=scores,
            threshold=threshold,
            latency_ms=latency_ms,
            policy_name=self.policy.name,
            policy_version=self.policy.version,
            policy_hash=self.rendered.hash,
            model_id=model_id,
            request_id=request_id,
            error=error,
            refusal=self.refusal(stage, violations) if outcome == "refuse" else None,
        )


def _strictest(actions: Iterable[Action]) -> Action:
    return min(actions, key=_RANK.__getitem__)


def _is_probability(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0
