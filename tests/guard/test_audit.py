"""Tests of audit records: fields, text inclusion and redaction, the processor chain and the sinks."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from csrm_guard import Policy
from csrm_guard.guard import Guard
from csrm_guard.guard.audit import AuditLog, JsonlSink, LoggerSink, drop_text, hash_text, redact_text
from csrm_guard.testing import StaticScorer

USER = [{"role": "user", "content": "my card is 4111-1111-1111-1111, help"}]


def _guard(sink: Any, **policy: Any) -> Guard:
    return Guard(
        Policy(name="audited", version="3", **policy), scorer=StaticScorer({"violence": 0.8}), audit=sink
    )


class TestRecords:
    def test_record_fields_without_text(self) -> None:
        """A record names time, stage, outcome, policy, model, scores and latency, and holds no raw text."""
        records: list[dict[str, Any]] = []
        with _guard(records.append, categories={"violence": {}}) as guard:
            decision = guard.check_input(USER, request_id="req-9")
        (record,) = records
        assert record["request_id"] == "req-9"
        assert (record["stage"], record["outcome"], record["allowed"]) == ("input", "block", False)
        assert record["policy"] == {"name": "audited", "version": "3", "hash": decision.policy_hash}
        assert record["model"] == {"id": "static-scorer"}
        assert record["scores"]["violence"] == 0.8
        assert record["violations"] == ["violence"]
        assert record["time"].endswith("+00:00")
        assert "messages" not in record
        assert "4111" not in json.dumps(record)
        assert len(record["text_sha256"]) == 64

    def test_policy_can_include_redacted_text(self) -> None:
        """With audit.include_text, text is kept and the policy's redact patterns are applied first."""
        records: list[dict[str, Any]] = []
        audit = {"include_text": True, "redact": [r"\d{4}(-\d{4}){3}"]}
        with _guard(records.append, audit=audit) as guard:
            guard.check_output(USER, "noted 4111-1111-1111-1111")
        (record,) = records
        assert record["messages"][0]["content"] == "my card is [REDACTED], help"
        assert record["response"] == "noted [REDACTED]"

    def test_caller_can_ask_for_text(self) -> None:
        """include_text=True on a check keeps the text even when the policy does not."""
        records: list[dict[str, Any]] = []
        with _guard(records.append) as guard:
            guard.check_input(USER, include_text=True)
        assert records[0]["messages"][0]["role"] == "user"

    def test_invalid_redact_pattern_is_named(self) -> None:
        """A broken redact pattern fails with the pattern in the message."""
        with pytest.raises(ValueError, match=r"\(unclosed"):
            redact_text(["(unclosed"])


class TestChain:
    def test_processors_run_in_order(self) -> None:
        """Custom processors run in order on every record and survive the guard's policy settings."""
        seen: list[dict[str, Any]] = []

        def tag(record: dict[str, Any]) -> dict[str, Any]:
            record["service"] = "chat"
            return record

        log = AuditLog(seen.append, processors=[hash_text, drop_text, tag])
        with _guard(log) as guard:
            guard.check_input(USER)
        assert seen[0]["service"] == "chat"
        assert "messages" not in seen[0]


class TestSinks:
    def test_jsonl_file_gets_one_line_per_decision(self, tmp_path) -> None:
        """A path sink appends one JSON line per decision and is closed with the guard."""
        path = tmp_path / "audit" / "decisions.jsonl"
        with _guard(path) as guard:
            guard.check_input(USER)
            guard.check_output(USER, "fine")
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["stage"] for line in lines] == ["input", "output"]
        assert isinstance(guard.audit.sink, JsonlSink)  # type: ignore[union-attr]
        assert guard.audit.sink._file.closed  # type: ignore[union-attr]

    def test_logger_sink(self, caplog) -> None:
        """LoggerSink logs the JSON line on csrm_guard.audit with the record attached."""
        with caplog.at_level(logging.INFO, logger="csrm_guard.audit"), _guard(LoggerSink()) as guard:
            guard.check_input(USER)
        (entry,) = [r for r in caplog.records if r.name == "csrm_guard.audit"]
        assert json.loads(entry.getMessage())["outcome"] == "allow"
        assert entry.audit["stage"] == "input"  # type: ignore[attr-defined]

    def test_failing_sink_does_not_break_the_check(self, caplog) -> None:
        """A sink that raises is logged; the check still returns its decision."""

        def broken(record: dict[str, Any]) -> None:
            raise OSError("disk full")

        with caplog.at_level(logging.ERROR), _guard(broken) as guard:
            assert guard.check_input(USER).allowed
        assert "audit sink failed" in caplog.text

    def test_bad_sink_type(self) -> None:
        """A sink that is neither a path, a callable nor an AuditSink is rejected."""
        with pytest.raises(TypeError, match="audit sink"):
            AuditLog(42)  # type: ignore[arg-type]
