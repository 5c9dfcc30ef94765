"""Output formats of a policy test run: text for people, JSON for tools, JUnit XML for CI systems.

The JUnit XML follows the schema Jenkins (xunit ``junit-10.xsd``), Maven Surefire and Apache Ant
(``JUnit.xsd``) accept, which GitHub, GitLab and Azure test reporters read too: one ``<testsuite>`` per policy,
one ``<testcase>`` per case, ``<failure>`` when the decision is not the expected one (or a case marked ``xfail``
passed), ``<skipped>`` for a case that failed as its ``xfail`` marker says, and ``<error>`` when no decision
could be reached. Diff output formats are in :mod:`csrm_guard.review.diff_report`.
"""

from __future__ import annotations

import json
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from itertools import groupby
from typing import Any, Literal

from csrm_guard.guard import Decision
from csrm_guard.review.runner import CaseResult, CaseStatus, TestRun

__all__ = [
    "TestFormat",
    "decision_json",
    "decision_summary",
    "failure_details",
    "format_test_run",
    "to_json",
    "to_junit",
    "to_text",
]

TestFormat = Literal["text", "json", "junit"]
"""The output formats of ``csrm-guard test``."""

_MARK: dict[CaseStatus, str] = {
    "passed": "PASS ",
    "failed": "FAIL ",
    "error": "ERROR",
    "xfailed": "XFAIL",
    "xpassed": "XPASS",
}
_COUNTED: tuple[CaseStatus, ...] = ("xfailed", "xpassed", "failed", "error")  # after "passed", when not 0


def format_test_run(run: TestRun, fmt: TestFormat = "text") -> str:
    """Render a test run in one of the output formats.

    Args:
        run: The results.
        fmt: ``text``, ``json`` or ``junit``.

    Returns:
        The report, ending with a newline.
    """
    if fmt == "json":
        return to_json(run)
    if fmt == "junit":
        return to_junit(run)
    return to_text(run)


def decision_summary(decision: Decision, *, top: int = 3) -> str:
    """One line describing a decision: outcome, probability, threshold, violated clauses and the top scores."""
    threshold = f"{decision.threshold:.2f}" if decision.threshold is not None else "n/a"
    violated = ", ".join(f"{v.id} ({v.probability:.3f})" for v in decision.violations) or "none"
    scores = sorted(decision.scores, key=lambda score: -score.probability)[:top]
    highest = ", ".join(f"{score.clause_id} {score.probability:.3f}" for score in scores) or "none"
    return (
        f"decision {decision.outcome} at {decision.stage}: p={decision.violation_probability:.3f}"
        f" threshold={threshold}; violated: {violated}; highest clauses: {highest}"
    )


# ---- text ---------------------------------------------------------------------------------------------------


def to_text(run: TestRun) -> str:
    """A pytest-like report: one line per case, details under failures and errors, then a summary."""
    lines: list[str] = []
    for path, results in groupby(run.results, key=lambda result: result.case.policy_path):
        lines.append(f"{path}")
        for result in results:
            lines.extend(_text_case(result))
    lines.append("-" * 60)
    lines.append(_summary(run))
    return "\n".join(lines) + "\n"


def _text_case(result: CaseResult) -> Iterator[str]:
    case = result.case
    yield f"  {_MARK[result.status]} {case.id}  ({case.test.judged_stage}, expect {case.test.expect})"
    if result.passed:
        return
    details = _xfail_details(result) if result.status == "xfailed" else failure_details(result)
    for detail in details:
        yield f"        {detail}"


def _xfail_details(result: CaseResult) -> list[str]:
    """The short form for a known limitation: the reason, how the decision misses, the decision."""
    details = [f"xfail: {result.case.test.xfail}", *result.failures]
    if result.decision is not None:
        details.append(decision_summary(result.decision))
    return details


def failure_details(result: CaseResult) -> list[str]:
    """Lines explaining a case that did not pass: where it is, what went wrong, the decision, the note."""
    details = [f"at {result.case.location}"]
    if result.status == "xfailed":
        details.append(f"xfail: {result.case.test.xfail}")
    details.extend(result.messages)
    if result.error is not None:
        details.append(result.error)
    if result.decision is not None:
        details.append(decision_summary(result.decision))
    if result.case.test.note:
        details.append(f"note: {result.case.test.note}")
    return details


def _summary(run: TestRun) -> str:
    if not run.results:
        suffix = f" ({run.deselected} deselected by --run)" if run.deselected else ""
        return f"no policy tests found in {run.policies} polic{'y' if run.policies == 1 else 'ies'}{suffix}"
    parts = [f"{run.count('passed')} passed"]
    parts += [f"{run.count(status)} {status}" for status in _COUNTED if run.count(status)]
    extra = f", {run.deselected} deselected" if run.deselected else ""
    policies = f"{run.policies} polic{'y' if run.policies == 1 else 'ies'}"
    return f"{', '.join(parts)} in {run.duration_s:.2f}s ({policies}{extra})"


# ---- JSON ---------------------------------------------------------------------------------------------------


def to_json(run: TestRun) -> str:
    """The run as a JSON document: a summary and one object per case, with the full decision."""
    document = {
        "summary": {
            "ok": run.ok,
            "total": len(run.results),
            "passed": run.count("passed"),
            "failed": run.count("failed"),
            "errors": run.count("error"),
            "xfailed": run.count("xfailed"),
            "xpassed": run.count("xpassed"),
            "deselected": run.deselected,
            "policies": run.policies,
            "duration_s": round(run.duration_s, 6),
        },
        "results": [_json_case(result) for result in run.results],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _json_case(result: CaseResult) -> dict[str, Any]:
    case, test = result.case, result.case.test
    return {
        "id": case.id,
        "policy": case.policy.name,
        "name": test.name,
        "file": str(case.file),
        "line": case.line,
        "stage": test.judged_stage,
        "status": result.status,
        "expect": test.expect,
        "expect_violations": list(test.violations),
        "xfail": test.xfail,
        "failures": list(result.messages),
        "error": result.error,
        "decision": decision_json(result.decision) if result.decision is not None else None,
        "duration_s": round(result.duration_s, 6),
    }


def decision_json(decision: Decision) -> dict[str, Any]:
    """The parts of a decision a reviewer needs, as JSON-ready data."""
    return {
        "outcome": decision.outcome,
        "allowed": decision.allowed,
        "violation_probability": decision.violation_probability,
        "threshold": decision.threshold,
        "violations": [
            {"id": v.id, "kind": v.kind, "probability": v.probability, "action": v.action.value}
            for v in decision.violations
        ],
        "scores": decision.probabilities,
        "policy_hash": decision.policy_hash,
        "model_id": decision.model_id,
        "error": decision.error,
    }


# ---- JUnit XML ----------------------------------------------------------------------------------------------


def to_junit(run: TestRun, *, timestamp: float | None = None, hostname: str | None = None) -> str:
    """The run as JUnit XML: one ``<testsuite>`` per policy, one ``<testcase>`` per case.

    Args:
        run: The results.
        timestamp: When the run started (seconds since the epoch; default: now).
        hostname: The machine name (default: this machine's).

    Returns:
        The XML document.
    """
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    host = hostname or socket.gethostname() or "localhost"
    root = ET.Element("testsuites")
    groups = groupby(run.results, key=lambda result: result.case.policy_path)
    for index, (path, group) in enumerate(groups):
        results = list(group)
        suite = ET.SubElement(root, "testsuite", _suite_attributes(results, index, stamp, host))
        properties = ET.SubElement(suite, "properties")
        policy = results[0].case.policy
        for name, value in (("policy.path", str(path)), ("policy.version", policy.version)):
            ET.SubElement(properties, "property", {"name": name, "value": value})
        for result in results:
            _junit_case(suite, result)
        ET.SubElement(suite, "system-out").text = _summary(TestRun(tuple(results), policies=1))
        ET.SubElement(suite, "system-err")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite_attributes(results: list[CaseResult], index: int, stamp: str, host: str) -> dict[str, str]:
    policy = results[0].case.policy
    return {
        "name": policy.name,
        "package": "csrm_guard.policies",
        "id": str(index),
        "timestamp": stamp,
        "hostname": host,
        "tests": str(len(results)),
        "failures": str(sum(1 for r in results if r.status in ("failed", "xpassed"))),
        "errors": str(sum(1 for r in results if r.status == "error")),
        "skipped": str(sum(1 for r in results if r.status == "xfailed")),
        "time": f"{sum(r.duration_s for r in results):.3f}",
    }


def _junit_case(suite: ET.Element, result: CaseResult) -> None:
    case = result.case
    attributes = {"name": case.test.name, "classname": case.policy.name, "time": f"{result.duration_s:.3f}"}
    element = ET.SubElement(suite, "testcase", attributes)
    if result.passed:
        return
    tag, kind, message = _junit_problem(result)
    detail = ET.SubElement(element, tag, {"message": message, "type": kind})
    detail.text = "\n".join(failure_details(result))


def _junit_problem(result: CaseResult) -> tuple[str, str, str]:
    """The element, its ``type`` and its ``message`` for a case that did not pass."""
    if result.status == "error":
        return "error", "PolicyTestError", result.error or ""
    if result.status == "xfailed":
        return "skipped", "PolicyTestXFail", f"xfail: {result.case.test.xfail}"
    kind = "PolicyTestXPass" if result.status == "xpassed" else "PolicyTestFailure"
    return "failure", kind, "; ".join(result.messages)
