"""Output formats of a policy diff: text for terminals, JSON for tools, Markdown for pull-request comments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

from csrm_guard._types import JSONValue
from csrm_guard.guard import Decision
from csrm_guard.review.diff import ClauseChange, DiffReport, Flip, PolicyDiff, RowDecision
from csrm_guard.review.report import decision_json

__all__ = ["DiffFormat", "format_diff", "to_json", "to_markdown", "to_text"]

DiffFormat = Literal["text", "json", "markdown"]
"""The output formats of ``csrm-guard diff``."""

_MAX_VALUE = 80
_MAX_FLIPS = 50  # per policy in Markdown; GitHub comments are capped at 65,536 characters


def format_diff(report: DiffReport, fmt: DiffFormat = "text", *, fail_on_flips: bool = False) -> str:
    """Render a diff report.

    Args:
        report: The report.
        fmt: ``text``, ``json`` or ``markdown``.
        fail_on_flips: Whether the gate fails on any flip (shown in the verdict line).

    Returns:
        The rendered report, ending with a newline.
    """
    if fmt == "json":
        return to_json(report, fail_on_flips=fail_on_flips)
    if fmt == "markdown":
        return to_markdown(report, fail_on_flips=fail_on_flips)
    return to_text(report, fail_on_flips=fail_on_flips)


def _value(value: JSONValue) -> str:
    if value is None:
        return "(unset)"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    text = " ".join(text.split())
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _outcome(decision: Decision | RowDecision) -> str:
    return f"{decision.outcome} (p={decision.violation_probability:.2f})"


def _decision_json(decision: Decision | RowDecision) -> dict[str, Any]:
    if isinstance(decision, Decision):
        return decision_json(decision)
    return {  # scored in batch: no per-clause scores were recorded
        "outcome": decision.outcome,
        "violation_probability": decision.violation_probability,
        "violations": [{"id": clause_id} for clause_id in decision.violations],
        "scores": None,
    }


def _clause(change: ClauseChange) -> str:
    def p(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    marks = ["over" if change.old_violated else "under", "over" if change.new_violated else "under"]
    edited = ", clause changed" if change.clause_changed else ""
    scores = (change.old_probability, change.new_probability)
    moved = "" if scores == (None, None) else f" {p(change.old_probability)} → {p(change.new_probability)}"
    return f"{change.clause_id}{moved} ({'→'.join(marks)}{edited})"


def _verdict(report: DiffReport, fail_on_flips: bool) -> str:
    flips, unexpected = len(report.flips), len(report.unexpected_flips)
    if report.errors:
        return f"ERROR: {len(report.errors)} conversation(s) could not be decided"
    if report.passed(fail_on_flips=fail_on_flips):
        if report.expected is not None:
            return f"PASSED: {flips} flip(s), all expected"
        return f"PASSED: {flips} flip(s)" + ("" if not flips else " (not gated)")
    if fail_on_flips and flips:
        return f"FAILED: {flips} decision(s) flip and --fail-on-flips is set"
    missing = len(report.missing_expected)
    return f"FAILED: {unexpected} unexpected flip(s), {missing} expected flip(s) missing"


# ---- text ---------------------------------------------------------------------------------------------------


def to_text(report: DiffReport, *, fail_on_flips: bool = False) -> str:
    """A terminal report: per policy, the semantic changes, then the flips with their clauses."""
    lines: list[str] = []
    for diff in report.policies:
        lines.extend(_text_policy(diff))
    lines.extend(f"missing expected flip: {flip_id}" for flip_id in report.missing_expected)
    lines.extend(f"error: {error}" for error in report.errors)
    lines.append(_verdict(report, fail_on_flips))
    return "\n".join(lines) + "\n"


def _text_policy(diff: PolicyDiff) -> Iterator[str]:
    yield f"== {diff.name}: {diff.status}"
    for change in diff.changes:
        direction = f"  [{change.direction}]" if change.direction else ""
        yield f"  {change.kind:<8} {change.path}: {_value(change.old)} -> {_value(change.new)}{direction}"
    if diff.status != "changed":
        return
    if _version_not_bumped(diff):
        yield f"  note: the version is still {diff.new.version if diff.new else ''}"
    yield f"  {len(diff.flips)} of {diff.checked} conversation(s) flip"
    for flip in diff.flips:
        mark = "" if flip.expected is None else (" (expected)" if flip.expected else " (UNEXPECTED)")
        moved = f"{_outcome(flip.old)} -> {_outcome(flip.new)}"
        yield f"  - {flip.conversation.id} [{flip.conversation.stage}]: {moved}{mark}"
        for clause in flip.clauses:
            yield f"      {_clause(clause)}"
    if diff.shifts:
        yield f"  {len(diff.shifts)} conversation(s) keep their outcome but change violated clauses"
    for shift in diff.shifts:
        clauses = "; ".join(_clause(clause) for clause in shift.clauses)
        yield f"  ~ {shift.conversation.id} [{shift.conversation.stage}]: {shift.new.outcome}: {clauses}"


# ---- JSON ---------------------------------------------------------------------------------------------------


def to_json(report: DiffReport, *, fail_on_flips: bool = False) -> str:
    """The whole report as JSON: changes, flips with both decisions, gate result."""
    document = {
        "passed": report.passed(fail_on_flips=fail_on_flips) and not report.errors,
        "flips": len(report.flips),
        "unexpected_flips": [flip.id for flip in report.unexpected_flips]
        if report.expected is not None
        else None,
        "missing_expected": list(report.missing_expected),
        "errors": list(report.errors),
        "policies": [_json_policy(diff) for diff in report.policies],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _json_policy(diff: PolicyDiff) -> dict[str, Any]:
    return {
        "name": diff.name,
        "status": diff.status,
        "old_version": diff.old.version if diff.old else None,
        "new_version": diff.new.version if diff.new else None,
        "changes": [
            {"path": c.path, "kind": c.kind, "old": c.old, "new": c.new, "direction": c.direction or None}
            for c in diff.changes
        ],
        "checked": diff.checked,
        "flips": [_json_flip(flip) for flip in diff.flips],
        "shifts": [_json_flip(shift) for shift in diff.shifts],
        "errors": list(diff.errors),
    }


def _json_flip(flip: Flip) -> dict[str, Any]:
    return {
        "id": flip.id,
        "conversation": flip.conversation.id,
        "source": flip.conversation.source,
        "stage": flip.conversation.stage,
        "expect": flip.conversation.expect,
        "expected": flip.expected,
        "old": _decision_json(flip.old),
        "new": _decision_json(flip.new),
        "clauses": [
            {
                "id": c.clause_id,
                "old_probability": c.old_probability,
                "new_probability": c.new_probability,
                "old_violated": c.old_violated,
                "new_violated": c.new_violated,
                "clause_changed": c.clause_changed,
            }
            for c in flip.clauses
        ],
    }


# ---- Markdown -----------------------------------------------------------------------------------------------


def to_markdown(report: DiffReport, *, fail_on_flips: bool = False) -> str:
    """A pull-request comment: a verdict line, then per changed policy a changes table and a flips table."""
    changed = [diff for diff in report.policies if diff.status != "unchanged"]
    icon = "✅" if report.passed(fail_on_flips=fail_on_flips) and not report.errors else "❌"
    lines = [
        "## csrm-guard policy diff",
        "",
        f"{icon} **{_verdict(report, fail_on_flips)}** · {len(changed)} of {len(report.policies)} "
        f"polic{'y' if len(report.policies) == 1 else 'ies'} changed",
        "",
    ]
    for diff in changed:
        lines.extend(_md_policy(diff))
    if report.missing_expected:
        lines += ["**Expected flips that did not happen:** "]
        lines += [f"- `{flip_id}`" for flip_id in report.missing_expected] + [""]
    if report.errors:
        lines += ["**Conversations that could not be decided:**"]
        lines += [f"- {_cell(error)}" for error in report.errors] + [""]
    if not changed:
        lines += ["No policy changed.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _version_not_bumped(diff: PolicyDiff) -> bool:
    return (
        diff.old is not None
        and diff.new is not None
        and bool(diff.changes)
        and diff.old.version == diff.new.version
    )


def _md_policy(diff: PolicyDiff) -> Iterator[str]:
    versions = ""
    if diff.old and diff.new:
        versions = f" ({diff.old.version} → {diff.new.version})"
        if _version_not_bumped(diff):
            versions = f" (version {diff.new.version}, not bumped)"
    yield f"### `{diff.name}`: {diff.status}{versions}"
    yield ""
    if diff.changes:
        yield "| Change | Before | After | Effect |"
        yield "|---|---|---|---|"
        for c in diff.changes:
            yield f"| `{c.path}` {c.kind} | {_cell(_value(c.old))} | {_cell(_value(c.new))} | {c.direction} |"
        yield ""
    if diff.old is None or diff.new is None:
        return
    yield f"**{len(diff.flips)} of {diff.checked} conversations flip**"
    yield ""
    if diff.flips:
        yield from _md_flips(diff.flips)
        yield from _md_conversations(diff.flips)
    if diff.shifts:
        yield from _md_shifts(diff.shifts)


def _md_flips(flips: tuple[Flip, ...]) -> Iterator[str]:
    yield "| | Conversation | Stage | Before | After | Clauses responsible |"
    yield "|---|---|---|---|---|---|"
    for flip in flips[:_MAX_FLIPS]:
        mark = "" if flip.expected is None else ("expected" if flip.expected else "⚠️ unexpected")
        clauses = "<br>".join(_cell(_clause(clause)) for clause in flip.clauses)
        yield (
            f"| {mark} | `{_cell(flip.conversation.id)}` | {flip.conversation.stage} | {_outcome(flip.old)} "
            f"| {_outcome(flip.new)} | {clauses} |"
        )
    if len(flips) > _MAX_FLIPS:
        yield f"| | … and {len(flips) - _MAX_FLIPS} more (see `--format json`) | | | | |"
    yield ""


def _md_conversations(flips: tuple[Flip, ...]) -> Iterator[str]:
    """The judged turns of the flipped conversations, folded so the comment stays short."""
    yield "<details><summary>Flipped conversations</summary>"
    yield ""
    for flip in flips[:_MAX_FLIPS]:
        conversation = flip.conversation
        last_user = next((m["content"] for m in reversed(conversation.messages) if m["role"] == "user"), "")
        yield f"- `{_cell(conversation.id)}`"
        yield f"  - user: {_cell(_clip(last_user))}"
        if conversation.response is not None:
            yield f"  - assistant: {_cell(_clip(conversation.response))}"
        if conversation.expect is not None:
            yield f"  - its test expects: {conversation.expect}"
    yield ""
    yield "</details>"
    yield ""


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md_shifts(shifts: tuple[Flip, ...]) -> Iterator[str]:
    """Conversations whose outcome holds while their violated clauses change, folded."""
    yield f"<details><summary>{len(shifts)} conversation(s) keep their outcome but change violated clauses</summary>"
    yield ""
    yield "| Conversation | Stage | Outcome | Clauses |"
    yield "|---|---|---|---|"
    for shift in shifts[:_MAX_FLIPS]:
        clauses = "<br>".join(_cell(_clause(clause)) for clause in shift.clauses)
        yield f"| `{_cell(shift.conversation.id)}` | {shift.conversation.stage} | {shift.new.outcome} | {clauses} |"
    yield ""
    yield "</details>"
    yield ""
