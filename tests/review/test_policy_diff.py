from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from csrm_guard.errors import DataError
from csrm_guard.review.corpus import load_corpus
from csrm_guard.review.diff import diff_policies, read_expected_flips
from csrm_guard.review.diff_report import format_diff
from csrm_guard.testing import FakeScorer


@pytest.fixture(name="stricter")
def _stricter(bank_dir: Path, tmp_path: Path) -> Path:
    """A copy of the bank policy folder with violence lowered from 'low' to 'none'."""
    target = tmp_path / "new" / "bank"
    shutil.copytree(bank_dir, target)
    policy = target / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("violence: {max_severity: low}", "violence: {max_severity: none}")
    )
    return target


def _write_corpus(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


class TestFlips:
    def test_severity_change_flips_the_affected_case(
        self, bank_dir: Path, stricter: Path, marker_scorer: FakeScorer
    ):
        """Lowering violence to 'none' flips the fistfight story from allow to block, and nothing else."""
        report = diff_policies(bank_dir / "policy.yaml", stricter / "policy.yaml", scorer=marker_scorer)
        (diff,) = report.policies
        assert [c.path for c in diff.changes] == ["categories.violence.max_severity"]
        (flip,) = diff.flips
        assert flip.id == "bank::story with a fistfight"
        assert (flip.old.outcome, flip.new.outcome) == ("allow", "block")
        (clause,) = flip.clauses
        assert (clause.clause_id, clause.old_probability, clause.new_probability) == ("violence", 0.04, 0.92)
        assert (clause.old_violated, clause.new_violated, clause.clause_changed) == (False, True, True)
        assert diff.checked == 4

    def test_folders_pair_policies_by_name(self, bank_dir: Path, stricter: Path, marker_scorer: FakeScorer):
        """Two folders are compared policy by policy; a policy only on one side is added or removed."""
        extra = stricter.parent / "shop"
        extra.mkdir()
        (extra / "policy.yaml").write_text("name: shop\n")
        report = diff_policies(bank_dir.parent, stricter.parent, scorer=marker_scorer)
        assert [(d.name, d.status) for d in report.policies] == [("bank", "changed"), ("shop", "added")]
        assert len(report.flips) == 1

    def test_corpus_rows_are_replayed(
        self, bank_dir: Path, stricter: Path, marker_scorer: FakeScorer, tmp_path: Path
    ):
        """Corpus conversations flip like test cases and are named corpus:<id>."""
        corpus = _write_corpus(
            tmp_path / "corpus.jsonl",
            [
                {"id": 7, "messages": [{"role": "user", "content": "a slap in the face [violence:low]"}]},
                {"id": "calm", "messages": [{"role": "user", "content": "hello"}], "response": "hi"},
            ],
        )
        report = diff_policies(bank_dir, stricter, corpus=corpus, scorer=marker_scorer)
        assert [flip.id for flip in report.flips] == ["bank::story with a fistfight", "bank::corpus:7"]
        assert report.policies[0].checked == 6

    def test_action_change_flips_with_the_clauses_violated_both_times(
        self, bank_dir: Path, tmp_path: Path, marker_scorer: FakeScorer
    ):
        """Changing only an action flips the outcome; the clause is listed though it is violated both times."""
        target = tmp_path / "monitor" / "bank"
        shutil.copytree(bank_dir, target)
        policy = target / "policy.yaml"
        old = "crime_nonviolent: {max_severity: none}"
        policy.write_text(
            policy.read_text().replace(old, "crime_nonviolent: {max_severity: none, action: monitor}")
        )
        (flip,) = diff_policies(bank_dir, target, scorer=marker_scorer).flips
        assert (flip.old.outcome, flip.new.outcome) == ("block", "monitor")
        assert [(c.clause_id, c.old_violated, c.new_violated) for c in flip.clauses] == [
            ("crime_nonviolent", True, True)
        ]

    def test_shift_when_another_clause_still_decides(
        self, bank_dir: Path, stricter: Path, marker_scorer: FakeScorer
    ):
        """A newly violated clause on an already-blocked conversation is a shift, not a flip."""
        content = "x [crime_nonviolent:moderate] [violence:low]"
        case = f'  - {{name: fraud with a slap, messages: [{{role: user, content: "{content}"}}], expect: block}}\n'
        for folder in (bank_dir, stricter):
            tests = folder / "policy_test.yaml"
            tests.write_text(tests.read_text() + case)
        report = diff_policies(bank_dir, stricter, scorer=marker_scorer, expected_flips=[])
        (diff,) = report.policies
        assert [flip.conversation.id for flip in diff.flips] == ["story with a fistfight"]
        assert "~ fraud with a slap [input]: block: violence 0.04 → 0.92" in format_diff(report, "text")
        assert "1 conversation(s) keep their outcome but change violated clauses" in format_diff(
            report, "markdown"
        )
        assert (
            json.loads(format_diff(report, "json"))["policies"][0]["shifts"][0]["conversation"]
            == "fraud with a slap"
        )
        (shift,) = diff.shifts
        assert shift.conversation.id == "fraud with a slap"
        assert (shift.old.outcome, shift.new.outcome) == ("block", "block")
        assert [(c.clause_id, c.old_violated, c.new_violated) for c in shift.clauses] == [
            ("violence", False, True)
        ]

    def test_unchanged_policy_replays_nothing(self, bank_dir: Path, marker_scorer: FakeScorer):
        """Identical enforcement cannot flip: no conversation is scored."""
        report = diff_policies(bank_dir, bank_dir, scorer=marker_scorer)
        assert report.policies[0].status == "unchanged"
        assert marker_scorer.calls == []

    def test_no_replay_needs_no_model(self, bank_dir: Path, stricter: Path):
        """replay=False gives the semantic diff without loading any model."""
        report = diff_policies(bank_dir, stricter, replay=False, model="/nonexistent/bundle")
        assert report.flips == ()
        assert len(report.policies[0].changes) == 1


class TestGate:
    def test_expected_flips(self, bank_dir: Path, stricter: Path, marker_scorer: FakeScorer):
        """A flip listed as expected passes the gate; an unlisted one fails it."""
        ok = diff_policies(
            bank_dir, stricter, scorer=marker_scorer, expected_flips=["story with a fistfight"]
        )
        assert ok.passed()
        assert ok.flips[0].expected is True
        bad = diff_policies(bank_dir, stricter, scorer=marker_scorer, expected_flips=[])
        assert not bad.passed()
        assert [f.id for f in bad.unexpected_flips] == ["bank::story with a fistfight"]

    def test_expected_flip_that_does_not_happen_fails(
        self, bank_dir: Path, stricter: Path, marker_scorer: FakeScorer
    ):
        """Listing a flip that does not happen fails the gate and names it."""
        report = diff_policies(
            bank_dir,
            stricter,
            scorer=marker_scorer,
            expected_flips=["bank::story with a fistfight", "bank::greeting"],
        )
        assert report.missing_expected == ("bank::greeting",)
        assert not report.passed()

    def test_fail_on_flips(self, bank_dir: Path, stricter: Path, marker_scorer: FakeScorer):
        """Without expectations flips pass unless fail_on_flips is set."""
        report = diff_policies(bank_dir, stricter, scorer=marker_scorer)
        assert report.passed()
        assert not report.passed(fail_on_flips=True)

    def test_undecidable_conversations_are_errors(self, bank_dir: Path, stricter: Path):
        """A scorer failure is reported as an error, never as a flip."""
        report = diff_policies(bank_dir, stricter, scorer=FakeScorer(lambda c, t: float("nan")))
        assert report.flips == ()
        assert len(report.errors) == 4
        assert report.errors[0].startswith("bank::")

    def test_read_expected_flips(self, tmp_path: Path):
        """Expected-flips files hold one id per line; comments and blank lines are ignored."""
        path = tmp_path / "flips.txt"
        path.write_text("# tightened violence\nbank::story with a fistfight  # the fistfight\n\ncorpus:7\n")
        assert read_expected_flips(path) == frozenset({"bank::story with a fistfight", "corpus:7"})


class TestCorpus:
    def test_rows(self, tmp_path: Path):
        """Rows become conversations; a response makes an output check; extra keys are ignored."""
        path = _write_corpus(
            tmp_path / "c.jsonl",
            [
                {"id": "a", "messages": [{"role": "user", "content": "x", "name": "bob"}]},
                {"id": "b", "messages": [{"role": "user", "content": "x"}], "response": "y", "meta": 1},
            ],
        )
        rows = load_corpus(path)
        assert [(r.id, r.stage, r.source) for r in rows] == [
            ("corpus:a", "input", "corpus"),
            ("corpus:b", "output", "corpus"),
        ]
        assert rows[0].messages == ({"role": "user", "content": "x"},)

    @pytest.mark.parametrize(
        ("line", "problem"),
        [
            ("{not json", "not valid JSON"),
            ('["a"]', "JSON object"),
            ('{"messages": [{"role": "user", "content": "x"}]}', "'id'"),
            ('{"id": "a", "messages": []}', "non-empty list"),
            ('{"id": "a", "messages": [{"role": "user"}]}', "messages[0] needs a string 'content'"),
            ('{"id": "a", "messages": [{"role": "user", "content": "x"}], "stage": "output"}', "'stage'"),
        ],
    )
    def test_bad_rows_name_the_line(self, tmp_path: Path, line: str, problem: str):
        """A malformed row fails with the file, the line number and the problem."""
        path = tmp_path / "c.jsonl"
        path.write_text('{"id": "ok", "messages": [{"role": "user", "content": "x"}]}\n' + line + "\n")
        with pytest.raises(DataError, match=rf"c\.jsonl:2: .*{re.escape(problem)}"):
            load_corpus(path)

    def test_duplicate_ids(self, tmp_path: Path):
        """Two rows with one id are rejected."""
        row = {"id": "a", "messages": [{"role": "user", "content": "x"}]}
        with pytest.raises(DataError, match="used twice"):
            load_corpus(_write_corpus(tmp_path / "c.jsonl", [row, row]))
