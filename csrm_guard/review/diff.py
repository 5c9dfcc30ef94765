"""Compare two versions of a policy (or of a folder of policies): what changed, and which decisions flip.

The semantic part (:func:`~csrm_guard.review.semantic.semantic_diff`) needs no model. The flip part replays
every conversation (the policies' tests plus an optional JSONL corpus) through a guard for each version, with
one shared scorer, and reports each conversation whose outcome differs, with the clauses responsible and their
probabilities before and after. A list of expected flips turns the report into a gate: CI fails on any flip
nobody expected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from csrm_guard.errors import CsrmGuardError, DataError
from csrm_guard.guard import Decision
from csrm_guard.model.types import AsyncScorer, Scorer
from csrm_guard.policy import Policy
from csrm_guard.review.corpus import Conversation, from_tests, load_corpus
from csrm_guard.review.discover import PolicySuite, discover, is_test_file
from csrm_guard.review.runner import GuardPool, ModelPath
from csrm_guard.review.semantic import Change, changed_clauses, semantic_diff

__all__ = [
    "ClauseChange",
    "DiffReport",
    "Flip",
    "PolicyDiff",
    "RowDecision",
    "add_conversations",
    "clause_changes",
    "diff_policies",
    "read_expected_flips",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClauseChange:
    """How one clause's judgement moved between the versions.

    Attributes:
        clause_id: The clause (category id, rule id or ``guidelines.N``).
        old_probability: Its probability under the old version (``None`` when not scored there).
        new_probability: Its probability under the new version (``None`` when not scored there).
        old_violated: Whether it was over the old threshold.
        new_violated: Whether it is over the new threshold.
        clause_changed: Whether the clause itself changed (text, action or stages), added or removed.
    """

    clause_id: str
    old_probability: float | None
    new_probability: float | None
    old_violated: bool
    new_violated: bool
    clause_changed: bool


@dataclass(frozen=True, slots=True)
class RowDecision:
    """A decision as a batch run records it: outcome, policy probability and violated clauses, no clause scores.

    Conversations decided outside the guard pool (a large corpus scored by :mod:`csrm_guard.batch`) carry
    these instead of a full :class:`~csrm_guard.guard.Decision`.

    Attributes:
        outcome: ``allow``, or the action taken on a violation.
        violation_probability: The policy-level violation probability.
        violations: Ids of the clauses at or over the threshold.
    """

    outcome: str
    violation_probability: float
    violations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Flip:
    """A conversation whose outcome differs between the versions (or, for a shift, whose violated clauses do).

    Attributes:
        policy: The policy's name.
        conversation: The conversation.
        old: The old version's decision (a :class:`RowDecision` for a corpus scored in batch).
        new: The new version's decision (likewise).
        clauses: The clauses responsible: those whose violated status changed, or, when only an action
            changed, the clauses violated under both.
        expected: Whether the flip was listed as expected; ``None`` when no list was given.
    """

    policy: str
    conversation: Conversation
    old: Decision | RowDecision
    new: Decision | RowDecision
    clauses: tuple[ClauseChange, ...]
    expected: bool | None = None

    @property
    def id(self) -> str:
        """``<policy>::<conversation id>``, the form expected-flips files use."""
        return f"{self.policy}::{self.conversation.id}"


@dataclass(frozen=True, slots=True)
class PolicyDiff:
    """Everything that differs between two versions of one policy.

    Attributes:
        name: The policy's name (the new one's when both exist).
        old: The old version, ``None`` when the policy is new.
        new: The new version, ``None`` when the policy was removed.
        changes: The semantic changes.
        flips: The decisions that flip.
        checked: How many conversations were replayed with both versions.
        errors: ``<id>: <why>`` for conversations that could not be decided by one of the versions.
        shifts: Conversations that keep their outcome but whose violated clauses change (another clause still
            decides them); not gated, shown so a reviewer sees effects the outcome hides.
    """

    name: str
    old: Policy | None
    new: Policy | None
    changes: tuple[Change, ...] = ()
    flips: tuple[Flip, ...] = ()
    checked: int = 0
    errors: tuple[str, ...] = ()
    shifts: tuple[Flip, ...] = ()

    @property
    def status(self) -> str:
        """``added``, ``removed``, ``changed`` or ``unchanged``."""
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed" if self.changes or self.flips or self.shifts else "unchanged"


@dataclass(frozen=True, slots=True)
class DiffReport:
    """The comparison of two policy versions or two folders of policies.

    Attributes:
        policies: One entry per policy name found on either side.
        expected: The flip ids listed as expected, or ``None`` when no list was given.
    """

    policies: tuple[PolicyDiff, ...]
    expected: frozenset[str] | None = None

    @property
    def flips(self) -> tuple[Flip, ...]:
        """Every flip, policy by policy."""
        return tuple(flip for diff in self.policies for flip in diff.flips)

    @property
    def unexpected_flips(self) -> tuple[Flip, ...]:
        """Flips not listed as expected (every flip when no list was given)."""
        return tuple(flip for flip in self.flips if not flip.expected)

    @property
    def missing_expected(self) -> tuple[str, ...]:
        """Expected flip ids that did not flip."""
        if self.expected is None:
            return ()
        hit = {key for flip in self.flips for key in (flip.id, flip.conversation.id)}
        return tuple(sorted(self.expected - hit))

    @property
    def errors(self) -> tuple[str, ...]:
        """Conversations that could not be decided, as ``<policy>::<id>: <why>``."""
        return tuple(f"{diff.name}::{error}" for diff in self.policies for error in diff.errors)

    def passed(self, *, fail_on_flips: bool = False) -> bool:
        """Whether the gate passes.

        Args:
            fail_on_flips: Fail on any flip (otherwise only flips are checked against the expected list,
                when one was given).

        Returns:
            ``False`` when a flip is unexpected (or any flip, with ``fail_on_flips``) or an expected flip is
            missing.
        """
        if fail_on_flips and self.flips:
            return False
        if self.expected is None:
            return True
        return not self.unexpected_flips and not self.missing_expected


def read_expected_flips(path: str | Path) -> frozenset[str]:
    """Read an expected-flips file: one flip id per line (``<policy>::<id>`` or ``<id>``), ``#`` comments.

    Raises:
        DataError: When the file cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the expected flips: {exc}", source=str(path)) from exc
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(line for line in lines if line)


def diff_policies(
    old: Policy | str | Path,
    new: Policy | str | Path,
    *,
    corpus: str | Path | Sequence[Conversation] | None = None,
    model: ModelPath | None = None,
    scorer: Scorer | AsyncScorer | None = None,
    expected_flips: Iterable[str] | None = None,
    replay: bool = True,
) -> DiffReport:
    """Compare two policy versions, or two folders of policies paired by policy name.

    Args:
        old: The version before: a policy, a policy file, or a folder of policies.
        new: The version after, of the same kind.
        corpus: A JSONL corpus (or conversations) replayed in addition to the policies' tests.
        model: The model bundle folder (``None``: the default bundle).
        scorer: A scorer to use instead of a bundle.
        expected_flips: Flip ids (``<policy>::<id>`` or ``<id>``) that are meant to flip.
        replay: Replay conversations to find flips; ``False`` gives the semantic diff alone (no model).

    Returns:
        The report; :meth:`DiffReport.passed` is the CI gate.

    Raises:
        PolicyValidationError: When a policy or tests file is invalid.
        DataError: When the corpus is malformed.
        ModelError: When the model bundle cannot be loaded.

    .. versionadded:: 0.1
    """
    rows = tuple(load_corpus(corpus) if isinstance(corpus, str | Path) else corpus or ())
    expected = frozenset(expected_flips) if expected_flips is not None else None
    pairs = _pair(_side(old), _side(new))
    with GuardPool(model, scorer=scorer).opened() as pool:
        diffs = tuple(
            _diff_pair(name, a, b, rows, pool if replay else None, expected) for name, (a, b) in pairs.items()
        )
    return DiffReport(policies=diffs, expected=expected)


_Side = dict[str, PolicySuite | Policy]


def _side(source: Policy | str | Path) -> _Side:
    if isinstance(source, Policy):
        return {source.name: source}
    path = Path(source)
    if path.is_dir():
        return {suite.policy.name: suite for suite in discover([path]).suites}
    siblings = sorted(p for p in path.parent.glob("*_test.*") if is_test_file(p)) if path.is_file() else []
    suites = [s for s in discover([path, *siblings]).suites if s.path.resolve() == path.resolve()]
    return {suite.policy.name: suite for suite in suites}


def _pair(
    old: _Side, new: _Side
) -> dict[str, tuple[PolicySuite | Policy | None, PolicySuite | Policy | None]]:
    if len(old) == 1 and len(new) == 1:  # two single policies are compared even when renamed
        (_, a), (name_b, b) = next(iter(old.items())), next(iter(new.items()))
        return {name_b: (a, b)}
    names = sorted(old.keys() | new.keys())
    return {name: (old.get(name), new.get(name)) for name in names}


def _policy(item: PolicySuite | Policy | None) -> Policy | None:
    return item.policy if isinstance(item, PolicySuite) else item


def _conversations(*items: PolicySuite | Policy | None) -> tuple[Conversation, ...]:
    extra = [case.test for item in items if isinstance(item, PolicySuite) for case in item.cases]
    return from_tests(extra=extra) if extra else from_tests(*(_policy(item) for item in items))


def _diff_pair(  # noqa: PLR0917  (a private helper called from one place)
    name: str,
    old: PolicySuite | Policy | None,
    new: PolicySuite | Policy | None,
    rows: Sequence[Conversation],
    pool: GuardPool | None,
    expected: frozenset[str] | None,
) -> PolicyDiff:
    a, b = _policy(old), _policy(new)
    if a is None or b is None:
        return PolicyDiff(name=name, old=a, new=b)
    changes = semantic_diff(a, b)
    if pool is None or a.hash == b.hash:  # identical enforcement: nothing can flip
        return PolicyDiff(name=name, old=a, new=b, changes=changes)
    conversations = (*_conversations(old, new), *rows)
    touched = changed_clauses(a, b)
    flips: list[Flip] = []
    shifts: list[Flip] = []
    errors: list[str] = []
    for conversation in conversations:
        try:
            before, after = _decide(pool, a, conversation), _decide(pool, b, conversation)
        except CsrmGuardError as exc:
            errors.append(f"{conversation.id}: {exc}")
            continue
        if before.error or after.error:
            errors.append(f"{conversation.id}: no decision could be reached: {before.error or after.error}")
        elif before.outcome != after.outcome:
            flips.append(
                _marked(
                    Flip(name, conversation, before, after, _responsible(before, after, touched)), expected
                )
            )
        elif _violated(before) != _violated(after):
            shifts.append(Flip(name, conversation, before, after, _responsible(before, after, touched)))
    return PolicyDiff(
        name=name,
        old=a,
        new=b,
        changes=changes,
        flips=tuple(flips),
        checked=len(conversations) - len(errors),
        errors=tuple(errors),
        shifts=tuple(shifts),
    )


def _violated(decision: Decision) -> frozenset[str]:
    return frozenset(violation.id for violation in decision.violations)


def _decide(pool: GuardPool, policy: Policy, conversation: Conversation) -> Decision:
    return pool.decide(policy, conversation.stage, conversation.messages, conversation.response)


def _responsible(old: Decision, new: Decision, touched: frozenset[str]) -> tuple[ClauseChange, ...]:
    return clause_changes(_violated(old), _violated(new), touched, old.probabilities, new.probabilities)


def clause_changes(
    before: frozenset[str],
    after: frozenset[str],
    touched: frozenset[str],
    old_probabilities: Mapping[str, float] | None = None,
    new_probabilities: Mapping[str, float] | None = None,
) -> tuple[ClauseChange, ...]:
    """The clauses responsible for a flip: those that entered or left the violated set, else those in both.

    Args:
        before: Clauses violated under the old version.
        after: Clauses violated under the new version.
        touched: Clauses that changed between the versions (:func:`~csrm_guard.review.semantic.changed_clauses`).
        old_probabilities: Clause probabilities under the old version, when known.
        new_probabilities: Clause probabilities under the new version, when known.

    Returns:
        The changes, most probable first (by id when no probability is known).
    """
    ids = (before ^ after) or (before & after)
    p_old, p_new = old_probabilities or {}, new_probabilities or {}
    changes = [
        ClauseChange(cid, p_old.get(cid), p_new.get(cid), cid in before, cid in after, cid in touched)
        for cid in sorted(ids)
    ]
    return tuple(sorted(changes, key=lambda c: -max(c.old_probability or 0.0, c.new_probability or 0.0)))


def _marked(flip: Flip, expected: frozenset[str] | None) -> Flip:
    if expected is None:
        return flip
    return replace(flip, expected=flip.id in expected or flip.conversation.id in expected)


def add_conversations(
    report: DiffReport,
    name: str,
    *,
    flips: Sequence[Flip] = (),
    shifts: Sequence[Flip] = (),
    errors: Sequence[str] = (),
    checked: int = 0,
) -> DiffReport:
    """Add conversations decided outside the replay (e.g. a corpus scored in batch) to one policy's diff.

    The flips are marked against the report's expected list, so the gate counts them exactly like replayed
    ones.

    Args:
        report: The report to extend.
        name: The policy whose diff gets the conversations.
        flips: Conversations whose outcome flips.
        shifts: Conversations whose violated clauses change while the outcome holds.
        errors: ``<id>: <why>`` for conversations that could not be decided.
        checked: How many conversations were decided by both versions.

    Returns:
        A new report.

    Raises:
        KeyError: When the report has no policy of that name.
    """
    if name not in {diff.name for diff in report.policies}:
        raise KeyError(f"the diff has no policy named {name!r}")
    policies = tuple(
        replace(
            diff,
            flips=(*diff.flips, *(_marked(flip, report.expected) for flip in flips)),
            shifts=(*diff.shifts, *shifts),
            errors=(*diff.errors, *errors),
            checked=diff.checked + checked,
        )
        if diff.name == name
        else diff
        for diff in report.policies
    )
    return replace(report, policies=policies)
