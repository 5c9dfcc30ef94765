"""corpus_impact: a policy change scored over a corpus in batch, joined row by row into flips, shifts, errors."""

from __future__ import annotations

import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from csrm_guard import CategoryRule, Policy
from csrm_guard.batch import corpus_impact
from csrm_guard.batch._stages import StagedInput
from csrm_guard.batch.impact import join_outputs
from csrm_guard.errors import DataError
from csrm_guard.policy import Severity
from csrm_guard.policy.render import Clause
from csrm_guard.review.diff import diff_policies
from csrm_guard.testing import FakeScorer

_MARK = re.compile(r"\[([a-z_]+):([a-z]+)\]")


def severity_probability(clause: Clause, transcript: str) -> float:
    """0.9 when a ``[category:severity]`` marker exceeds the clause's tolerated severity, else 0.05."""
    marks = dict(_MARK.findall(transcript))
    if clause.kind == "category" and clause.category in marks:
        return 0.9 if Severity(marks[clause.category]) > (clause.max_severity or Severity.NONE) else 0.05
    return 0.05


@dataclass(frozen=True)
class SeverityScorer:
    """A picklable factory of the severity-aware fake scorer; ``fail`` makes building it fail the test."""

    fail: bool = False

    def __call__(self) -> FakeScorer:
        if self.fail:
            pytest.fail("the corpus was scored again")
        return FakeScorer(severity_probability, model_id="severity")


def _policy(violence: str) -> Policy:
    categories = {"violence": CategoryRule(max_severity=violence), "hate": CategoryRule(max_severity="none")}
    return Policy(name="impact", categories=categories)


OLD, NEW = _policy("low"), _policy("none")

ROWS: list[dict[str, Any]] = [
    {"id": "plain", "messages": [{"role": "user", "content": "hello"}], "response": "hi there"},
    {
        "id": "fistfight",
        "messages": [{"role": "user", "content": "a story"}],
        "response": "a punch [violence:low]",
    },
    {"id": "gore", "messages": [{"role": "user", "content": "x"}], "response": "[violence:moderate] blood"},
    {"id": 7, "messages": [{"role": "user", "content": "describe a slap [violence:low]"}]},
    {
        "id": "both",
        "messages": [{"role": "user", "content": "q"}],
        "response": "[hate:low] and [violence:low]",
    },
    {
        "id": "asked",
        "messages": [{"role": "user", "content": "[violence:low]"}],
        "stage": "input",
        "response": "ok",
    },
]


def _corpus(tmp_path: Path, rows: list[Any], name: str = "corpus.jsonl") -> Path:
    path = tmp_path / name
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_severity_change_flips_the_rows_it_should(tmp_path: Path):
    """Tightening violence flips exactly the low-violence rows, at their own stage, with the clause that entered."""
    impact = corpus_impact(
        _corpus(tmp_path, ROWS),
        OLD,
        NEW,
        work_dir=tmp_path / "work",
        scorer_factory=SeverityScorer(),
        batch_size=2,
    )
    assert [(f.id, f.line, f.stage) for f in impact.flips] == [
        ("fistfight", 2, "output"),
        ("7", 4, "input"),
        ("asked", 6, "input"),
    ]
    for flip in impact.flips:
        assert (flip.old.outcome, flip.new.outcome) == ("allow", "block")
        assert (flip.old.violation_probability, flip.new.violation_probability) == (0.05, 0.9)
        assert (flip.entered, flip.left) == (("violence",), ())
    assert impact.flips[0].response == "a punch [violence:low]"
    assert impact.flips[1].response is None
    assert [(s.id, s.entered, s.new.outcome) for s in impact.shifts] == [("both", ("violence",), "block")]
    assert (impact.rows, impact.checked, impact.errors) == (6, 6, ())
    assert sorted(p.name for p in (tmp_path / "work" / "corpus").glob("*.jsonl")) == [
        "input.jsonl",
        "output.jsonl",
    ]


def test_batch_and_replay_find_the_same_flips(tmp_path: Path):
    """The batch path reports the flips and shifts the one-at-a-time replay reports for the same corpus."""
    corpus = _corpus(tmp_path, ROWS)
    impact = corpus_impact(corpus, OLD, NEW, scorer_factory=SeverityScorer())
    report = diff_policies(OLD, NEW, corpus=corpus, scorer=SeverityScorer()())
    assert [f"corpus:{f.id}" for f in impact.flips] == [f.conversation.id for f in report.flips]
    shifts = report.policies[0].shifts
    assert [f"corpus:{s.id}" for s in impact.shifts] == [s.conversation.id for s in shifts]


def test_identical_policies_score_nothing(tmp_path: Path):
    """Versions that enforce the same thing are not scored at all: no flips, no files."""
    work = tmp_path / "work"
    same = _policy("low")
    impact = corpus_impact(
        _corpus(tmp_path, ROWS), OLD, same, work_dir=work, scorer_factory=SeverityScorer(fail=True)
    )
    assert (impact.scored, impact.flips, impact.shifts, impact.checked) == (False, (), (), 0)
    assert not work.exists()


def test_malformed_rows_are_errors_not_drops(tmp_path: Path):
    """Unparseable lines, a bad stage and rows the scorer rejects are reported with their id and line."""
    rows: list[Any] = [
        ROWS[1],
        "{not json",
        {"id": "bad-stage", "messages": [{"role": "user", "content": "x"}], "stage": "output"},
        {"id": "no-messages", "response": "x"},
        {"messages": [{"role": "user", "content": "no id"}], "response": "y"},
        ROWS[3],
    ]
    impact = corpus_impact(_corpus(tmp_path, rows), OLD, NEW, scorer_factory=SeverityScorer())
    errors = {(e.id, e.line): e.error for e in impact.errors}
    assert set(errors) == {(None, 2), ("bad-stage", 3), ("no-messages", 4), (None, 5)}
    assert errors[(None, 2)].startswith("not valid JSON")
    assert "'stage'" in errors[("bad-stage", 3)]
    assert errors[("no-messages", 4)] == "missing 'messages'"
    assert errors[(None, 5)] == "missing 'id'"
    assert [f.id for f in impact.flips] == ["fistfight", "7"]
    assert (impact.rows, impact.checked) == (6, 2)


def test_resume_reuses_the_finished_runs(tmp_path: Path):
    """A resumed run in the same work folder scores nothing again and finds the same flips."""
    corpus, work = _corpus(tmp_path, ROWS), tmp_path / "work"
    first = corpus_impact(corpus, OLD, NEW, work_dir=work, scorer_factory=SeverityScorer())
    again = corpus_impact(
        corpus, OLD, NEW, work_dir=work, scorer_factory=SeverityScorer(fail=True), resume=True
    )
    assert again == first


def test_the_default_work_folder_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Without a work folder, the batch outputs live in a temporary folder that is removed afterwards."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    impact = corpus_impact(_corpus(tmp_path, ROWS), OLD, NEW, scorer_factory=SeverityScorer())
    assert len(impact.flips) == 3
    assert list(scratch.iterdir()) == []


def _output(path: Path, ids: list[str]) -> Path:
    rows = [
        {
            "id": i,
            "input_row": n,
            "outcome": "allow",
            "violation_probability": 0.1,
            "violations": [],
            "error": None,
        }
        for n, i in enumerate(ids)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old_ids", "new_ids", "problem"),
    [(["a", "b"], ["a", "c"], "do not line up"), (["a", "b"], ["a"], "differ in length")],
)
def test_outputs_that_do_not_line_up_are_an_error(tmp_path: Path, old_ids, new_ids, problem):
    """Joining outputs whose ids or lengths differ raises instead of pairing the wrong rows."""
    from array import array  # noqa: PLC0415

    staged = StagedInput("output", tmp_path / "in.jsonl", array("q", range(1, len(old_ids) + 1)))
    with pytest.raises(DataError, match=problem):
        join_outputs(
            _output(tmp_path / "old.jsonl", old_ids), _output(tmp_path / "new.jsonl", new_ids), staged
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")  # Ray Data's own deprecated defaults
def test_the_ray_engine_is_wired(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """With the ray extra, engine='ray' scores on a local Ray cluster and finds the local engine's flips."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'csrm-guard[ray]')")
    from ray import cloudpickle  # noqa: PLC0415

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # A short folder: Ray's socket paths must stay under the 107-byte AF_UNIX limit.
    short = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(short))
    try:
        corpus = _corpus(tmp_path, ROWS)
        remote = corpus_impact(
            corpus, OLD, NEW, work_dir=tmp_path / "work", engine="ray", scorer_factory=SeverityScorer()
        )
    finally:
        ray.shutdown()
    local = corpus_impact(corpus, OLD, NEW, scorer_factory=SeverityScorer())
    assert remote == local
    assert [f.id for f in remote.flips] == ["fistfight", "7", "asked"]
