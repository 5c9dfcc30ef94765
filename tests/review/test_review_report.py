from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from csrm_guard.review.diff import DiffReport, diff_policies
from csrm_guard.review.diff_report import format_diff
from csrm_guard.review.report import format_test_run, to_junit
from csrm_guard.review.runner import TestRun, run_policy_tests
from csrm_guard.testing import FakeScorer, StaticScorer

SCHEMA = Path(__file__).with_name("junit.xsd")


@pytest.fixture(name="mixed_run")
def _mixed_run(bank_dir: Path) -> TestRun:
    """A run with passes, failures (violence reads as high) and one error (the output stage scorer fails)."""

    def score(clause, transcript):
        if "[judged] Assistant" in transcript:
            return float("nan")
        return 0.9 if clause.id == "violence" and "fistfight" in transcript else 0.01

    return run_policy_tests([bank_dir], scorer=FakeScorer(score))


@pytest.fixture(name="xfail_run")
def _xfail_run(xfail_dir: Path, marker_scorer: FakeScorer) -> TestRun:
    """A run with four passes, one xfailed case and one xpassed case."""
    return run_policy_tests([xfail_dir], scorer=marker_scorer)


@pytest.fixture(name="schema")
def _schema() -> xmlschema.XMLSchema:
    """The JUnit XML schema common CI systems accept (Jenkins junit-10 and Ant JUnit.xsd intersection)."""
    return xmlschema.XMLSchema(SCHEMA)


class TestText:
    def test_lists_every_case_and_explains_failures(self, mixed_run: TestRun):
        """Each case gets a PASS/FAIL/ERROR line; failures show where, why and the decision."""
        text = format_test_run(mixed_run, "text")
        assert "  PASS  bank::greeting" in text
        assert "  FAIL  bank::fraud is blocked" in text
        assert "  ERROR bank::competitor recommendation" in text
        assert "expected block, got allow" in text
        assert "policy_test.yaml:2" in text
        assert "decision block at input: p=0.900 threshold=0.50; violated: violence (0.900)" in text
        assert text.rstrip().endswith("(1 policy)")
        assert "1 passed, 2 failed, 1 error" in text

    def test_xfail_and_xpass(self, xfail_run: TestRun):
        """XFAIL lines give the reason, the miss and the decision; XPASS is explained like a failure."""
        lines = format_test_run(xfail_run, "text").splitlines()
        start = lines.index("  XFAIL bank::battle history  (input, expect allow)")
        assert lines[start + 1 : start + 3] == [
            "        xfail: the model reads war history as moderate violence",
            "        expected allow, got block",
        ]
        decision = (
            "        decision block at input: p=0.920 threshold=0.50; violated: violence (0.920); highest"
        )
        assert lines[start + 3].startswith(decision)
        assert lines[start + 4].startswith("  XPASS bank::fixed limitation  (input, expect block)")
        assert lines[start + 5 : start + 7] == [
            f"        at {xfail_run.results[0].case.file.parent / 'known_test.yaml'}:7",
            '        passed, but is marked xfail ("the model used to miss cheque fraud"): remove the marker',
        ]
        assert lines[-1].startswith("4 passed, 1 xfailed, 1 xpassed in ")

    def test_empty_run(self):
        """A run without cases says so."""
        assert "no policy tests found in 2 policies" in format_test_run(TestRun((), policies=2), "text")


class TestJson:
    def test_document(self, mixed_run: TestRun):
        """JSON has a summary and per-case results with the full decision."""
        document = json.loads(format_test_run(mixed_run, "json"))
        assert document["summary"] | {"duration_s": 0} == {
            "ok": False,
            "total": 4,
            "passed": 1,
            "failed": 2,
            "errors": 1,
            "xfailed": 0,
            "xpassed": 0,
            "deselected": 0,
            "policies": 1,
            "duration_s": 0,
        }
        story = next(r for r in document["results"] if r["name"] == "story with a fistfight")
        assert story["status"] == "failed"
        assert story["decision"]["outcome"] == "block"
        assert story["decision"]["violations"] == [
            {"id": "violence", "kind": "category", "probability": 0.9, "action": "block"}
        ]
        assert story["line"] == 6
        assert story["xfail"] is None

    def test_xfail_statuses_and_counts(self, xfail_run: TestRun):
        """JSON counts xfailed and xpassed cases and gives each case's status, xfail reason and messages."""
        document = json.loads(format_test_run(xfail_run, "json"))
        summary = document["summary"]
        assert (summary["ok"], summary["passed"], summary["xfailed"], summary["xpassed"]) == (False, 4, 1, 1)
        assert (summary["failed"], summary["errors"]) == (0, 0)
        cases = {case["name"]: case for case in document["results"]}
        battle, fixed = cases["battle history"], cases["fixed limitation"]
        assert battle["status"] == "xfailed"
        assert battle["xfail"] == "the model reads war history as moderate violence"
        assert battle["failures"] == ["expected allow, got block"]
        assert fixed["status"] == "xpassed"
        assert fixed["failures"][0].startswith('passed, but is marked xfail ("the model used to miss')


class TestJunit:
    def test_validates_against_the_schema(self, mixed_run: TestRun, schema: xmlschema.XMLSchema):
        """The JUnit report of a run with failures and errors is valid JUnit XML."""
        schema.validate(format_test_run(mixed_run, "junit"))

    def test_counts_and_elements(self, mixed_run: TestRun):
        """The suite counts match its test cases, and failures and errors use the right elements."""
        root = ET.fromstring(to_junit(mixed_run, timestamp=0, hostname="ci"))
        (suite,) = root
        assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "1")
        assert suite.get("timestamp") == "1970-01-01T00:00:00"
        cases = {case.get("name"): case for case in suite.iter("testcase")}
        assert list(cases["greeting"]) == []
        failure = cases["fraud is blocked"].find("failure")
        assert failure is not None
        assert (
            failure.get("message")
            == "expected block, got allow; expected violations crime_nonviolent not found"
        )
        assert "policy_test.yaml:2" in (failure.text or "")
        error = cases["competitor recommendation"].find("error")
        assert error is not None
        assert "no decision could be reached" in (error.get("message") or "")

    def test_xfail_is_skipped_and_xpass_is_a_failure(self, xfail_run: TestRun, schema: xmlschema.XMLSchema):
        """An xfailed case is <skipped> with its reason, an xpassed one a <failure>; the document stays valid."""
        report = to_junit(xfail_run, timestamp=0, hostname="ci")
        schema.validate(report)
        (suite,) = ET.fromstring(report)
        counts = [suite.get(key) for key in ("tests", "failures", "errors", "skipped")]
        assert counts == ["6", "1", "0", "1"]
        cases = {case.get("name"): case for case in suite.iter("testcase")}
        skipped = cases["battle history"].find("skipped")
        assert skipped is not None
        assert skipped.get("message") == "xfail: the model reads war history as moderate violence"
        assert "expected allow, got block" in (skipped.text or "")
        assert [child.tag for child in cases["battle history"]] == ["skipped"]
        failure = cases["fixed limitation"].find("failure")
        assert failure is not None
        assert failure.get("type") == "PolicyTestXPass"
        assert "remove the marker" in (failure.get("message") or "")

    def test_one_suite_per_policy_and_odd_names(self, tmp_path: Path, schema: xmlschema.XMLSchema):
        """Several policies give several suites; names with XML specials stay valid."""
        for name in ("alpha", "beta"):
            folder = tmp_path / name
            folder.mkdir()
            (folder / "policy.yaml").write_text(
                f"name: {name}\ntests:\n  - name: 'a <b> & \"c\"'\n"
                "    messages: [{role: user, content: hi}]\n    expect: allow\n"
            )
        report = format_test_run(run_policy_tests([tmp_path], scorer=StaticScorer(0.0)), "junit")
        schema.validate(report)
        assert [suite.get("name") for suite in ET.fromstring(report)] == ["alpha", "beta"]

    def test_empty_run_is_valid(self, schema: xmlschema.XMLSchema):
        """No cases still gives a valid (empty) document."""
        schema.validate(to_junit(TestRun(())))


@pytest.fixture(name="diff_report")
def _diff_report(bank_dir: Path, tmp_path: Path, marker_scorer: FakeScorer) -> DiffReport:
    new = tmp_path / "new" / "bank"
    shutil.copytree(bank_dir, new)
    policy = new / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("violence: {max_severity: low}", "violence: {max_severity: none}")
    )
    return diff_policies(bank_dir, new, scorer=marker_scorer, expected_flips=[])


class TestDiffFormats:
    def test_text(self, diff_report: DiffReport):
        """Text shows the change with its direction, the flip with its clause, and the verdict."""
        text = format_diff(diff_report, "text")
        assert "changed  categories.violence.max_severity: low -> none  [stricter]" in text
        assert "story with a fistfight [input]: allow (p=0.04) -> block (p=0.92) (UNEXPECTED)" in text
        assert "violence 0.04 → 0.92 (under→over, clause changed)" in text
        assert text.rstrip().endswith("FAILED: 1 unexpected flip(s), 0 expected flip(s) missing")

    def test_markdown(self, diff_report: DiffReport):
        """Markdown is a PR comment: verdict, change table and flip table."""
        markdown = format_diff(diff_report, "markdown")
        assert markdown.startswith("## csrm-guard policy diff\n\n❌ **FAILED: 1 unexpected flip(s)")
        assert "| `categories.violence.max_severity` changed | low | none | stricter |" in markdown
        assert (
            "| ⚠️ unexpected | `story with a fistfight` | input | allow (p=0.04) | block (p=0.92) |"
            in markdown
        )
        assert "**1 of 4 conversations flip**" in markdown

    def test_json(self, diff_report: DiffReport):
        """JSON carries the gate result, the changes and both decisions of each flip."""
        document = json.loads(format_diff(diff_report, "json"))
        assert document["passed"] is False
        assert document["unexpected_flips"] == ["bank::story with a fistfight"]
        (policy,) = document["policies"]
        assert policy["changes"][0]["direction"] == "stricter"
        flip = policy["flips"][0]
        assert (flip["old"]["outcome"], flip["new"]["outcome"]) == ("allow", "block")
        assert flip["clauses"][0]["new_violated"] is True

    def test_markdown_escapes_pipes(self, bank_dir: Path, tmp_path: Path):
        """Values containing '|' do not break the Markdown table."""
        new = tmp_path / "n" / "bank"
        shutil.copytree(bank_dir, new)
        policy = new / "policy.yaml"
        policy.write_text(policy.read_text().replace("Do not recommend other banks.", "No A | B."))
        markdown = format_diff(diff_policies(bank_dir, new, replay=False), "markdown")
        assert "No A \\| B." in markdown
