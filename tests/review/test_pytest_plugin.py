from __future__ import annotations

from pathlib import Path

import pytest

from .review_helpers import POLICY, TESTS, XFAIL_TESTS

pytest_plugins = ["pytester"]

CONFTEST = """
import re
from csrm_guard.policy import Severity
from csrm_guard.testing import FakeScorer

MARK = re.compile(r"\\[([a-z_\\-]+):([a-z_\\-]+)\\]")

def score(clause, transcript):
    marks = dict(MARK.findall(transcript.rsplit("[judged]", 1)[-1]))
    if clause.kind == "category" and clause.category in marks:
        return 0.92 if Severity(marks[clause.category]) > clause.max_severity else 0.04
    return 0.88 if clause.kind == "rule" and marks.get("rule") == clause.id else 0.04

def pytest_csrm_guard_scorer(config):
    return FakeScorer(score)
"""


def _run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest("-p", "no:randomly", *args)


@pytest.fixture(name="project")
def _project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with the bank policy, its tests file and a conftest that provides a fake scorer."""
    folder = pytester.mkdir("policies") / "bank"
    folder.mkdir()
    (folder / "policy.yaml").write_text(POLICY)
    (folder / "policy_test.yaml").write_text(TESTS)
    pytester.makeconftest(CONFTEST)
    return pytester


def test_collects_nothing_unless_enabled(project: pytest.Pytester):
    """Without --csrm-policies the plugin leaves collection alone."""
    result = _run(project, "policies")
    result.assert_outcomes()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_cases_become_items(project: pytest.Pytester):
    """Inline and tests-file cases are collected as items named after the case and they pass."""
    result = _run(project, "--csrm-policies", "policies", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["*policies/bank/policy.yaml::greeting PASSED*", "*policy_test.yaml::fraud is blocked PASSED*"]
    )


def test_failure_shows_the_decision(project: pytest.Pytester):
    """A case whose decision differs fails with the expectation, the location and the decision."""
    tests = Path(project.path, "policies", "bank", "policy_test.yaml")
    tests.write_text(tests.read_text().replace("expect: block", "expect: allow").replace(
        "    violations: [crime_nonviolent]\n", "", 1))  # fmt: skip
    result = _run(project, "--csrm-policies", "policies")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*policy case bank::fraud is blocked failed*",
            "*policy_test.yaml:2*",
            "expected allow, got block",
            "decision block at input: p=0.920*violated: crime_nonviolent (0.920)*",
        ]
    )


def test_xfail_and_xpass(project: pytest.Pytester):
    """A marked case that misses is a pytest xfail with its reason; one that meets its expectations fails."""
    Path(project.path, "policies", "bank", "known_test.yaml").write_text(XFAIL_TESTS)
    result = _run(project, "--csrm-policies", "policies", "-rxf")
    result.assert_outcomes(passed=4, xfailed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*policy case bank::fixed limitation xpassed*",
            "*known_test.yaml:7*",
            'passed, but is marked xfail ("the model used to miss cheque fraud"): remove the marker',
        ]
    )
    result.stdout.fnmatch_lines(
        ["XFAIL *known_test.yaml::battle history - the model reads war history as moderate violence*"]
    )


def test_only_xfailed_cases_pass_the_session(project: pytest.Pytester):
    """A session whose policy cases pass or xfail exits 0."""
    Path(project.path, "policies", "bank", "known_test.yaml").write_text(XFAIL_TESTS)
    result = _run(project, "--csrm-policies", "policies", "-k", "not fixed")
    result.assert_outcomes(passed=4, xfailed=1, deselected=1)
    assert result.ret == pytest.ExitCode.OK


def test_ini_option_and_marker(project: pytest.Pytester):
    """csrm_policies = true in the ini enables collection; -m 'not csrm_policy' deselects the cases."""
    project.makeini("[pytest]\ncsrm_policies = true\n")
    _run(project, "policies").assert_outcomes(passed=4)
    result = _run(project, "policies", "-m", "not csrm_policy")
    result.assert_outcomes(deselected=4)


def test_invalid_tests_file_is_a_collection_error(project: pytest.Pytester):
    """A broken tests file is reported as a collection error naming the file."""
    Path(project.path, "policies", "bank", "policy_test.yaml").write_text("tests: [{name: x}]\n")
    result = _run(project, "--csrm-policies", "policies")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*policy_test.yaml:1: tests[[]0[]].messages: required key 'messages' is missing"]
    )
    assert "Traceback" not in result.stdout.str()
