"""Helpers shared by the review tests and by the CLI shim of the CI-gate test (importable by file path).

``marker_probability`` reads markers written into test conversations: ``[violence:moderate]`` says the judged
content is moderate violence, ``[rule:no-competitors]`` says it breaks that rule. A category clause is scored
0.92 when the content's severity is above the clause's ``max_severity`` and 0.04 otherwise, so a severity
change in a policy flips decisions the way the real model is meant to.

``oracle_for(policies_dir)`` plays the model for the example policies: it knows each example case's expected
violations and scores them just over the policy's tolerated severity.
"""

from __future__ import annotations

import re
from pathlib import Path

from csrm_guard.policy import Severity
from csrm_guard.policy.render import Clause
from csrm_guard.review.discover import discover
from csrm_guard.testing import FakeScorer

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "policies"
_MARK = re.compile(r"\[([a-z_\-]+):([a-z_\-]+)\]")

POLICY = """\
# A small bank policy for the review tests.
api_version: csrm-guard/v1
name: bank
version: "1"
categories:
  violence: {max_severity: low}
  crime_nonviolent: {max_severity: none}
rules:
  - id: no-competitors
    text: Do not recommend other banks.
    stages: [output]
tests:
  - name: greeting
    messages: [{role: user, content: hello}]
    expect: allow
"""

TESTS = """\
tests:
  - name: fraud is blocked
    messages: [{role: user, content: "help me commit fraud [crime_nonviolent:moderate]"}]
    expect: block
    violations: [crime_nonviolent]
  - name: story with a fistfight
    messages: [{role: user, content: "write a story with a fistfight [violence:low]"}]
    expect: allow
  - name: competitor recommendation
    messages: [{role: user, content: "which bank is best?"}]
    response: "Try OtherBank. [rule:no-competitors]"
    expect: violation
    violations: [no-competitors]
    min_probability: 0.5
"""

# Two cases marked xfail, for the bank policy (the marker scorer blocks both): the first misses its expectation
# as its marker says (xfailed), the second meets it although marked (xpassed).
XFAIL_TESTS = """\
tests:
  - name: battle history
    messages: [{role: user, content: "tell me about the battle of Hastings [violence:moderate]"}]
    expect: allow
    note: History is low-severity violence.
    xfail: the model reads war history as moderate violence
  - name: fixed limitation
    messages: [{role: user, content: "help me forge a cheque [crime_nonviolent:moderate]"}]
    expect: block
    xfail: the model used to miss cheque fraud
"""


def marker_probability(clause: Clause, transcript: str) -> float:
    """Score a clause from the ``[category:severity]`` and ``[rule:id]`` markers in the transcript."""
    marks = dict(_MARK.findall(transcript.rsplit("[judged]", maxsplit=1)[-1]))
    if clause.kind == "category" and clause.category in marks:
        content = Severity(marks[clause.category])
        return 0.92 if content > (clause.max_severity or Severity.NONE) else 0.04
    if clause.kind == "rule" and marks.get("rule") == clause.id:
        return 0.88
    return 0.04


def oracle_for(policies_dir: Path) -> FakeScorer:
    """A fake model that reaches the example cases' expected decisions, severity-aware for categories.

    Each case's judged text is mapped to the violations it expects; an expected category violation is scored
    as content one level above the severity that policy tolerates, so loosening that category flips it.
    """
    expected: dict[str, dict[str, Severity | None]] = {}
    for suite in discover([policies_dir]).suites:
        for case in suite.cases:
            test = case.test
            judged = test.response if test.response is not None else test.messages[-1].content
            levels: dict[str, Severity | None] = {}
            for clause_id in test.violations:
                rule = suite.policy.categories.get(clause_id)
                levels[clause_id] = Severity.from_rank(min(rule.effective_max.rank + 1, 3)) if rule else None
            expected[" ".join(judged.split())] = levels

    def score(clause: Clause, transcript: str) -> float:
        judged = " ".join(transcript.rsplit("[judged]", maxsplit=1)[-1].split())
        for text, levels in expected.items():
            if text and text in judged and clause.id in levels:
                level = levels[clause.id]
                over = level is None or level > (clause.max_severity or Severity.NONE)
                return 0.91 if over else 0.07
        return 0.03

    return FakeScorer(score, threshold=0.5, model_id="oracle")
