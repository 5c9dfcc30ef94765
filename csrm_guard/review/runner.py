"""Run policy test cases through a :class:`~csrm_guard.guard.Guard` and compare decisions with expectations.

Each case is checked with its own policy's settings (stage actions, thresholds, fail modes), exactly as
production traffic would be. A case *fails* when the decision differs from what it expects, and *errors* when
no decision could be reached (the scorer raised or timed out, or the transcript could not be rendered). A case
marked ``xfail`` (a known model limitation) is *xfailed* when the decision misses its expectations, which does
not fail the run, and *xpassed* when it meets them, which does (strict, like pytest's ``xfail(strict=True)``):
the marker must go once the model gets the case right. The same function serves ``csrm-guard test``, the
pytest plugin and CI.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from csrm_guard._types import Messages, Stage
from csrm_guard.errors import CsrmGuardError
from csrm_guard.guard import Decision, Guard
from csrm_guard.model.types import AsyncScorer, Scorer
from csrm_guard.policy import Policy, PolicyTest
from csrm_guard.review.discover import PolicyCase, discover, select

__all__ = [
    "TEST_TIMEOUT_MS",
    "CaseResult",
    "CaseStatus",
    "GuardPool",
    "TestRun",
    "check_expectation",
    "run_case",
    "run_cases",
    "run_policy_tests",
]

logger = logging.getLogger(__name__)

ModelPath = str | os.PathLike[str]

TEST_TIMEOUT_MS = 60_000
"""The least timeout a policy test or diff check gets (the policy's own timeout when that is longer)."""

CaseStatus = Literal["passed", "failed", "error", "xfailed", "xpassed"]
"""The status of a case: ``passed`` and ``xfailed`` keep a run green, the others fail it."""


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case.

    Attributes:
        case: The case that ran.
        decision: The guard's decision, or ``None`` when the check raised.
        failures: Why the decision does not meet the expectation (empty when it does, ``xfail`` or not).
        error: Why no decision could be reached, when that happened.
        duration_s: Wall time of the check.
    """

    case: PolicyCase
    decision: Decision | None
    failures: tuple[str, ...]
    error: str | None
    duration_s: float

    @property
    def status(self) -> CaseStatus:
        """``passed``, ``failed`` or ``error``; ``xfailed`` or ``xpassed`` for a case marked ``xfail``."""
        if self.error is not None:
            return "error"
        if self.case.test.xfail is not None:
            return "xfailed" if self.failures else "xpassed"
        return "failed" if self.failures else "passed"

    @property
    def passed(self) -> bool:
        """Whether the case passed (an ``xfailed`` case did not pass, but see :attr:`ok`)."""
        return self.status == "passed"

    @property
    def ok(self) -> bool:
        """Whether the case keeps the run green: it passed, or it failed as its ``xfail`` marker says."""
        return self.status in ("passed", "xfailed")

    @property
    def messages(self) -> tuple[str, ...]:
        """What went wrong: the unmet expectations, or for an ``xpassed`` case why that fails the run."""
        if self.status == "xpassed":
            return (f'passed, but is marked xfail ("{self.case.test.xfail}"): remove the marker',)
        return self.failures


@dataclass(frozen=True, slots=True)
class TestRun:
    """The results of a run, in case order.

    Attributes:
        results: One result per case run.
        policies: How many policies were found (with or without cases).
        deselected: Cases left out by the ``--run`` pattern.
    """

    __test__ = False  # keep pytest from collecting this class

    results: tuple[CaseResult, ...]
    policies: int = 0
    deselected: int = 0

    def count(self, status: CaseStatus) -> int:
        """How many results have ``status`` (``passed``, ``failed``, ``error``, ``xfailed`` or ``xpassed``)."""
        return sum(1 for result in self.results if result.status == status)

    @property
    def ok(self) -> bool:
        """Whether at least one case ran and every case passed or, being marked ``xfail``, failed."""
        return bool(self.results) and all(result.ok for result in self.results)

    @property
    def duration_s(self) -> float:
        """Total time spent in checks."""
        return sum(result.duration_s for result in self.results)


def check_expectation(test: PolicyTest, decision: Decision) -> tuple[str, ...]:
    """Compare a decision with what a case expects.

    Args:
        test: The case.
        decision: The decision the guard reached for it.

    Returns:
        One message per unmet expectation; empty when the decision is as expected.
    """
    failures: list[str] = []
    violated = {violation.id for violation in decision.violations}
    if test.expect == "violation":
        if decision.outcome == "allow":
            failures.append("expected a violation, got allow")
    elif decision.outcome != test.expect:
        failures.append(f"expected {test.expect}, got {decision.outcome}")
    missing = [rule for rule in test.violations if rule not in violated]
    if missing:
        failures.append(f"expected violations {', '.join(missing)} not found")
    p = decision.violation_probability
    if test.min_probability is not None and p < test.min_probability:
        failures.append(f"violation probability {p:.3f} < min_probability {test.min_probability:g}")
    if test.max_probability is not None and p > test.max_probability:
        failures.append(f"violation probability {p:.3f} > max_probability {test.max_probability:g}")
    return tuple(failures)


class GuardPool:
    """One :class:`Guard` per policy over one shared scorer, so a model bundle is loaded once per run.

    Checks run with the policy's own settings, except that stage timeouts are raised to at least
    ``min_timeout_ms``: a test judges the decision, and a slow or busy machine must not turn it into the fail
    mode's outcome (latency is what ``csrm-guard bench`` measures).

    Args:
        model: The model bundle folder (``None``: the default bundle); loaded on the first check.
        scorer: A scorer to use instead of a bundle (the caller keeps ownership).
        min_timeout_ms: The least timeout a check gets; ``None`` keeps the policy's timeouts.
    """

    def __init__(
        self,
        model: ModelPath | None = None,
        *,
        scorer: Scorer | AsyncScorer | None = None,
        min_timeout_ms: int | None = TEST_TIMEOUT_MS,
    ) -> None:
        self._model = model
        self._scorer = scorer
        self._owns_scorer = scorer is None
        self._min_timeout_ms = min_timeout_ms
        self._guards: dict[str, Guard] = {}

    @property
    def scorer(self) -> Scorer | AsyncScorer:
        """The shared scorer, loading the bundle on first use.

        Raises:
            ModelError: When the bundle cannot be loaded.
        """
        if self._scorer is None:
            self._scorer = self.load_scorer(self._model)
        return self._scorer

    @staticmethod
    def load_scorer(model: ModelPath | None) -> Scorer | AsyncScorer:
        """Load the scorer of a model bundle: the one place where the review workflow loads a model.

        Args:
            model: The bundle folder, or ``None`` for the shipped default bundle.

        Returns:
            An :class:`~csrm_guard.model.OnnxScorer`.

        Raises:
            ModelError: When the bundle is missing, corrupt or incompatible.
        """
        from csrm_guard.model import OnnxScorer  # noqa: PLC0415  (onnxruntime loads only when a model is needed)

        logger.info("loading model bundle %s", model or "(default)")
        return OnnxScorer.load(model)

    def guard(self, policy: Policy) -> Guard:
        """Return the guard of ``policy``, building it on first use."""
        if policy.hash not in self._guards:
            self._guards[policy.hash] = Guard(self._patient(policy), scorer=self.scorer)
        return self._guards[policy.hash]

    def _patient(self, policy: Policy) -> Policy:
        if self._min_timeout_ms is None:
            return policy
        data = policy.model_dump()
        for stage in ("input", "output"):
            data[stage]["timeout_ms"] = max(data[stage]["timeout_ms"], self._min_timeout_ms)
        # Rebuilt rather than model_copy()'d: a copy would keep the cached `hash` of the original.
        return Policy(**data)

    def decide(
        self, policy: Policy, stage: Stage, messages: Messages, response: str | None = None
    ) -> Decision:
        """Check one conversation with ``policy``'s guard at ``stage``.

        Raises:
            InputError: When the conversation cannot be rendered.
        """
        guard = self.guard(policy)
        if stage == "output":
            return guard.check_output(messages, response or "")
        return guard.check_input(messages)

    def close(self) -> None:
        """Close the guards, and the scorer when the pool loaded it."""
        for guard in self._guards.values():
            guard.close()
        self._guards.clear()
        if self._owns_scorer and self._scorer is not None:
            close = getattr(self._scorer, "close", None)
            if callable(close):
                close()
            self._scorer = None

    @contextmanager
    def opened(self) -> Iterator[GuardPool]:
        """Use the pool as a context manager that closes it."""
        try:
            yield self
        finally:
            self.close()


def run_case(pool: GuardPool, case: PolicyCase) -> CaseResult:
    """Run one case through ``pool`` and judge the decision."""
    started = time.perf_counter()
    try:
        test = case.test
        messages = [message.model_dump() for message in test.messages]
        decision = pool.decide(case.policy, test.judged_stage, messages, test.response)
    except CsrmGuardError as exc:
        return CaseResult(case, None, (), f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    if decision.error is not None:
        return CaseResult(case, decision, (), f"no decision could be reached: {decision.error}", elapsed)
    return CaseResult(case, decision, check_expectation(case.test, decision), None, elapsed)


def run_cases(
    cases: Iterable[PolicyCase],
    *,
    model: ModelPath | None = None,
    scorer: Scorer | AsyncScorer | None = None,
) -> tuple[CaseResult, ...]:
    """Run cases through guards built with their own policies.

    Args:
        cases: The cases to run.
        model: The model bundle folder (``None``: the default bundle).
        scorer: A scorer to use instead of a bundle.

    Returns:
        One result per case, in order.

    Raises:
        ModelError: When the model bundle cannot be loaded.
    """
    cases = tuple(cases)
    with GuardPool(model, scorer=scorer).opened() as pool:
        if cases:
            _ = pool.scorer  # load the model once, up front, so a broken bundle fails the run, not each case
        return tuple(run_case(pool, case) for case in cases)


def run_policy_tests(
    paths: Iterable[str | Path],
    *,
    pattern: str | re.Pattern[str] | None = None,
    model: ModelPath | None = None,
    scorer: Scorer | AsyncScorer | None = None,
) -> TestRun:
    """Discover the policies and cases under ``paths`` and run them, like ``opa test``.

    Args:
        paths: Policy files, tests files and folders.
        pattern: Run only cases whose ``<policy>::<case>`` id matches this regular expression.
        model: The model bundle folder (``None``: the default bundle).
        scorer: A scorer to use instead of a bundle (e.g. :class:`csrm_guard.testing.FakeScorer`).

    Returns:
        The results; :attr:`TestRun.ok` is false when no case ran, so "no tests found" fails by default.

    Raises:
        PolicyValidationError: When a policy or tests file is invalid.
        ModelError: When the model bundle cannot be loaded.

    Example:
        >>> from csrm_guard.testing import StaticScorer
        >>> run = run_policy_tests(["policies/"], scorer=StaticScorer(0.0))  # doctest: +SKIP
        >>> run.ok  # doctest: +SKIP
        False

    .. versionadded:: 0.1
    """
    found = discover(paths)
    chosen = select(found.cases, pattern)
    results = run_cases(chosen, model=model, scorer=scorer)
    return TestRun(results=results, policies=len(found.suites), deselected=len(found.cases) - len(chosen))
