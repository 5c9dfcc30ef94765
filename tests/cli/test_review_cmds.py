"""``csrm-guard test``, ``diff`` and ``fmt``: output formats and exit codes (0 ok, 1 failed, 2 usage, 3 operational)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from csrm_guard.batch import BundleScorer
from csrm_guard.cli import main
from csrm_guard.review.runner import GuardPool
from csrm_guard.testing import FakeScorer


def _helpers() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "review" / "review_helpers.py"
    spec = importlib.util.spec_from_file_location("review_cli_helpers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _helpers()


@pytest.fixture(name="policies")
def _policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``policies/bank`` folder in the working directory, checked with the marker scorer instead of a model."""
    folder = tmp_path / "policies" / "bank"
    folder.mkdir(parents=True)
    (folder / "policy.yaml").write_text(helpers.POLICY)
    (folder / "policy_test.yaml").write_text(helpers.TESTS)
    monkeypatch.chdir(tmp_path)
    use_scorer(monkeypatch, FakeScorer(helpers.marker_probability))
    return tmp_path / "policies"


def use_scorer(monkeypatch: pytest.MonkeyPatch, scorer: FakeScorer) -> None:
    """Make every command use ``scorer`` where it would load the model bundle."""
    monkeypatch.setattr(GuardPool, "load_scorer", staticmethod(lambda model: scorer))


@pytest.fixture(name="stricter")
def _stricter(policies: Path, tmp_path: Path) -> Path:
    """A copy of the policies with bank's violence lowered from 'low' to 'none'."""
    target = tmp_path / "new"
    shutil.copytree(policies, target)
    policy = target / "bank" / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("violence: {max_severity: low}", "violence: {max_severity: none}")
    )
    return target


class TestTest:
    def test_all_pass(self, policies: Path, capsys: pytest.CaptureFixture[str]):
        """Exit 0 when every case passes; the default path is ./policies."""
        assert main(["test"]) == 0
        out = capsys.readouterr().out
        assert "PASS  bank::fraud is blocked" in out
        assert "4 passed" in out

    def test_failure_exits_1(
        self, policies: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ):
        """Exit 1 when a case fails, with the decision in the report."""
        use_scorer(monkeypatch, FakeScorer(lambda clause, transcript: 0.01))
        assert main(["test", "policies"]) == 1
        assert "expected block, got allow" in capsys.readouterr().out

    def test_run_filter(self, policies: Path, capsys: pytest.CaptureFixture[str]):
        """--run keeps the matching cases and counts the rest as deselected."""
        assert main(["test", "--run", "fraud", "policies"]) == 0
        assert "1 passed in" in capsys.readouterr().out

    def test_no_tests(self, policies: Path, capsys: pytest.CaptureFixture[str]):
        """Finding no case fails unless --allow-no-tests is given."""
        assert main(["test", "--run", "^nothing$", "policies"]) == 1
        assert "no policy tests found" in capsys.readouterr().err
        assert main(["test", "--run", "^nothing$", "--allow-no-tests", "policies"]) == 0

    def test_json(self, policies: Path, capsys: pytest.CaptureFixture[str]):
        """--format json prints a JSON document with a summary."""
        assert main(["test", "--format", "json", "policies"]) == 0
        assert json.loads(capsys.readouterr().out)["summary"]["passed"] == 4

    def test_junit_to_a_file(self, policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
        """--format junit --output writes the XML and still prints the text report."""
        target = tmp_path / "report.xml"
        assert main(["test", "--format", "junit", "--output", str(target), "policies"]) == 0
        assert ET.parse(target).getroot().find("testsuite").get("tests") == "4"  # type: ignore[union-attr]
        assert "4 passed" in capsys.readouterr().out

    def test_usage_errors_exit_2(self, policies: Path, capsys: pytest.CaptureFixture[str]):
        """A bad regular expression or a missing path is a usage error."""
        assert main(["test", "--run", "(", "policies"]) == 2
        assert main(["test", "missing/"]) == 2
        assert "missing/: no such file or folder" in capsys.readouterr().err

    def test_xfailed_cases_exit_0_and_an_xpass_exits_1(
        self, policies: Path, capsys: pytest.CaptureFixture[str]
    ):
        """Cases that fail as their xfail marker says keep exit 0; a marked case that passes exits 1."""
        (policies / "bank" / "known_test.yaml").write_text(helpers.XFAIL_TESTS)
        assert main(["test", "--run", "greeting|battle", "policies"]) == 0
        assert "1 passed, 1 xfailed in" in capsys.readouterr().out
        assert main(["test", "policies"]) == 1
        out = capsys.readouterr().out
        assert "XPASS bank::fixed limitation" in out
        assert "4 passed, 1 xfailed, 1 xpassed in" in out

    def test_undecidable_case_exits_3(self, policies: Path, monkeypatch: pytest.MonkeyPatch):
        """A scorer that cannot decide is an operational error."""
        use_scorer(monkeypatch, FakeScorer(lambda clause, transcript: float("nan")))
        assert main(["test", "policies"]) == 3

    def test_missing_bundle_exits_3(self, policies: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
        """A model bundle that cannot be loaded is an operational error."""
        monkeypatch.undo()
        monkeypatch.chdir(tmp_path)
        assert main(["test", "--model", str(tmp_path / "no-bundle"), "policies"]) == 3

    def test_invalid_policy_exits_1(self, policies: Path, capsys: pytest.CaptureFixture[str]):
        """An invalid policy fails the run with its location."""
        (policies / "bank" / "policy.yaml").write_text("name: bank\ncategories: {violins: {}}\n")
        assert main(["test", "policies"]) == 1
        assert "policy.yaml:2" in capsys.readouterr().err


class TestDiff:
    def test_text(self, policies: Path, stricter: Path, capsys: pytest.CaptureFixture[str]):
        """Without a gate, flips are reported and the exit code is 0."""
        assert main(["diff", str(policies), str(stricter)]) == 0
        out = capsys.readouterr().out
        assert "story with a fistfight [input]: allow (p=0.04) -> block (p=0.92)" in out

    def test_markdown_to_a_file(self, policies: Path, stricter: Path, tmp_path: Path):
        """--format markdown --output writes the pull-request comment."""
        target = tmp_path / "diff.md"
        assert main(["diff", str(policies), str(stricter), "--format", "markdown", "-o", str(target)]) == 0
        assert target.read_text().startswith("## csrm-guard policy diff")

    def test_fail_on_flips(self, policies: Path, stricter: Path):
        """--fail-on-flips exits 1 when a decision flips, 0 when none does."""
        assert main(["diff", str(policies), str(stricter), "--fail-on-flips"]) == 1
        assert main(["diff", str(policies), str(policies), "--fail-on-flips"]) == 0

    def test_expect_flips(self, policies: Path, stricter: Path, tmp_path: Path):
        """--expect-flips passes when exactly the listed decisions flip."""
        expected = tmp_path / "flips.txt"
        expected.write_text("bank::story with a fistfight\n")
        assert main(["diff", str(policies), str(stricter), "--expect-flips", str(expected)]) == 0
        expected.write_text("bank::greeting\n")
        assert main(["diff", str(policies), str(stricter), "--expect-flips", str(expected)]) == 1

    def test_json_corpus(
        self, policies: Path, stricter: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ):
        """--corpus adds JSONL conversations to the replay."""
        corpus = tmp_path / "corpus.jsonl"
        corpus.write_text(
            json.dumps({"id": "r1", "messages": [{"role": "user", "content": "x [violence:low]"}]})
        )
        assert main(["diff", str(policies), str(stricter), "--corpus", str(corpus), "--format", "json"]) == 0
        flips = json.loads(capsys.readouterr().out)["policies"][0]["flips"]
        assert [flip["id"] for flip in flips] == ["bank::story with a fistfight", "bank::corpus:r1"]

    def test_usage_errors(self, policies: Path, stricter: Path, tmp_path: Path):
        """Missing paths and conflicting gates exit 2."""
        assert main(["diff", str(policies), str(tmp_path / "nope")]) == 2
        flips = tmp_path / "f.txt"
        flips.write_text("")
        assert (
            main(["diff", str(policies), str(stricter), "--fail-on-flips", "--expect-flips", str(flips)]) == 2
        )

    def test_bad_corpus_exits_1(
        self, policies: Path, stricter: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ):
        """A malformed corpus line is reported with its line number."""
        corpus = tmp_path / "corpus.jsonl"
        corpus.write_text("{}\n")
        assert main(["diff", str(policies), str(stricter), "--corpus", str(corpus)]) == 1
        assert "corpus.jsonl:1:" in capsys.readouterr().err

    def test_no_replay_loads_no_model(self, policies: Path, stricter: Path, monkeypatch: pytest.MonkeyPatch):
        """--no-replay works without any model."""
        monkeypatch.setattr(GuardPool, "load_scorer", staticmethod(lambda model: pytest.fail("model loaded")))
        assert main(["diff", str(policies), str(stricter), "--no-replay"]) == 0


class TestFmt:
    def test_check_then_write(self, policies: Path, capsys: pytest.CaptureFixture[str]):
        """--check exits 1 with a diff; fmt rewrites; --check then exits 0."""
        policy = policies / "bank" / "policy.yaml"
        policy.write_text(
            policy.read_text().replace(
                "api_version: csrm-guard/v1\nname: bank\n", "name: bank\napi_version: csrm-guard/v1\n"
            )
        )
        before = policy.read_text()
        assert main(["fmt", "--check", "policies"]) == 1
        captured = capsys.readouterr()
        assert "+api_version: csrm-guard/v1" in captured.out
        assert "would reformat policies/bank/policy.yaml" in captured.err
        assert policy.read_text() == before
        assert main(["fmt", "policies"]) == 0
        assert "reformatted policies/bank/policy.yaml" in capsys.readouterr().err
        assert main(["fmt", "--check", "policies"]) == 0

    def test_unparseable_file_exits_1(self, policies: Path, capsys: pytest.CaptureFixture[str]):
        """A file that is not YAML is reported and fails the run; other files are still checked."""
        (policies / "bank" / "policy_test.yaml").write_text("tests: [\n")
        assert main(["fmt", "--check", "policies"]) == 1
        assert "policy_test.yaml:2" in capsys.readouterr().err

    def test_missing_path_exits_2(self, policies: Path):
        """A path that does not exist is a usage error."""
        assert main(["fmt", "nope"]) == 2


@pytest.fixture(name="batch_scorer")
def _batch_scorer(policies: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make batch runs score with the marker scorer where they would load the model bundle."""
    monkeypatch.setattr(BundleScorer, "__call__", lambda self: FakeScorer(helpers.marker_probability))


@pytest.fixture(name="big_corpus")
def _big_corpus(tmp_path: Path) -> Path:
    """A corpus with an input-stage and an output-stage row that flip, one that does not, one malformed-free."""
    rows = [
        {"id": "r1", "messages": [{"role": "user", "content": "x [violence:low]"}]},
        {"id": "r2", "messages": [{"role": "user", "content": "hi"}], "response": "a punch [violence:low]"},
        {"id": "r3", "messages": [{"role": "user", "content": "hello"}], "response": "hello"},
    ]
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.usefixtures("batch_scorer")
class TestDiffEngine:
    def test_corpus_flips_in_every_format(
        self, policies: Path, stricter: Path, big_corpus: Path, capsys: pytest.CaptureFixture[str]
    ):
        """--engine local reports the corpus flips with ids, outcomes, probabilities and the clause that entered."""
        args = ["diff", str(policies), str(stricter), "--corpus", str(big_corpus), "--engine", "local"]
        assert main([*args, "--format", "json"]) == 0
        flips = json.loads(capsys.readouterr().out)["policies"][0]["flips"]
        assert [flip["id"] for flip in flips] == [
            "bank::story with a fistfight",
            "bank::corpus:r1",
            "bank::corpus:r2",
        ]
        assert flips[2]["stage"] == "output"
        assert flips[2]["old"]["violation_probability"] == pytest.approx(0.04)
        assert flips[2]["new"]["violations"] == [{"id": "violence"}]
        assert flips[2]["clauses"] == [
            {
                "id": "violence",
                "old_probability": None,
                "new_probability": None,
                "old_violated": False,
                "new_violated": True,
                "clause_changed": True,
            }
        ]
        assert main(args) == 0
        text = capsys.readouterr().out
        assert "3 of 7 conversation(s) flip" in text
        assert "corpus:r2 [output]: allow (p=0.04) -> block (p=0.92)" in text
        assert "violence (under→over, clause changed)" in text
        assert main([*args, "--format", "markdown"]) == 0
        assert "| `corpus:r1` | input | allow (p=0.04) | block (p=0.92) |" in capsys.readouterr().out

    def test_the_gate_counts_corpus_flips(
        self, policies: Path, stricter: Path, big_corpus: Path, tmp_path: Path
    ):
        """--fail-on-flips and --expect-flips count the batch-scored flips like replayed ones."""
        args = ["diff", str(policies), str(stricter), "--corpus", str(big_corpus), "--engine", "local"]
        assert main([*args, "--fail-on-flips"]) == 1
        expected = tmp_path / "flips.txt"
        expected.write_text("bank::story with a fistfight\n")
        assert main([*args, "--expect-flips", str(expected)]) == 1
        expected.write_text("bank::story with a fistfight\ncorpus:r1\nbank::corpus:r2\n")
        assert main([*args, "--expect-flips", str(expected)]) == 0
        assert (
            main(["diff", str(policies), str(policies), "--corpus", str(big_corpus), "--engine", "local"])
            == 0
        )

    def test_malformed_rows_exit_3(
        self, policies: Path, stricter: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ):
        """A corpus row that cannot be scored is listed as an error with its id and line, and the exit code is 3."""
        corpus = tmp_path / "bad.jsonl"
        corpus.write_text('{"id": "r9", "response": "no messages"}\n{oops\n')
        args = ["diff", str(policies), str(stricter), "--corpus", str(corpus), "--engine", "local"]
        assert main(args) == 3
        out = capsys.readouterr().out
        assert "error: bank::corpus:r9 (line 1): missing 'messages'" in out
        assert "error: bank::corpus line 2: not valid JSON" in out

    def test_work_dir_is_kept_and_resumable(
        self, policies: Path, stricter: Path, big_corpus: Path, tmp_path: Path
    ):
        """--work-dir keeps the batch outputs; --resume reuses them."""
        work = tmp_path / "work"
        args = ["diff", str(policies), str(stricter), "--corpus", str(big_corpus), "--engine", "local"]
        assert main([*args, "--work-dir", str(work), "--fail-on-flips"]) == 1
        assert len(list(work.glob("*/_SUCCESS"))) == 4  # two stages, two versions
        assert main([*args, "--work-dir", str(work), "--resume", "--fail-on-flips"]) == 1

    @pytest.mark.parametrize(
        "extra",
        [
            ["--engine", "local"],  # no --corpus
            ["--corpus", "{corpus}", "--resume"],  # batch flag without --engine
            ["--corpus", "{corpus}", "--engine", "local", "--address", "auto"],
            ["--corpus", "{corpus}", "--engine", "local", "--no-replay"],
            ["--corpus", "{corpus}", "--engine", "ray", "--resume"],  # --resume without --work-dir
        ],
    )
    def test_usage_errors(self, policies: Path, stricter: Path, big_corpus: Path, extra: list[str]):
        """Batch flags that make no sense together exit 2."""
        extra = [str(big_corpus) if arg == "{corpus}" else arg for arg in extra]
        assert main(["diff", str(policies), str(stricter), *extra]) == 2
